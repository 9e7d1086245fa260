"""The nvml source through the real nvidia-ml-py and a C stub libnvidia-ml.so.1 (tests/fakes/nvml_stub).

What the Python fake cannot show: nvidia-ml-py's library loading, function-pointer lookup, versioned
structs and error mapping, against NVML's C ABI.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest

from agent import config as agent_config
from agent.daemon import run_agent
from agent.gpu_watch import GpuWatch
from agent.main import build_agent
from agent.records import GpuInfo
from agent.sources.nvml import NvmlBackend
from agent.sources.workload import WorkloadResolver
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG
from tests.fakes.nvml_stub import StubConfig, StubGpu, StubLibrary, build
from tests.kit import Pki, Service, http_get, metric_value, start_collector
from tests.kit import agent_config as write_agent_config

REPO = Path(__file__).resolve().parents[2]


def col(name: str) -> int:
    return CATALOG.gpu_ids.index(CATALOG.gpu(name).id)


def opened(**kwargs: Any) -> NvmlBackend:
    kwargs.setdefault("kmsg_path", None)
    kwargs.setdefault("xid_wait_ms", 20)
    kwargs.setdefault("budget_s", 5.0)
    b = NvmlBackend(pynvml, **kwargs)
    b.open()
    return b


@pytest.mark.parametrize(
    ("gpu", "name", "memory_gib", "power_max", "links", "power_now"),
    [
        (StubGpu.h100, "NVIDIA H100 80GB HBM3", 80, 700.0, 18, 612.0),
        (StubGpu.a100, "NVIDIA A100-SXM4-40GB", 40, 400.0, 12, 287.0),
    ],
)
def test_h100_and_a100_inventories_and_readings_through_the_real_binding(
    nvml_stub: StubConfig, gpu: Callable[[int], StubGpu], name: str, memory_gib: int, power_max: float, links: int,
    power_now: float,
) -> None:  # fmt: skip
    nvml_stub.gpus = [gpu(0), gpu(1)]
    nvml_stub.write()
    b = opened()
    try:
        inv = b._gpus[0].info
        assert (inv.name, inv.memory_total_bytes, inv.power_limit_max_watts) == (name, memory_gib * 2**30, power_max)
        assert inv.nvlink_count == links and inv.driver_version == "550.90.07" and inv.cuda_version == "12.4"
        assert inv.pci_bus_id == nvml_stub.gpus[0].values["pci"]  # bytes in nvmlPciInfo_t, text here
        assert CATALOG.gpu("fan_speed").id in inv.unsupported_field_ids  # an SXM board has no fan
        row = b.sample(time.time_ns())[1]
        assert row[col("power_usage")] == pytest.approx(power_now)  # A100: the getter, H100: the field id
        assert row[col("energy_consumption")] == pytest.approx(123_456.789)
        assert row[col("nvlink_links_up")] == links and row[col("ecc_corrected_aggregate")] == 4
        assert math.isnan(row[col("fan_speed")])
    finally:
        b.close()


def test_a_lost_gpu_is_nan_and_an_event_and_the_other_goes_on(nvml_stub: StubConfig) -> None:
    nvml_stub.gpus = [StubGpu.h100(0), StubGpu.h100(1)]
    nvml_stub.write()
    b = opened()
    try:
        b.sample(time.time_ns())
        nvml_stub.gpus[1].values["lost"] = 1
        nvml_stub.gpus[0].values["temperature"] = 71
        nvml_stub.write()
        rows = b.sample(time.time_ns())
        assert all(math.isnan(v) for v in rows[1])
        assert rows[0][col("temperature")] == 71
        lost = [e.gpu_lost for e in b.drain_events() if e.WhichOneof("kind") == "gpu_lost"]
        assert [e.gpu_index for e in lost] == [1] and "GPU is lost" in lost[0].reason
        assert b.stats.gpus_lost == 1
    finally:
        b.close()


def test_an_xid_event_arrives_in_under_a_second(nvml_stub: StubConfig) -> None:
    b = opened(xid_wait_ms=500)  # the agent's default wait: the event must not wait for it to end
    try:
        assert b.xid_source == "nvml"
        nvml_stub.xids.append((0, 79))
        started = time.monotonic()
        nvml_stub.write()
        xids = []
        while not xids and time.monotonic() - started < 5:
            xids = [e.xid for e in b.drain_events() if e.WhichOneof("kind") == "xid"]
            time.sleep(0.005)
        took = time.monotonic() - started
        assert [(x.gpu_index, x.xid, x.source) for x in xids] == [(0, 79, "nvml")]
        assert took < 1.0, f"XID took {took:.3f} s"
    finally:
        b.close()


def test_not_supported_timeout_and_a_slow_call_cost_only_their_own_values(nvml_stub: StubConfig) -> None:
    gpu = nvml_stub.gpus[0]
    del gpu.fields[pynvml.NVML_FI_DEV_MEMORY_TEMP]  # NOT_SUPPORTED through FieldValues' own code
    nvml_stub.gpus.append(StubGpu.h100(1))
    nvml_stub.write()
    b = opened(budget_s=1.0)
    try:
        assert CATALOG.gpu("memory_temperature").id in b._gpus[0].info.unsupported_field_ids
        gpu.errors["nvmlDeviceGetTemperature"] = pynvml.NVML_ERROR_TIMEOUT
        nvml_stub.gpus[1].delays_ms["nvmlDeviceGetUtilizationRates"] = 3000  # stuck in the driver
        nvml_stub.write()
        started = time.monotonic()
        rows = b.sample(time.time_ns())
        assert time.monotonic() - started < 2.5  # the tick does not wait for the stuck GPU
        assert math.isnan(rows[0][col("temperature")]) and rows[0][col("power_usage")] == pytest.approx(612)
        assert math.isnan(rows[0][col("memory_temperature")])
        assert all(math.isnan(v) for v in rows[1]) and b.stats.budget_exceeded >= 1
    finally:
        b.close()


def test_nvml_calls_per_gpu_per_tick_match_benchmarks(nvml_stub: StubConfig, nvml_stub_lib: StubLibrary) -> None:
    """BENCHMARKS.md: 10 calls per GPU on a fast tick (one FieldValues, nine getters), counted in C."""
    nvml_stub.gpus = [StubGpu.h100(i) for i in range(8)]
    nvml_stub.write()
    b = opened(slow_every=10)
    try:
        b.sample(time.time_ns())  # the first tick is a slow one
        nvml_stub_lib.reset()
        b.sample(time.time_ns())
        assert [nvml_stub_lib.calls(gpu=i) for i in range(8)] == [10] * 8
        assert nvml_stub_lib.calls("nvmlDeviceGetFieldValues", gpu=3) == 1
        for _ in range(8):
            b.sample(time.time_ns())
        nvml_stub_lib.reset()
        b.sample(time.time_ns())  # tick 11: slow (processes + one batched per-link read)
        assert [nvml_stub_lib.calls(gpu=i) for i in range(8)] == [12] * 8
    finally:
        b.close()


def test_an_old_driver_lacking_newer_functions_degrades_to_not_supported(nvml_stub_cache: Path, tmp_path: Path) -> None:
    """R470: no ComputeRunningProcesses_v3, ClocksEventReasons or EventSetWait_v2; nvidia-ml-py asks for them."""
    lib = build(nvml_stub_cache, old_driver=True)
    config = StubConfig(tmp_path / "old.conf", [StubGpu.a100(0)], driver="470.256.02", lib=lib)
    config.gpus[0].values["clocks_event_reasons"] = int(pynvml.nvmlClocksEventReasonSwPowerCap)
    config.write()
    out = subprocess.run(
        [sys.executable, "-m", "tests.fakes.nvml_probe", "2"],
        cwd=REPO, env=config.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])  # the log goes to stdout too
    assert "NVML XID events unavailable" in out.stdout
    assert got["inventory"][0]["driver"] == "470.256.02"
    assert "compute_processes" in got["unsupported"][0]  # recorded, not a crash
    row = got["rows"][0]
    assert row["clock_event_sw_power_cap"] == 1  # through the pre-R535 ThrottleReasons name
    assert row["power_usage"] == pytest.approx(287) and row["compute_processes"] is None
    assert got["xid_source"] == ""  # no event wait on this driver and no kernel log given


def test_a_mig_gpu_reports_each_instance_memory_and_attributes_processes_to_it(
    nvml_stub: StubConfig, tmp_path: Path
) -> None:
    from agent.sources.workload import WorkloadResolver, WorkloadTracker
    from protos import telemetry_pb2 as pb

    gpu = nvml_stub.gpus[0]
    gpu.values.update({"mig": 1, "mig.count": 2, "procs": ""})
    for slot, (gi, mem_total, mem_used, procs) in enumerate(
        [(1, 40 * 2**30, 30 * 2**30, "1001:20000000000"), (2, 20 * 2**30, 5 * 2**30, "1002:5000000000")]
    ):
        gpu.values.update({
            f"mig{slot}.uuid": f"MIG-5c1b0000-0000-4000-8000-00000000000{slot}",
            f"mig{slot}.gi": gi, f"mig{slot}.ci": 0,
            f"mig{slot}.memory_total": mem_total, f"mig{slot}.memory_used": mem_used,
            f"mig{slot}.procs": procs,
        })  # fmt: skip
    nvml_stub.write()
    b = opened()
    try:
        assert b._gpus[0].info.mig_mode
        row = b.sample(time.time_ns())[0]
        assert row[col("compute_processes")] == 2
        migs = b.mig_instances()[0]
        assert [(m.gpu_instance_id, m.memory_total_bytes, m.memory_used_bytes) for m in migs] == [
            (1, 40 * 2**30, 30 * 2**30),
            (2, 20 * 2**30, 5 * 2**30),
        ]
        procs = b.processes()[0]
        assert [(p.pid, p.mig_uuid[-1], p.gpu_instance_id, p.used_memory_bytes) for p in procs] == [
            (1001, "0", 1, 20_000_000_000),
            (1002, "1", 2, 5_000_000_000),
        ]
        # Job attribution keeps the instance; both go out in the workload event.
        proc_root = tmp_path / "proc"
        for pid in (1001, 1002):
            d = proc_root / str(pid)
            d.mkdir(parents=True)
            (d / "cgroup").write_text(f"0::/system.slice/slurmstepd.scope/job_{pid}/step_0/user/task_0\n")
        resolved = WorkloadResolver(proc_root=proc_root, user_name=str).resolve(b.processes(), {0: "GPU-x"})
        (event,) = WorkloadTracker().update(resolved, 1, 1, b.mig_instances())
        sent = pb.Event.FromString(event.SerializeToString()).workload
        assert [(p.workload.id, p.gpu_instance_id) for p in sent.processes] == [("1001", 1), ("1002", 2)]
        assert [m.memory_used_bytes for m in sent.mig_instances] == [30 * 2**30, 5 * 2**30]
    finally:
        b.close()


async def test_the_agent_over_the_stub_streams_health_xids_jobs_and_a_lost_gpu(
    nvml_stub: StubConfig, tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    """The whole agent on the real binding to a real collector: health checks, the XID watch, attribution."""
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    nvml_stub.gpus = [StubGpu.h100(i) for i in range(3)]
    nvml_stub.gpus[1].fields[(pynvml.NVML_FI_DEV_NVLINK_GET_STATE, 5)] = 0  # one NVLink link down
    nvml_stub.gpus[2].values["procs"] = f"4242:{2**30}"
    nvml_stub.write()
    proc_root = tmp / "proc"
    (proc_root / "4242").mkdir(parents=True)
    cgroup = (REPO / "tests" / "fixtures" / "cgroup" / "crio-systemd-v2-besteffort").read_text()
    (proc_root / "4242" / "cgroup").write_text(cgroup)
    backend = NvmlBackend(pynvml, kmsg_path=None, slow_every=2, xid_wait_ms=100, budget_s=1.0, xid_window_s=1.0)
    config = agent_config.load(
        write_agent_config(tmp, test_pki, "stub-node", [collector.target], gpu={"source": "nvml"})
    )
    sent: list[pb.Event] = []

    class Watch(GpuWatch):
        def attribute(self, *args: Any, **kwargs: Any) -> list[pb.Event]:
            events = super().attribute(*args, **kwargs)
            sent.extend(events)  # what the sampler hands the shipper
            return events

    def watch(gpus: list[GpuInfo], field_ids: tuple[int, ...]) -> GpuWatch:
        return Watch(gpus, field_ids, resolver=WorkloadResolver(proc_root=proc_root, user_name=str), slow_every=2)

    sampler, shipper = build_agent(config, gpu=backend)
    sampler._make_watch = watch
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(sampler, shipper, stop))

    def metrics() -> str:
        return http_get(collector.url("/metrics"))

    def health(gpu: str, status: str) -> float | None:
        return metric_value(metrics(), "gpulse_gpu_health_status", host="stub-node", gpu=gpu, status=status)

    async def until(condition: Callable[[], object], what: str, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if condition():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    try:
        await until(lambda: health("0", "ok") == 1, "GPU 0 healthy")
        assert health("1", "fail") == 1  # the down link, read through the batched per-link FieldValues
        assert metric_value(metrics(), "gpulse_gpu_power_usage_watts", host="stub-node", gpu="0") == 612
        (p,) = sampler.gpu.processes()[2]
        assert p.pid == 4242
        nvml_stub.xids.append((0, 79))
        nvml_stub.write()
        await until(
            lambda: metric_value(metrics(), "gpulse_gpu_xid_errors_total", host="stub-node", gpu="0", xid="79") == 1,
            "the XID counted at the collector",
        )
        await until(lambda: health("0", "fail") == 1, "XID 79 fails GPU 0")
        # The CRI-O container's process, attributed from its cgroup, as the workload event sent.
        (event,) = [e.workload for e in sent if e.workload.gpu_index == 2]
        assert [(p.pid, p.workload.kind, p.workload.container_id[:8]) for p in event.processes] == [
            (4242, "kubernetes", "e4d3c2b1")
        ]
        nvml_stub.gpus[2].values["lost"] = 1
        nvml_stub.write()
        await until(lambda: health("2", "fail") == 1, "lost GPU 2 fails")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
