"""The /metrics renderer: conventions, caching across fleet changes, staleness, promtool."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.exporters.exposition import EventTallies, FleetExposition
from collector.ingest.decode import decode_frame
from collector.store import FleetStore
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout, encode_frame
from protos.fields import CATALOG

NOW = 1_800_000_000 * 10**9
GPU_COL = {f: CATALOG.gpu_ids.index(CATALOG.gpu(f).id) for f in ("temperature", "memory_used", "sm_clock")}


def hello(host: str, uuids: list[str]) -> pb.Hello:
    return pb.Hello(
        host_id=host,
        boot_id="b1",
        agent_version="0.1.0",
        host=pb.HostInventory(hostname=host, kernel="6.8.0", os="Debian 13", gpu_source="sim"),
        gpus=[
            pb.GpuInventory(index=i, uuid=u, name="NVIDIA H100 80GB HBM3", pci_bus_id=f"00000000:{i:02X}:00.0")
            for i, u in enumerate(uuids)
        ],
        host_field_ids=CATALOG.host_ids,
        gpu_field_ids=CATALOG.gpu_ids,
    )


def feed(store: FleetStore, h: pb.Hello, t: int = NOW, **gpu_values: float) -> None:
    layout = FrameLayout.from_hello(h)
    record = store.register(h, layout)
    record.connected = True
    gpu = np.full((len(h.gpus), len(CATALOG.gpu_ids)), np.nan)
    for name, value in gpu_values.items():
        gpu[:, GPU_COL[name]] = value
    host = np.arange(len(CATALOG.host_ids), dtype=np.float64)
    frame = decode_frame(encode_frame(t, host, gpu), layout, now_ns=t, max_future_ns=10**12, max_age_ns=10**12)
    store.apply_frame(record, frame)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.fail("promtool is required (Debian package prometheus)")


def test_native_exposition_is_promtool_clean_with_info_health_and_xid_series() -> None:
    store = FleetStore()
    feed(store, hello("node-a", ["GPU-1", "GPU-2"]), temperature=41.5, memory_used=2**30, sm_clock=1.98e9)
    store.record_xid(store.hosts["node-a"], 0, 79, 2)
    store.set_health(store.hosts["node-a"], 1, pb.HEALTH_WARN, [])
    text = FleetExposition(store, clock=lambda: NOW / 1e9).render()
    result = promtool_check(text)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr
    got = samples(text)
    gpu1 = {("host", "node-a"), ("gpu", "1"), ("uuid", "GPU-2"), ("model", "NVIDIA H100 80GB HBM3")}
    assert got[("gpulse_gpu_temperature_celsius", frozenset(gpu1))] == 41.5
    assert got[("gpulse_gpu_memory_used_bytes", frozenset(gpu1))] == 2**30
    assert got[("gpulse_gpu_health_status", frozenset(gpu1 | {("status", "warn")}))] == 1
    assert got[("gpulse_gpu_health_status", frozenset(gpu1 | {("status", "ok")}))] == 0
    assert "gpulse_gpu_health_status" in text and text.count("gpulse_gpu_health_status{") == 8
    info = [k for k in got if k[0] == "gpulse_gpu_info"]
    assert len(info) == 2 and ("pci_bus_id", "00000000:01:00.0") in info[1][1] | info[0][1]
    host_info = next(k for k in got if k[0] == "gpulse_host_info")
    assert {("kernel", "6.8.0"), ("gpu_source", "sim"), ("host", "node-a")} <= host_info[1]
    xid = {("xid", "79"), ("host", "node-a"), ("gpu", "0"), ("uuid", "GPU-1"), ("model", "NVIDIA H100 80GB HBM3")}
    assert got[("gpulse_gpu_xid_errors_total", frozenset(xid))] == 2
    # A field never read (NaN) has no series at all, never a 0.
    assert "gpulse_gpu_power_usage_watts{" not in text


def test_replaced_gpu_gets_new_labels_and_the_old_uuid_disappears() -> None:
    store = FleetStore()
    exposition = FleetExposition(store, clock=lambda: NOW / 1e9)
    feed(store, hello("node-a", ["GPU-old", "GPU-keep"]), temperature=40.0)
    assert 'uuid="GPU-old"' in exposition.render()
    feed(store, hello("node-a", ["GPU-new", "GPU-keep"]), temperature=50.0)
    text = exposition.render()
    assert 'uuid="GPU-old"' not in text
    new = 'gpulse_gpu_temperature_celsius{host="node-a",gpu="0",uuid="GPU-new",model="NVIDIA H100 80GB HBM3"} 50'
    assert new in text
    feed(store, hello("node-b", ["GPU-b"]), temperature=30.0)
    assert 'gpulse_gpu_temperature_celsius{host="node-b",gpu="0",uuid="GPU-b"' in exposition.render()


def test_stale_host_keeps_only_up_zero() -> None:
    store = FleetStore()
    feed(store, hello("old", ["GPU-o"]), t=NOW - 600 * 10**9, temperature=40.0)
    feed(store, hello("new", ["GPU-n"]), temperature=40.0)
    text = FleetExposition(store, stale_after=120, clock=lambda: NOW / 1e9).render()
    assert 'gpulse_host_up{host="old"} 0' in text and 'gpulse_host_up{host="new"} 1' in text
    assert 'uuid="GPU-o"' not in text and 'gpulse_host_load1{host="old"}' not in text


def test_spool_drops_count_per_host_from_zero_and_pcie_limits_come_from_inventory() -> None:
    store = FleetStore()
    h = hello("node-a", ["GPU-1"])
    h.gpus[0].pcie_max_generation, h.gpus[0].pcie_max_width = 5, 16
    feed(store, h, temperature=40.0)
    feed(store, hello("node-b", ["GPU-2"]), temperature=40.0)
    tallies = EventTallies()
    exposition = FleetExposition(store, clock=lambda: NOW / 1e9, tallies=tallies)
    text = exposition.render()
    assert 'gpulse_host_spool_dropped_records_total{host="node-a"} 0' in text
    drop = pb.Event(unix_ns=NOW, spool_drop=pb.SpoolDropEvent(first_seq=5, last_seq=9, records=5, bytes=900))
    tallies.event_applied(store.hosts["node-a"], drop)
    tallies.event_applied(store.hosts["node-a"], drop)
    text = exposition.render()
    assert 'gpulse_host_spool_dropped_records_total{host="node-a"} 10' in text
    assert 'gpulse_host_spool_dropped_records_total{host="node-b"} 0' in text
    assert 'gpulse_gpu_pcie_link_max_width{host="node-a",gpu="0",uuid="GPU-1"' in text
    assert 'gpulse_gpu_pcie_link_max_generation{host="node-b"' not in text  # unknown: no series


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown exposition format 'influx'"):
        FleetExposition(FleetStore(), formats=["gpulse", "influx"])


def test_empty_store_renders_valid_text() -> None:
    text = FleetExposition(FleetStore(), clock=lambda: NOW / 1e9).render()
    assert promtool_check(text).returncode == 0


def test_agent_supplied_labels_are_bounded() -> None:
    store = FleetStore()
    h = hello("node-a", ["GPU-1"])
    h.gpus[0].name = "M" * 5000
    feed(store, h, temperature=40.0)
    record = store.hosts["node-a"]
    for code in (79, 4_000_000, 123_456):
        store.record_xid(record, 0, code, 2)
    text = FleetExposition(store, clock=lambda: NOW / 1e9).render()
    assert "M" * 256 + '"' in text and "M" * 257 not in text
    xids = {s.labels["xid"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "gpulse_gpu_xid_errors_total"}  # fmt: skip
    assert xids == {"79": 2, "other": 4}
