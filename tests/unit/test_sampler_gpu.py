"""The sampler's GPU follow-up: XIDs spooled between ticks, health and workload events at their ticks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.daemon import Sampler
from agent.gpu_watch import GpuWatch
from agent.records import GpuInfo
from agent.sources.host import HostSource
from agent.sources.nvml import NvmlBackend
from agent.sources.workload import WorkloadResolver
from agent.spool.memory import MemorySpool
from protos import telemetry_pb2 as pb
from tests.fakes.nvml import FakeNvml


def sampler(backend: NvmlBackend, spool: MemorySpool, proc: Path) -> Sampler:
    def watch(gpus: list[GpuInfo], field_ids: tuple[int, ...]) -> GpuWatch:
        return GpuWatch(gpus, field_ids, resolver=WorkloadResolver(proc_root=proc), slow_every=1)

    return Sampler(
        host_id="h",
        gpu=backend,
        host=HostSource(),
        spool=spool,
        wakeup=asyncio.Event(),
        interval=1.0,
        gpu_source="nvml",
        gpu_watch=watch,
    )


def event_kinds(spool: MemorySpool, boot_id: str) -> list[str]:
    messages = spool.read(boot_id, 0, 10_000, events_only=True)
    return [m.event.WhichOneof("kind") for m in messages if m.HasField("event")]


async def test_an_xid_is_spooled_at_once_without_waiting_for_a_tick(tmp_path: Path) -> None:
    fake = FakeNvml()
    spool = MemorySpool()
    s = sampler(NvmlBackend(fake, kmsg_path=None, xid_wait_ms=20, budget_s=5.0), spool, tmp_path)
    s.start()
    fake.raise_xid(1, 79)
    s.wakeup.clear()
    await asyncio.wait_for(s.wakeup.wait(), 5)  # the shipper is woken by the XID itself
    assert event_kinds(spool, s.boot_id) == ["xid"] and s.stats.ticks == 0
    # The tick that follows still sees it: GPU 1's first health report already fails on XID 79.
    await s.tick()
    messages = spool.read(s.boot_id, 0, 10_000, events_only=True)
    health = {m.event.health.gpu_index: m.event.health for m in messages if m.event.HasField("health")}
    assert health[1].status == pb.HEALTH_FAIL and [r.check for r in health[1].reasons] == ["xid_79"]
    assert health[0].status == pb.HEALTH_OK
    s.gpu.close()  # type: ignore[union-attr]


async def test_a_tick_sends_workloads_for_gpus_with_processes(tmp_path: Path) -> None:
    fake = FakeNvml()
    fake.gpus[0].processes = [(31337, 2**30)]
    pid_dir = tmp_path / "31337"
    pid_dir.mkdir()
    (pid_dir / "cgroup").write_text("0::/system.slice/slurmstepd.scope/job_777/step_0/user/task_0\n")
    (pid_dir / "comm").write_text("python3\n")
    spool = MemorySpool()
    s = sampler(NvmlBackend(fake, kmsg_path=None, xid_wait_ms=20, budget_s=5.0), spool, tmp_path)
    s.start()
    await s.tick()
    messages = spool.read(s.boot_id, 0, 10_000, events_only=True)
    workloads = [m.event.workload for m in messages if m.event.HasField("workload")]
    assert [(w.gpu_index, [(p.pid, p.workload.kind, p.workload.id) for p in w.processes]) for w in workloads] == [
        (0, [(31337, "slurm", "777")])
    ]
    s.gpu.close()  # type: ignore[union-attr]


async def test_an_inventory_change_is_sent_and_kept_in_the_hello_for_later_connects(tmp_path: Path) -> None:
    fake = FakeNvml()
    spool = MemorySpool()
    s = sampler(NvmlBackend(fake, kmsg_path=None, budget_s=5.0, inventory_every=2), spool, tmp_path)
    started = s.start()
    assert started.gpus[1].vbios_version == "96.00.99.00.01"
    fake.gpus[1].vbios = "96.00.99.00.02"  # flashed under the running agent
    for _ in range(3):
        await s.tick()
    assert "inventory" in event_kinds(spool, s.boot_id)
    # What the next Hello says: the GPU as it is now, the other one as it was.
    current = spool.hello(s.boot_id)
    assert [g.vbios_version for g in current.gpus] == ["96.00.99.00.01", "96.00.99.00.02"]
    assert current.gpus[1].uuid == started.gpus[1].uuid and current.boot_id == started.boot_id
    s.gpu.close()  # type: ignore[union-attr]
