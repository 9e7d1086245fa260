"""`gpulse demo` injects a fault into one simulated GPU; the log receiver prints the alert, then its resolve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.kit import ROOT, free_port, wait_for

# The built-in pack holds a power-brake alert for a minute after it clears; a rule without
# keep_firing_for shows the same path (detection → lifecycle → log receiver) in seconds.
FAST_RULES = """
[[rule]]
name = "GpuPowerBrake"
expr = "clock_event_hw_power_brake > 0"
for = "1s"
severity = "warning"
annotations = { summary = "Power brake engaged on {{ $labels.host }} GPU {{ $labels.gpu }}" }
"""


def test_demo_fault_pages_through_the_log_receiver_and_resolves(tmp: Path) -> None:
    rules = tmp / "rules.toml"
    rules.write_text(FAST_RULES)
    args = ["--hosts", "1", "--fault-after", "2", "--fault-duration", "8", "--rules", str(rules)]
    process = subprocess.Popen(
        [sys.executable, "-m", "gpulse.cli", "demo", "--state-dir", str(tmp), "--http-port", str(free_port()), *args],
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

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def pages() -> list[dict[str, str]]:
            out = []
            for line in list(lines):
                if line.startswith("{") and '"ALERT ' in line:
                    out.append(json.loads(line))
            return out

        try:
            wait_for(lambda: [p for p in pages() if p["event"] == "ALERT RESOLVED"], timeout=60, what="the resolve")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the demo printed:\n{''.join(lines)}") from None
        fired, resolved = pages()[0], pages()[-1]
        assert fired["event"] == "ALERT FIRING"
        assert (fired["alertname"], fired["host"], fired["gpu"]) == ("GpuPowerBrake", "sim-h100-01", "3")
        assert fired["summary"] == "Power brake engaged on sim-h100-01 GPU 3"
        assert resolved["fingerprint"] == fired["fingerprint"]
        assert [p["event"] for p in pages()] == ["ALERT FIRING", "ALERT RESOLVED"]  # one page, one resolve
        assert any("injected a power_brake fault into sim-h100-01 GPU 3" in line for line in lines)
    finally:
        process.terminate()
        process.wait(20)
