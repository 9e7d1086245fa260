"""Every fault in the sim's catalogue drives the agent's paths: XID events, lost GPUs, health, workloads."""

from __future__ import annotations

import numpy as np
import pytest

from agent.gpu_watch import GpuWatch
from agent.records import GpuProcessInfo
from agent.sources.sim import Fault, FaultKind, SimBackend
from agent.sources.workload import WorkloadResolver
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG
from tests.kit import gpu_rows

T0 = 1_800_000_000 * 10**9


def col(name: str) -> int:
    return CATALOG.gpu_ids.index(CATALOG.gpu(name).id)


def run(faults: list[Fault], ticks: int = 90) -> tuple[SimBackend, GpuWatch, list[pb.Event], np.ndarray]:
    sim = SimBackend("host-a", count=2, faults=faults, seed=1)
    watch = GpuWatch(sim.open(), sim.field_ids)
    events: list[pb.Event] = []
    rows = np.empty(0)
    for i in range(ticks):
        now = T0 + i * 10**9
        sample = sim.sample(now)
        backend_events = sim.drain_events()
        events += backend_events
        events += watch.observe(now, sample, backend_events)
        rows = gpu_rows(sample)
    return sim, watch, events, rows


def health_checks(events: list[pb.Event], gpu: int) -> set[str]:
    return {
        r.check
        for e in events
        if e.WhichOneof("kind") == "health" and e.health.gpu_index == gpu
        for r in e.health.reasons
    }


def last_status(events: list[pb.Event], gpu: int) -> int:
    return [e.health.status for e in events if e.WhichOneof("kind") == "health" and e.health.gpu_index == gpu][-1]


@pytest.mark.parametrize(
    ("fault", "check", "status"),
    [
        (Fault(FaultKind.DBE, 1), "memory_dbe", pb.HEALTH_FAIL),
        (Fault(FaultKind.REMAP_PENDING, 1), "memory_remap_pending", pb.HEALTH_WARN),
        (Fault(FaultKind.REMAP_FAILURE, 1), "memory_remap_failure", pb.HEALTH_FAIL),
        (Fault(FaultKind.THERMAL_RUNAWAY, 1, severity=1.0), "thermal_violation", pb.HEALTH_WARN),
        (Fault(FaultKind.POWER_BRAKE, 1), "power_violation", pb.HEALTH_WARN),
        (Fault(FaultKind.NVLINK_ERRORS, 1, severity=0.5), "nvlink_crc_rate", pb.HEALTH_WARN),
        (Fault(FaultKind.NVLINK_ERRORS, 1, severity=0.9), "nvlink_down", pb.HEALTH_FAIL),
        (Fault(FaultKind.PCIE_REPLAY_STORM, 1), "pcie_replay_rate", pb.HEALTH_WARN),
        (Fault(FaultKind.LINK_DOWNGRADE, 1, severity=0.3), "pcie_link_generation", pb.HEALTH_WARN),
        (Fault(FaultKind.LINK_DOWNGRADE, 1, severity=0.8), "pcie_link_width", pb.HEALTH_WARN),
        (Fault(FaultKind.XID, 1, xid=74), "xid_74", pb.HEALTH_FAIL),
    ],
)
def test_each_sim_fault_drives_its_health_check(fault: Fault, check: str, status: int) -> None:
    _, watch, events, _ = run([fault])
    assert check in health_checks(events, 1)
    worst = max(r.status for r in watch.health.current(1).reasons if r.check == check)  # type: ignore[union-attr]
    assert worst == status
    assert health_checks(events, 0) == set()  # the healthy neighbour stays healthy
    assert last_status(events, 0) == pb.HEALTH_OK


def test_sim_xid_fault_of_any_code_is_an_xid_event_with_its_count() -> None:
    _, _, events, _ = run([Fault(FaultKind.XID, 0, at=5, xid=31, count=40)], ticks=10)
    xids = [e.xid for e in events if e.WhichOneof("kind") == "xid"]
    assert [(x.gpu_index, x.xid, x.count) for x in xids] == [(0, 31, 40)]
    assert health_checks(events, 0) == set()  # 31 is the application's fault, not the GPU's


def test_sim_gpu_lost_sends_lost_and_fails_health_and_the_other_gpu_goes_on() -> None:
    _, _, events, rows = run([Fault(FaultKind.GPU_LOST, 0, at=3)], ticks=10)
    assert [e.gpu_lost.gpu_index for e in events if e.WhichOneof("kind") == "gpu_lost"] == [0]
    assert 79 in [e.xid.xid for e in events if e.WhichOneof("kind") == "xid"]
    assert last_status(events, 0) == pb.HEALTH_FAIL and "gpu_lost" in health_checks(events, 0)
    assert np.isnan(rows[0]).all() and not np.isnan(rows[1, col("utilization")])


def test_sim_hung_gpu_is_busy_at_low_power_and_the_straggler_clocks_low() -> None:
    _, _, _, rows = run([Fault(FaultKind.HUNG, 0), Fault(FaultKind.STRAGGLER, 1, severity=0.8)], ticks=5)
    healthy = SimBackend("host-a", count=2, seed=1)
    healthy.open()
    base = gpu_rows(healthy.sample(T0))
    assert rows[0, col("utilization")] == 1.0 and rows[0, col("power_usage")] < 0.3 * base[0, col("power_usage")]
    assert rows[1, col("sm_clock")] < 0.7 * base[1, col("sm_clock")] and rows[1, col("clock_event_hw_slowdown")] == 1


def test_workload_changes_are_sent_when_the_job_on_a_gpu_changes() -> None:
    watch = GpuWatch([g for g in SimBackend("h", count=2).open()], CATALOG.gpu_ids, resolver=None)
    job = GpuProcessInfo(pid=7, used_memory_bytes=1, name="python3", workload_kind="slurm", workload_id="4001")
    first = watch.attribute(1, {0: [job]})
    assert [(e.workload.gpu_index, e.workload.processes[0].workload.id) for e in first] == [(0, "4001")]
    assert watch.attribute(2, {0: [GpuProcessInfo(7, 999, "python3", "slurm", "4001")]}) == []  # memory moved only
    ended = watch.attribute(3, {})
    assert [(e.workload.gpu_index, len(e.workload.processes)) for e in ended] == [(0, 0)]


def test_processes_are_read_on_the_first_tick_and_then_every_n() -> None:
    sim = SimBackend("h", count=1)
    watch = GpuWatch(sim.open(), sim.field_ids, resolver=WorkloadResolver(), slow_every=3)
    due = []
    for i in range(7):
        watch.observe(T0 + i, sim.sample(T0 + i * 10**9), [])
        due.append(watch.processes_due())
    assert due == [True, False, False, True, False, False, True]


def test_sim_nvlink_errors_report_the_failing_link_per_link() -> None:
    _, _, events, _ = run([Fault(FaultKind.NVLINK_ERRORS, 1, at=5, severity=0.9)], ticks=10)
    per_gpu: dict[int, list[pb.NvlinkEvent]] = {}
    for e in events:
        if e.WhichOneof("kind") == "nvlink":
            per_gpu.setdefault(e.nvlink.gpu_index, []).append(e.nvlink)
    assert 0 not in per_gpu  # a healthy GPU has nothing to report
    last = per_gpu[1][-1]
    assert len(last.links) == 18 and not last.links[0].up and last.links[0].crc_errors > 0
    assert all(link.up for link in last.links[1:])


def test_a_training_host_runs_one_job_across_its_gpus() -> None:
    sim = SimBackend("h", count=4)
    sim.open()
    sim.sample(T0)
    jobs = {p.workload_id for procs in sim.processes().values() for p in procs}
    assert len(jobs) == 1 and len(sim.processes()) == 4


def test_a_gpu_back_after_a_reload_returns_to_its_checks_verdict() -> None:
    sim = SimBackend("h", count=2)
    watch = GpuWatch(sim.open(), sim.field_ids)
    lost = pb.Event(unix_ns=T0, gpu_lost=pb.GpuLostEvent(gpu_index=1, reason="fallen off the bus"))
    events = watch.observe(T0, sim.sample(T0), [lost])
    assert [e.health.status for e in events if e.health.gpu_index == 1] == [pb.HEALTH_FAIL]
    back = pb.Event(unix_ns=T0 + 10**9, inventory=pb.InventoryChangeEvent(gpu=pb.GpuInventory(index=1)))
    events = watch.observe(T0 + 10**9, sim.sample(T0 + 10**9), [back])
    assert [(e.health.status, e.health.previous) for e in events] == [(pb.HEALTH_OK, pb.HEALTH_FAIL)]
