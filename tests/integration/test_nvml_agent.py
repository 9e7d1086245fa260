"""The agent on the nvml source (fake pynvml) streaming to a real collector: XIDs, NVLink, health, lost GPUs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pynvml

from agent import config as agent_config
from agent.daemon import run_agent
from agent.gpu_watch import GpuWatch
from agent.main import build_agent
from agent.records import GpuInfo
from agent.sources.nvml import NvmlBackend
from agent.sources.workload import WorkloadResolver
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.kit import Collector, Pki, Service, http_get, metric_value, start_collector
from tests.kit import agent_config as write_agent_config


async def until(condition: Callable[[], object], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_nvml_agent_end_to_end(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    fake = FakeNvml([FakeGpu(uuid=f"GPU-e2e-{i}", pci_bus_id=f"00000000:{0x18 + i:02X}:00.0") for i in range(3)])
    fake.gpus[1].link_fields[(pynvml.NVML_FI_DEV_NVLINK_GET_STATE, 5)] = 0  # one NVLink link down
    fake.gpus[2].processes = [(4242, 2**30)]
    backend = NvmlBackend(fake, kmsg_path=None, slow_every=2, xid_wait_ms=20, budget_s=0.3, xid_window_s=1.0)
    config = agent_config.load(
        write_agent_config(tmp, test_pki, "gpu-node", [collector.target], gpu={"source": "nvml"})
    )

    def watch(gpus: list[GpuInfo], field_ids: tuple[int, ...]) -> GpuWatch:
        return GpuWatch(gpus, field_ids, resolver=WorkloadResolver(proc_root=tmp / "no-proc"), slow_every=2)

    sampler, shipper = build_agent(config, gpu=backend)
    sampler._make_watch = watch
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(sampler, shipper, stop))

    def metrics() -> str:
        return http_get(collector.url("/metrics"))

    def health(gpu: str, status: str) -> float | None:
        return metric_value(metrics(), "gpulse_gpu_health_status", host="gpu-node", gpu=gpu, status=status)

    try:
        await until(lambda: health("0", "ok") == 1, "GPU 0 healthy")
        text = metrics()
        assert health("1", "fail") == 1  # the down link
        assert metric_value(text, "gpulse_gpu_nvlink_link_up", host="gpu-node", gpu="1", link="5") == 0
        assert metric_value(text, "gpulse_gpu_nvlink_link_up", host="gpu-node", gpu="1", link="4") == 1
        assert metric_value(text, "gpulse_gpu_power_usage_watts", host="gpu-node", gpu="0") == 612
        # XIDs go out between ticks, each one counted (repeats after the 1 s coalescing window).
        fake.raise_xid(0, 79)
        fake.raise_xid(2, 94, times=3)
        await until(
            lambda: metric_value(metrics(), "gpulse_gpu_xid_errors_total", host="gpu-node", gpu="2", xid="94") == 3,
            "all three XID 94s counted",
        )
        assert metric_value(metrics(), "gpulse_gpu_xid_errors_total", host="gpu-node", gpu="0", xid="79") == 1
        await until(lambda: health("0", "fail") == 1, "XID 79 fails GPU 0")
        # A GPU falls off the bus: the others keep reporting.
        fake.gpus[2].lost = True
        fake.gpus[0].temperature = 71
        await until(lambda: health("2", "fail") == 1, "lost GPU 2 fails")
        await until(
            lambda: metric_value(metrics(), "gpulse_gpu_temperature_celsius", host="gpu-node", gpu="0") == 71,
            "GPU 0 still reporting",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_an_inventory_change_outlives_a_collector_restart(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    fake = FakeNvml([FakeGpu(uuid=f"GPU-inv-{i}", pci_bus_id=f"00000000:{0x18 + i:02X}:00.0") for i in range(2)])
    backend = NvmlBackend(fake, kmsg_path=None, budget_s=0.3, inventory_every=2)
    config = agent_config.load(
        write_agent_config(tmp, test_pki, "inv-node", [collector.target], gpu={"source": "nvml"})
    )
    sampler, shipper = build_agent(config, gpu=backend)
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(sampler, shipper, stop))

    def vbios(target: Collector) -> float | None:
        text = http_get(target.url("/metrics"))
        return metric_value(text, "gpulse_gpu_info", host="inv-node", gpu="1", vbios_version="96.00.99.00.02")

    try:
        await until(lambda: metric_value(http_get(collector.url("/metrics")), "gpulse_host_up", host="inv-node") == 1,
                    "the agent streaming")  # fmt: skip
        fake.gpus[1].vbios = "96.00.99.00.02"  # flashed under the running agent
        await until(lambda: vbios(collector) == 1, "the inventory change at the collector")
        # The change was acknowledged long ago; a restarted collector knows the GPUs only from the
        # Hello of the reconnecting stream, which must describe them as they are now.
        collector.stop()
        restarted = collector.start()
        assert isinstance(restarted, Collector)
        restarted.wait_ready()
        services.append(restarted)
        await until(lambda: vbios(restarted) == 1, "the new VBIOS after the collector restarted")
        text = http_get(restarted.url("/metrics"))
        assert metric_value(text, "gpulse_gpu_info", host="inv-node", gpu="1", vbios_version="96.00.99.00.01") is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
