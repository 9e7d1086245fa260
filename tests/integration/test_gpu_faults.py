"""Sim faults, scheduled in config and injected at run time, reach the collector as XIDs, health and jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.kit import ROOT, Pki, Service, metric_value, start_agent, start_collector, wait_for


def health(text: str, host: str, gpu: str, status: str) -> float | None:
    return metric_value(text, "gpulse_gpu_health_status", host=host, gpu=gpu, status=status)


def test_faults_reach_the_collector_as_xid_counts_health_and_workloads(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(
        tmp,
        test_pki,
        "node-f",
        [collector.target],
        sim={"faults": [{"kind": "remap_pending", "gpu": 1, "at": 0.0}]},
    )
    services.append(agent)
    # Scheduled in config: a pending row remap warns; the healthy neighbour is OK.
    wait_for(lambda: health(collector.metrics(), "node-f", "1", "warn") == 1, what="GPU 1 warn from config fault")
    text = collector.metrics()
    assert health(text, "node-f", "0", "ok") == 1
    # Injected at run time through the CLI: an XID storm of 25 on GPU 0, then a double-bit ECC error.
    state_dir = tmp / "agent-node-f"
    for args in (["xid", "--gpu", "0", "--xid", "94", "--count", "25"], ["dbe", "--gpu", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "gpulse.cli", "sim-fault", "--state-dir", str(state_dir), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    wait_for(
        lambda: (
            metric_value(collector.metrics(), "gpulse_gpu_xid_errors_total", host="node-f", gpu="0", xid="94") == 25
        ),
        what="all 25 XIDs counted",
    )
    wait_for(lambda: health(collector.metrics(), "node-f", "0", "fail") == 1, what="GPU 0 fails after the DBE")
    text = collector.metrics()
    assert metric_value(text, "gpulse_gpu_xid_errors_total", host="node-f", gpu="0", xid="48") == 1
    # The reasons are named: a DBE, and the XID 48 that reported it.
    assert metric_value(text, "gpulse_gpu_health_reason", host="node-f", gpu="0", check="memory_dbe") == 1
    assert metric_value(text, "gpulse_gpu_health_reason", host="node-f", gpu="0", check="xid_48") == 1
    assert metric_value(text, "gpulse_gpu_health_reason", host="node-f", gpu="1", check="memory_remap_pending") == 1
    assert sorted(p.suffix for p in (state_dir / "sim-faults").iterdir()) == [".applied", ".applied"]


def test_a_bad_fault_file_is_set_aside_with_its_reason(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(tmp, test_pki, "node-g", [collector.target])
    services.append(agent)
    inbox = tmp / "agent-node-g" / "sim-faults"
    inbox.mkdir(parents=True)
    (inbox / "bad.toml").write_text('kind = "dbe"\ngpu = 7\n')
    wait_for(lambda: (inbox / "bad.rejected").exists(), what="bad fault set aside")
    assert "gpu" in (inbox / "bad.error").read_text() and "between 0 and 1" in (inbox / "bad.error").read_text()
    assert agent.running
