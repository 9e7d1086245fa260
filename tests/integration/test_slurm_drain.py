"""Drain and resume against a real slurmctld and slurmd (Debian's slurm-wlm), on loopback.

The node's state is read back with sinfo and scontrol show node, as an operator would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.actions.config import RemediationConfig, SlurmConfig
from collector.actions.service import RemediationService
from collector.actions.state import RemediationState
from collector.alert import Alert, AlertState
from tests.integration.slurm_kit import SlurmCluster, slurm_cluster
from tests.kit import wait_for


def reboot_alert() -> Alert:
    return Alert(
        {
            "alertname": "GpuXidRebootRequired",
            "severity": "critical",
            "host": "gpu-node-1",
            "gpu": "3",
            "xid": "79",
            "action": "reboot_node",
        },
        AlertState.FIRING,
        100.0,
    )


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(tmp: Path, cluster: SlurmCluster, firing: list[Alert], clock: Clock, name: str) -> RemediationService:
    config = RemediationConfig(mode="on", hold=60.0, cooldown=0.0, slurm=SlurmConfig(conf=cluster.conf))
    return RemediationService(
        config,
        RemediationState(tmp / f"{name}.sqlite3"),
        CollectorRegistry(),
        firing=lambda: firing,
        host_count=lambda: 100,
        clock=clock,
        collector_id=name,
    )


def test_drain_resume_and_operator_drains_against_real_slurm(tmp: Path) -> None:
    with slurm_cluster(tmp / "slurm") as cluster:
        clock = Clock()
        firing = [reboot_alert()]
        a = service(tmp, cluster, firing, clock, "collector-a")
        b = service(tmp, cluster, firing, clock, "collector-b")

        asyncio.run(a.step(clock()))
        state, reason = cluster.state()
        assert state == "drained"
        assert reason.startswith("gpulse: GpuXidRebootRequired gpu 3 xid 79 suggests reboot_host [id ")
        assert "State=IDLE+DRAIN" in cluster.show()

        # The second collector sees the drain is gpulse's and does not act again.
        asyncio.run(b.step(clock()))
        assert cluster.state()[1] == reason
        assert b.snapshot()["open"][0]["state"] == "watching"
        assert a.snapshot()["open"][0]["state"] == "drained"

        # Healthy, but not yet for the hold time: still drained.
        firing.clear()
        asyncio.run(a.step(clock()))
        asyncio.run(b.step(clock()))
        clock.now += 30
        asyncio.run(a.step(clock()))
        assert cluster.state()[0] == "drained"
        clock.now += 31
        asyncio.run(a.step(clock()))
        asyncio.run(b.step(clock()))
        assert cluster.state()[0] == "idle"
        assert "DRAIN" not in cluster.show().split("State=")[1].split()[0]
        assert [r["event"] for r in a.snapshot()["log"]] == ["drained", "resumed"]
        assert [r["event"] for r in b.snapshot()["log"]] == ["drain_skipped", "released"]

        # Drained again; then an operator re-drains the node for their own reason: never undone.
        firing.append(reboot_alert())
        clock.now += 1
        asyncio.run(a.step(clock()))
        assert cluster.state()[0] == "drained"
        cluster.run("scontrol", "update", "nodename=gpu-node-1", "state=drain", "reason=ops: bad PSU, ticket 42")
        firing.clear()
        asyncio.run(a.step(clock()))
        clock.now += 61
        asyncio.run(a.step(clock()))
        assert cluster.state() == ("drained", "ops: bad PSU, ticket 42")
        assert a.snapshot()["recent"][0]["state"] == "released"
        assert a.snapshot()["log"][-1]["event"] == "resume_skipped"

        # A node drained by an operator before the alert is not touched either.
        firing.append(reboot_alert())
        clock.now += 1
        asyncio.run(a.step(clock()))
        assert cluster.state() == ("drained", "ops: bad PSU, ticket 42")
        assert "already drained by an operator" in a.snapshot()["open"][0]["note"]
        a.state.close()
        b.state.close()


def test_running_job_finishes_or_is_requeued_as_configured(tmp: Path) -> None:
    with slurm_cluster(tmp / "slurm") as cluster:
        job = cluster.run("sbatch", "--requeue", "-w", cluster.node, "-o", "/dev/null", "--wrap", "sleep 300")
        job_id = job.split()[-1]

        def job_state() -> str:
            return cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").strip()

        wait_for(lambda: job_state() == "RUNNING", timeout=60, interval=0.5, what="the job to start")
        clock = Clock()
        firing = [reboot_alert()]
        finish = service(tmp, cluster, firing, clock, "finish")
        asyncio.run(finish.step(clock()))
        assert cluster.state()[0] == "draining"  # drained for new work; the running job goes on
        assert job_state() == "RUNNING"
        finish.state.close()

        cluster.run("scontrol", "update", f"nodename={cluster.node}", "state=resume")
        config = RemediationConfig(
            mode="on", cooldown=0.0, slurm=SlurmConfig(conf=cluster.conf, running_jobs="requeue")
        )
        requeue = RemediationService(
            config,
            RemediationState(tmp / "requeue.sqlite3"),
            CollectorRegistry(),
            firing=lambda: firing,
            host_count=lambda: 100,
            clock=clock,
            collector_id="requeue",
        )
        asyncio.run(requeue.step(clock()))
        wait_for(lambda: job_state() == "PENDING", timeout=30, interval=0.5, what="the job to be requeued")
        wait_for(lambda: cluster.state()[0] == "drained", timeout=30, interval=0.5, what="the node to drain")
        requeue.state.close()
