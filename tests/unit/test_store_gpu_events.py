"""The store and exposition side of the agent's GPU events: per-link NVLink and inventory changes."""

from __future__ import annotations

import math
import subprocess
import time

import numpy as np

from collector.exporters.exposition import FleetExposition
from collector.ingest.decode import decode_frame
from collector.store import FleetStore
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout, encode_frame
from protos.fields import CATALOG

NOW = time.time_ns()


def registered(store: FleetStore) -> pb.Hello:
    hello = pb.Hello(
        host_id="h",
        boot_id="b",
        gpus=[
            pb.GpuInventory(index=i, uuid=f"GPU-{i}", name="H100", driver_version="550.90.07", pcie_max_generation=5)
            for i in range(2)
        ],
        host_field_ids=CATALOG.host_ids,
        gpu_field_ids=CATALOG.gpu_ids,
    )
    layout = FrameLayout.from_hello(hello)
    record = store.register(hello, layout)
    host = np.full(len(CATALOG.host_ids), 1.0)
    gpu = np.full((2, len(CATALOG.gpu_ids)), 1.0)
    frame = decode_frame(encode_frame(NOW, host, gpu), layout, now_ns=NOW, max_future_ns=10**12, max_age_ns=10**12)
    store.apply_frame(record, frame)
    record.connected = True
    return hello


def render(store: FleetStore) -> str:
    return FleetExposition(store, clock=lambda: NOW / 1e9).render()


def test_per_link_nvlink_is_exported_and_passes_promtool() -> None:
    store = FleetStore()
    registered(store)
    store.set_nvlink(
        store.hosts["h"],
        1,
        [
            pb.NvlinkLink(link=0, up=True, crc_errors=0, replay_errors=0, recovery_errors=0),
            pb.NvlinkLink(link=1, up=False, crc_errors=9, replay_errors=2, recovery_errors=math.nan),
        ],
    )
    text = render(store)
    assert 'gpulse_gpu_nvlink_link_up{host="h",gpu="1",uuid="GPU-1",model="H100",link="1"} 0' in text
    assert 'gpulse_gpu_nvlink_link_crc_errors_total{host="h",gpu="1",uuid="GPU-1",model="H100",link="1"} 9' in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_inventory_change_updates_labels_in_place() -> None:
    store = FleetStore()
    registered(store)
    row = store.hosts["h"].gpus[0].row
    before = render(store)
    assert 'driver_version="550.90.07"' in before
    store.update_gpu(store.hosts["h"], pb.GpuInventory(index=0, uuid="GPU-0", name="H100", driver_version="560.28.03"))
    after = render(store)
    assert store.hosts["h"].gpus[0].row == row  # the same series, not a new GPU
    info = [ln for ln in after.splitlines() if ln.startswith('gpulse_gpu_info{host="h",gpu="0"')]
    assert len(info) == 1 and 'driver_version="560.28.03"' in info[0]


def test_failing_health_checks_are_named_and_vanish_when_they_pass() -> None:
    store = FleetStore()
    registered(store)
    record = store.hosts["h"]
    reasons = [
        pb.HealthReason(check="memory_dbe", status=pb.HEALTH_FAIL, message="1 uncorrectable"),
        pb.HealthReason(check="pcie_link_width", status=pb.HEALTH_WARN, message="x8"),
    ]
    store.set_health(record, 1, pb.HEALTH_FAIL, reasons)
    text = render(store)
    labels = 'host="h",gpu="1",uuid="GPU-1",model="H100"'
    assert f'gpulse_gpu_health_reason{{{labels},check="memory_dbe",status="fail"}} 1' in text
    assert f'gpulse_gpu_health_reason{{{labels},check="pcie_link_width",status="warn"}} 1' in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    store.set_health(record, 1, pb.HEALTH_OK, [])
    assert "gpulse_gpu_health_reason" not in render(store)


def test_an_inventory_from_a_lost_gpu_means_it_is_back() -> None:
    store = FleetStore()
    registered(store)
    record = store.hosts["h"]
    store.mark_lost(record, 0)
    assert 'gpulse_gpu_lost{host="h",gpu="0",uuid="GPU-0",model="H100"} 1' in render(store)
    store.update_gpu(record, pb.GpuInventory(index=0, uuid="GPU-0", name="H100", driver_version="550.90.07"))
    assert 'gpulse_gpu_lost{host="h",gpu="0",uuid="GPU-0",model="H100"} 0' in render(store)
