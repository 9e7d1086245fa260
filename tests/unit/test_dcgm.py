"""dcgm-exporter compatible exposition: names, labels and units as dcgm-exporter publishes them."""

from __future__ import annotations

import subprocess

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from collector.exporters.exposition import EventTallies, FleetExposition
from collector.exporters.exposition.dcgm import DCGM_FAMILIES
from collector.ingest.decode import decode_frame
from collector.store import FleetStore
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout, encode_frame
from protos.fields import CATALOG

NOW = 1_800_000_000 * 10**9
BASE = {  # base units, as the catalog keeps them
    "sm_clock": 1.98e9,
    "memory_used": 10 * 2**30 + 12345,
    "memory_free": 70 * 2**30,
    "utilization": 0.87,
    "energy_consumption": 1234.5,
    "power_usage": 512.25,
    "temperature": 61.0,
    "power_violation": 2.5,
}


def render(formats: tuple[str, ...], xid: int = 0) -> str:
    store = FleetStore()
    h = pb.Hello(
        host_id="node-7",
        boot_id="b",
        gpus=[pb.GpuInventory(index=0, uuid="GPU-abc", name="NVIDIA H100 80GB HBM3", pci_bus_id="00000000:1B:00.0")],
        host_field_ids=CATALOG.host_ids,
        gpu_field_ids=CATALOG.gpu_ids,
    )
    layout = FrameLayout.from_hello(h)
    record = store.register(h, layout)
    gpu = np.full((1, len(CATALOG.gpu_ids)), np.nan)
    for name, value in BASE.items():
        gpu[0, CATALOG.gpu_ids.index(CATALOG.gpu(name).id)] = value
    host = np.zeros(len(CATALOG.host_ids))
    store.apply_frame(
        record, decode_frame(encode_frame(NOW, host, gpu), layout, now_ns=NOW, max_future_ns=1, max_age_ns=1)
    )
    tallies = EventTallies()
    if xid:
        tallies.event_applied(record, pb.Event(unix_ns=NOW, xid=pb.XidEvent(gpu_index=0, xid=xid, count=1)))
    return FleetExposition(store, clock=lambda: NOW / 1e9, formats=formats, tallies=tallies).render()


def values(text: str) -> dict[str, tuple[dict[str, str], float]]:
    # prometheus_client's parser would add _total to counters; dcgm-exporter's names have none.
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name.removesuffix("_total") if types.get(family.name) == "counter" else s.name
            out[name] = (s.labels, s.value)
    return out


def test_dcgm_names_carry_dcgm_labels_and_units() -> None:
    got = values(render(("dcgm",)))
    labels, sm = got["DCGM_FI_DEV_SM_CLOCK"]
    assert labels == {
        "gpu": "0",
        "UUID": "GPU-abc",
        "pci_bus_id": "00000000:1B:00.0",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "node-7",
    }
    assert sm == 1980  # MHz
    assert got["DCGM_FI_DEV_FB_USED"][1] == 10 * 1024  # whole MiB, rounded down like the driver
    assert got["DCGM_FI_DEV_FB_FREE"][1] == 70 * 1024
    assert got["DCGM_FI_DEV_GPU_UTIL"][1] == 87  # percent
    assert got["DCGM_FI_PROF_GR_ENGINE_ACTIVE"][1] == 0.87  # ratio
    assert got["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][1] == 1234500  # mJ
    assert got["DCGM_FI_DEV_POWER_VIOLATION"][1] == 2.5e6  # microseconds
    assert got["DCGM_FI_DEV_POWER_USAGE"][1] == 512.25 and got["DCGM_FI_DEV_GPU_TEMP"][1] == 61
    assert "DCGM_FI_DEV_FAN_SPEED" not in got  # not read: no series, never a 0
    assert got["DCGM_FI_DEV_XID_ERRORS"][1] == 0  # no XID yet


def test_dcgm_xid_errors_is_the_last_xid_seen() -> None:
    assert values(render(("dcgm",), xid=79))["DCGM_FI_DEV_XID_ERRORS"][1] == 79


def test_dcgm_alone_has_no_gpulse_series_and_both_has_both() -> None:
    assert "gpulse_gpu_" not in render(("dcgm",))
    both = render(("gpulse", "dcgm"))
    assert "gpulse_gpu_temperature_celsius{" in both and "DCGM_FI_DEV_GPU_TEMP{" in both


def test_promtool_only_objects_to_dcgm_exporters_own_names() -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=render(("gpulse", "dcgm")), capture_output=True, text=True, timeout=30
    )
    problems = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    counters = {f.name for f in DCGM_FAMILIES if f.kind == "counter"}
    dcgm_names = {f.name for f in DCGM_FAMILIES} | {"DCGM_FI_DEV_XID_ERRORS"}
    assert problems, "dcgm-exporter's names break the lint rules; promtool is expected to say so"
    for line in problems:
        name = line.split()[0]
        # Counters without _total and the camelCase labels UUID, modelName, Hostname are dcgm-exporter's own.
        counter_suffix = name in counters and 'should have "_total" suffix' in line
        camel_labels = name in dcgm_names and "snake_case" in line
        assert counter_suffix or camel_labels, line
