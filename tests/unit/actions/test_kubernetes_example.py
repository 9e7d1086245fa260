"""The shipped Kubernetes example: in dry-run it prints the kubectl commands a drain and a resume run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collector.actions.command import run_command
from collector.actions.config import CommandConfig

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "remediation" / "kubernetes-cordon.sh"


def payload(event: str) -> dict[str, object]:
    return {"event": event, "dry_run": True, "action": {"node": "gpu-7", "alertname": "GpuXidRebootRequired"}}


def test_drain_cordons_and_taints_resume_undoes_both() -> None:
    config = CommandConfig(SCRIPT, timeout=20)
    drain = asyncio.run(run_command(config, payload("drain")))
    assert drain.ok, drain.stderr
    assert drain.stdout.splitlines() == [
        "would run: kubectl cordon gpu-7",
        "would run: kubectl taint nodes gpu-7 gpulse.dev/unhealthy=GpuXidRebootRequired:NoSchedule --overwrite",
    ]
    resume = asyncio.run(run_command(config, payload("resume")))
    assert resume.stdout.splitlines() == [
        "would run: kubectl taint nodes gpu-7 gpulse.dev/unhealthy:NoSchedule-",
        "would run: kubectl uncordon gpu-7",
    ]
    bad = asyncio.run(run_command(config, payload("explode")))
    assert bad.exit_status == 2 and "unknown event explode" in bad.stderr
