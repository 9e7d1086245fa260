"""The collector's whole /metrics, as Prometheus scrapes it, passes `promtool check metrics`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.kit import Pki, Service, metric_value, start_agent, start_collector, wait_for


def test_collector_metrics_are_promtool_clean(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    faults = [{"kind": "xid", "gpu": 0, "at": 0.2, "xid": 79}]
    services.append(start_agent(tmp, test_pki, "node-c", [collector.target], sim={"count": 2, "faults": faults}))
    text = wait_for(
        lambda: (t := collector.metrics()) and metric_value(t, "gpulse_gpu_xid_errors_total", host="node-c") and t,
        what="series and an XID from the agent",
    )
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    # Every name is ours, and inventory is an _info series.
    assert all(n.startswith("gpulse_") for n in names), sorted(n for n in names if not n.startswith("gpulse_"))
    assert {"gpulse_gpu_info", "gpulse_host_info"} <= names
