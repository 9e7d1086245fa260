"""`gpulse demo`: the injected fault's XID makes remediation (dry-run) say it would drain the node,
in the log and in `gpulse top`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.kit import ROOT, free_port, http_get, wait_for

XID_RULE = """
[[rule]]
name = "GpuXidRebootRequired"
expr = "xids(79)[5m] > 0"
severity = "critical"
labels = { action = "reboot_node" }
annotations = { summary = "{{ $labels.host }} needs a reboot" }
"""


def test_demo_fault_would_drain_the_node_in_dry_run(tmp: Path) -> None:
    rules = tmp / "rules.toml"
    rules.write_text(XID_RULE)
    port = free_port()
    args = ["--hosts", "1", "--fault-after", "2", "--fault-duration", "30", "--rules", str(rules)]
    process = subprocess.Popen(
        [sys.executable, "-m", "gpulse.cli", "demo", "--state-dir", str(tmp), "--http-port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(iter(process.stdout.readline, ""))

    threading.Thread(target=read, daemon=True).start()
    try:

        def would_drain() -> list[dict[str, str]]:
            return [json.loads(line) for line in list(lines) if line.startswith("{") and "would drain" in line]

        try:
            wait_for(would_drain, timeout=90, what="remediation's 'would drain'")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the demo printed:\n{''.join(lines)}") from None
        entry = would_drain()[0]
        assert entry["host"] == "sim-h100-01"
        assert entry["reason"].startswith("gpulse: GpuXidRebootRequired gpu 3 ")
        page = next(json.loads(ln) for ln in lines if ln.startswith("{") and '"ALERT FIRING"' in ln and "Xid" in ln)
        assert page["suggested_action"] == "reboot_host"
        snap = json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/remediation"))
        assert snap["mode"] == "dry-run" and [a["state"] for a in snap["open"]] == ["dry_run"]
        top = subprocess.run(
            [sys.executable, "-m", "gpulse.cli", "top", "--once", "--url", f"http://127.0.0.1:{port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "REMEDIATION (dry-run)" in top
        assert "would drain" in top and "sim-h100-01" in top
        assert "reboot_host" in top  # the firing alert's suggested action
    finally:
        process.terminate()
        process.wait(20)
