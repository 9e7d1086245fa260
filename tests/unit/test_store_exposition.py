from __future__ import annotations

import asyncio
import subprocess

import numpy as np
import pytest

from collector.exporters.exposition import FleetExposition
from collector.ingest.decode import decode_frame
from collector.store import FleetStore
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout, encode_frame
from protos.fields import CATALOG

NOW = 1_800_000_000 * 10**9


def hello(host: str, gpus: int, boot: str = "b1") -> pb.Hello:
    return pb.Hello(
        host_id=host,
        boot_id=boot,
        gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{host}-{i}", name='Model "X"') for i in range(gpus)],
        host_field_ids=CATALOG.host_ids,
        gpu_field_ids=CATALOG.gpu_ids,
    )


def apply(store: FleetStore, h: pb.Hello, t: int, fill: float) -> None:
    layout = FrameLayout.from_hello(h)
    record = store.register(h, layout) if store.hosts.get(h.host_id) is None else store.hosts[h.host_id]
    host = np.full(len(CATALOG.host_ids), fill)
    gpu = np.full((len(h.gpus), len(CATALOG.gpu_ids)), fill)
    gpu[:, 0] = np.arange(len(h.gpus)) + fill
    frame = decode_frame(encode_frame(t, host, gpu), layout, now_ns=t, max_future_ns=10**12, max_age_ns=10**12)
    store.apply_frame(record, frame)


def test_scatter_places_each_gpu_value_in_its_row() -> None:
    store = FleetStore(host_capacity=1, gpu_capacity=2)  # forces the arrays to grow
    apply(store, hello("a", 2), NOW, 1.0)
    apply(store, hello("b", 3), NOW, 5.0)
    assert store.value("a", 1, "utilization") == 2.0
    assert store.value("b", 2, "utilization") == 7.0
    assert store.value("b", 0, "temperature") == 5.0


def test_an_older_replayed_frame_does_not_overwrite_newer_values() -> None:
    store = FleetStore()
    apply(store, hello("a", 1), NOW, 3.0)
    apply(store, hello("a", 1), NOW - 10**9, 9.0)
    assert store.value("a", 0, "temperature") == 3.0


def test_reconnect_with_same_gpus_keeps_rows_and_new_gpus_get_new_ones() -> None:
    store = FleetStore()
    h = hello("a", 2)
    first = store.register(h, FrameLayout.from_hello(h))
    again = store.register(hello("a", 2, boot="b2"), FrameLayout.from_hello(h))
    assert [g.row for g in first.gpus] == [g.row for g in again.gpus]
    other = hello("a", 1)
    other.gpus[0].uuid = "GPU-replaced"
    changed = store.register(other, FrameLayout.from_hello(other))
    assert len(changed.gpus) == 1 and changed.gpus[0].uuid == "GPU-replaced"


def test_a_reconnect_takes_the_gpus_facts_from_the_new_hello() -> None:
    store = FleetStore()
    h = hello("a", 2)
    apply(store, h, NOW, 1.0)
    store.hosts["a"].connected = True
    again = hello("a", 2)
    again.gpus[1].vbios_version, again.gpus[1].driver_version = "96.00.99.00.02", "560.28.03"
    store.register(again, FrameLayout.from_hello(again))
    text = FleetExposition(store, stale_after=120, clock=lambda: NOW / 1e9).render()
    info = [line for line in text.splitlines() if line.startswith('gpulse_gpu_info{host="a",gpu="1"')]
    assert len(info) == 1 and 'vbios_version="96.00.99.00.02"' in info[0] and 'driver_version="560.28.03"' in info[0]


def test_exposition_escapes_labels_skips_nan_and_stale_hosts() -> None:
    store = FleetStore()
    apply(store, hello("fresh", 1), NOW, 1.5)
    apply(store, hello("stale", 1), NOW - 600 * 10**9, 2.0)
    store.hosts["fresh"].connected = True
    text = FleetExposition(store, stale_after=120, clock=lambda: NOW / 1e9).render()
    assert 'gpulse_gpu_temperature_celsius{host="fresh",gpu="0",uuid="GPU-fresh-0",model="Model \\"X\\""} 1.5' in text
    assert 'host="stale",gpu' not in text
    assert 'gpulse_host_up{host="fresh"} 1' in text and 'gpulse_host_up{host="stale"} 0' in text


def test_exposition_passes_promtool_check_metrics() -> None:
    store = FleetStore()
    apply(store, hello("a", 2), NOW, 1.0)
    store.record_xid(store.hosts["a"], 1, 79, 3)
    text = FleetExposition(store, clock=lambda: NOW / 1e9).render()
    assert 'gpulse_gpu_xid_errors_total{host="a",gpu="1",uuid="GPU-a-1",model="Model \\"X\\"",xid="79"} 3' in text
    try:
        result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.fail("promtool is required (Debian package prometheus)")
    assert result.returncode == 0, result.stdout + result.stderr


async def test_the_asynchronous_render_is_the_same_text_and_lets_the_loop_run_between_slices() -> None:
    store = FleetStore()
    for h in range(20):
        apply(store, hello(f"h{h}", 8), NOW, float(h))
        store.hosts[f"h{h}"].connected = True
    exposition = FleetExposition(store, stale_after=120, clock=lambda: NOW / 1e9, formats=("gpulse", "dcgm"))
    turns = 0

    async def ingest() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ingest())
    await asyncio.sleep(0)
    before = turns
    chunks = await exposition.render_async()
    other.cancel()
    assert len(chunks) > 10 and b"".join(chunks).decode() == exposition.render()
    assert turns - before >= 10  # ingest ran between the slices, not only before and after


async def test_a_host_joining_mid_render_makes_the_render_start_over_whole() -> None:
    store = FleetStore()
    for h in range(5):
        apply(store, hello(f"h{h}", 8), NOW, 1.0)
    exposition = FleetExposition(store, stale_after=120, clock=lambda: NOW / 1e9)

    async def join() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        apply(store, hello("late", 8), NOW, 2.0)  # registers: the fleet's shape changes

    joining = asyncio.create_task(join())
    text = b"".join(await exposition.render_async()).decode()
    await joining
    assert 'host="late"' in text and text == exposition.render()


def test_a_plain_reconnect_leaves_the_fleet_generation_and_a_changed_gpu_moves_it() -> None:
    store = FleetStore()
    h = hello("a", 2)
    store.register(h, FrameLayout.from_hello(h))
    generation = store.generation
    store.register(hello("a", 2, boot="b1"), FrameLayout.from_hello(h))  # a network blip
    assert store.generation == generation  # so a sliced /metrics render in flight goes on
    flashed = hello("a", 2)
    flashed.gpus[0].vbios_version = "96.00.99.00.02"
    store.register(flashed, FrameLayout.from_hello(flashed))
    assert store.generation == generation + 1
