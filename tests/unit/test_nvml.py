"""The NVML backend against the fake pynvml: inventory, units, batching, tiers and every failure path."""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.exposition import AgentMetrics
from agent.sources.gpu import BackendUnavailable
from agent.sources.nvml import NvmlBackend
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.kit import gpu_rows, metric_value


def col(name: str) -> int:
    return CATALOG.gpu_ids.index(CATALOG.gpu(name).id)


def backend(fake: FakeNvml, **kwargs: object) -> NvmlBackend:
    kwargs.setdefault("kmsg_path", None)
    kwargs.setdefault("xid_wait_ms", 20)
    kwargs.setdefault("budget_s", 5.0)  # generous on a loaded test machine; budget tests set their own
    b = NvmlBackend(fake, **kwargs)  # type: ignore[arg-type]
    b.open()
    return b


@pytest.fixture
def fake() -> FakeNvml:
    return FakeNvml(
        [FakeGpu(uuid="GPU-a", pci_bus_id="00000000:18:00.0"), FakeGpu(uuid="GPU-b", pci_bus_id="00000000:3B:00.0")]
    )


def test_inventory_reads_identity_limits_modes_and_links(fake: FakeNvml) -> None:
    fake.gpus[1].mig = 1
    b = NvmlBackend(fake, kmsg_path=None, budget_s=5.0)
    inv = b.open()
    assert [g.uuid for g in inv] == ["GPU-a", "GPU-b"]
    g = inv[0]
    assert (g.name, g.serial, g.pci_bus_id, g.vbios_version) == (
        "NVIDIA H100 80GB HBM3",
        "1654922001234",
        "00000000:18:00.0",
        "96.00.99.00.01",
    )
    assert (g.driver_version, g.cuda_version) == ("550.90.07", "12.4")
    assert g.memory_total_bytes == 80 * 2**30
    assert (g.power_limit_min_watts, g.power_limit_max_watts, g.power_limit_default_watts) == (200.0, 700.0, 700.0)
    assert g.persistence_mode and not g.mig_mode and inv[1].mig_mode
    assert (g.pcie_max_generation, g.pcie_max_width, g.nvlink_count) == (5, 16, 18)
    b.close()
    b.close()  # safe twice


def test_values_arrive_in_base_units_with_clock_reasons_as_booleans(fake: FakeNvml) -> None:
    fake.gpus[0].clocks_event_reasons = (
        pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
    )
    fake.gpus[0].fields[pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL] = 2_500_000_000
    b = backend(fake)
    row = gpu_rows(b.sample(time.time_ns()))[0]
    assert row[col("utilization")] == pytest.approx(0.97)
    assert row[col("power_usage")] == pytest.approx(612.0)
    assert row[col("power_limit")] == pytest.approx(700.0)
    assert row[col("energy_consumption")] == pytest.approx(123_456.789)
    assert row[col("sm_clock")] == 1980e6 and row[col("sm_clock_max")] == 1980e6
    assert row[col("memory_temperature")] == 52
    assert row[col("thermal_violation")] == pytest.approx(2.5)
    assert row[col("clock_event_sw_power_cap")] == 1 and row[col("clock_event_hw_power_brake")] == 1
    assert row[col("clock_event_hw_thermal_slowdown")] == 0
    assert row[col("clock_event_reasons")] == 0x84
    b.close()


def test_one_field_values_call_per_gpu_per_tick(fake: FakeNvml) -> None:
    b = backend(fake, slow_every=10)
    gpu_rows(b.sample(time.time_ns()))  # first tick also reads the slow tier
    fake.reset_counts()
    gpu_rows(b.sample(time.time_ns()))
    assert fake.calls["nvmlDeviceGetFieldValues"] == 2  # one per GPU for ~20 fields
    # The rest are getters with no field id; the fan is NOT_SUPPORTED on SXM and never asked again.
    assert fake.calls_per_gpu[0] == 10
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 0
    b.close()


def test_not_supported_is_absent_recorded_once_and_never_zero(fake: FakeNvml) -> None:
    fake.gpus[0].unsupported_fields.add(pynvml.NVML_FI_DEV_MEMORY_TEMP)
    b = NvmlBackend(fake, kmsg_path=None, budget_s=5.0)
    inv = b.open()
    unsupported = {CATALOG[f].name for f in inv[0].unsupported_field_ids}
    assert unsupported == {"fan_speed", "memory_temperature"}
    assert "memory_temperature" not in {CATALOG[f].name for f in inv[1].unsupported_field_ids}
    rows = gpu_rows(b.sample(time.time_ns()))
    assert math.isnan(rows[0, col("memory_temperature")]) and math.isnan(rows[0, col("fan_speed")])
    assert rows[1, col("memory_temperature")] == 52
    b.close()


def test_each_field_value_has_its_own_return_code(fake: FakeNvml) -> None:
    b = backend(fake)
    # Unsupported only after open (e.g. a firmware change): that value is NaN, its neighbours are read.
    fake.gpus[0].unsupported_fields.add(pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL)
    row = gpu_rows(b.sample(time.time_ns()))[0]
    assert math.isnan(row[col("ecc_uncorrected_volatile")])
    assert row[col("ecc_corrected_aggregate")] == 4
    b.close()


def test_power_falls_back_to_the_getter_where_the_field_id_is_missing(fake: FakeNvml) -> None:
    for g in fake.gpus:
        g.unsupported_fields.add(pynvml.NVML_FI_DEV_POWER_INSTANT)
        g.power_mw = 321_000
    b = backend(fake)
    assert gpu_rows(b.sample(time.time_ns()))[0, col("power_usage")] == pytest.approx(321.0)
    assert fake.calls["nvmlDeviceGetPowerUsage"] >= 2
    b.close()


def test_a_hung_gpu_costs_only_its_own_row_and_is_not_piled_up(fake: FakeNvml) -> None:
    b = backend(fake, budget_s=0.2)
    hang = threading.Event()
    hang.set()
    fake.gpus[0].hang = hang
    started = time.monotonic()
    rows = gpu_rows(b.sample(time.time_ns()))
    assert time.monotonic() - started < 2.0  # bounded by the budget, not by the hung call
    assert np.isnan(rows[0]).all()
    assert rows[1, col("utilization")] == pytest.approx(0.97)
    assert b.stats.budget_exceeded == 1
    gpu_rows(b.sample(time.time_ns()))
    assert b.stats.skipped_stuck == 1  # still stuck: skipped, no second thread queued behind it
    hang.clear()
    for _ in range(50):
        if not np.isnan(gpu_rows(b.sample(time.time_ns()))[0, col("utilization")]):
            break
        time.sleep(0.02)
    else:
        pytest.fail("GPU 0 never came back after its call returned")
    b.close()


def test_a_slow_call_past_the_budget_stops_the_rest_of_that_gpus_calls(fake: FakeNvml) -> None:
    fake.gpus[1].delays["nvmlDeviceGetFieldValues"] = 0.3
    b = backend(fake, budget_s=0.1)
    rows = gpu_rows(b.sample(time.time_ns()))
    assert np.isnan(rows[1]).all() and not np.isnan(rows[0, col("utilization")])
    time.sleep(0.35)
    assert fake.calls["nvmlDeviceGetUtilizationRates"] <= 2 + 1  # GPU 1 made no getter call after its budget
    b.close()


def test_gpu_lost_is_an_immediate_event_and_the_others_keep_going(fake: FakeNvml) -> None:
    b = backend(fake)
    gpu_rows(b.sample(time.time_ns()))
    fake.gpus[0].lost = True
    rows = gpu_rows(b.sample(time.time_ns()))
    events = b.drain_events()
    lost = [e.gpu_lost for e in events if e.WhichOneof("kind") == "gpu_lost"]
    assert len(lost) == 1 and lost[0].gpu_index == 0 and "lost" in lost[0].reason.lower()
    assert np.isnan(rows[0]).all() and rows[1, col("utilization")] == pytest.approx(0.97)
    before = fake.calls_per_gpu[0]
    rows = gpu_rows(b.sample(time.time_ns()))
    assert fake.calls_per_gpu[0] == before  # a lost GPU is not asked again
    assert not b.drain_events()  # and reported once
    assert rows[1, col("utilization")] == pytest.approx(0.97)
    b.close()


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so.1 was not found"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver is not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no permission"),
    ],
)
def test_failed_init_is_a_clear_startup_error(fake: FakeNvml, code: int, words: str) -> None:
    fake.init_error = code
    with pytest.raises(BackendUnavailable, match=words):
        NvmlBackend(fake, kmsg_path=None).open()


def test_no_gpus_is_a_clear_startup_error() -> None:
    with pytest.raises(BackendUnavailable, match="no GPUs"):
        NvmlBackend(FakeNvml([]), kmsg_path=None).open()


def test_missing_bindings_are_a_clear_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(BackendUnavailable, match="nvidia-ml-py"):
        NvmlBackend(kmsg_path=None).open()


def test_init_retries_until_the_driver_is_ready_when_configured(fake: FakeNvml) -> None:
    fake.init_error, fake.init_failures = pynvml.NVML_ERROR_DRIVER_NOT_LOADED, 3
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    b = NvmlBackend(fake, kmsg_path=None, init_wait_s=60, init_retry_s=5, sleep=sleep, monotonic=lambda: now[0])
    assert len(b.open()) == 2
    assert sleeps == [5, 5, 5]
    fake2 = FakeNvml()
    fake2.init_error = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    now[0] = 0.0
    b2 = NvmlBackend(fake2, kmsg_path=None, init_wait_s=12, init_retry_s=5, sleep=sleep, monotonic=lambda: now[0])
    with pytest.raises(BackendUnavailable, match="driver is not loaded"):
        b2.open()
    b.close()


def test_driver_reload_reinitialises_nvml_and_reports_inventory_changes(fake: FakeNvml) -> None:
    b = backend(fake, init_retry_s=0.0)
    gpu_rows(b.sample(time.time_ns()))
    fake.driver_unloaded = True  # every call now answers UNINITIALIZED, as after a driver reload
    fake.gpus[1].vbios = "96.00.99.00.02"
    rows = gpu_rows(b.sample(time.time_ns()))
    assert np.isnan(rows).all()
    rows = gpu_rows(b.sample(time.time_ns()))
    assert b.stats.reinits == 1 and fake.init_count == 2
    assert rows[0, col("utilization")] == pytest.approx(0.97)
    changes = [e.inventory for e in b.drain_events() if e.WhichOneof("kind") == "inventory"]
    assert [c.gpu.uuid for c in changes] == ["GPU-b"] and changes[0].gpu.vbios_version == "96.00.99.00.02"
    b.close()


def test_slow_tier_reads_processes_and_per_link_nvlink_every_n_ticks(fake: FakeNvml) -> None:
    fake.gpus[0].processes = [(4242, 40 * 2**30)]
    fake.gpus[0].link_fields[(pynvml.NVML_FI_DEV_NVLINK_GET_STATE, 3)] = 0
    fake.gpus[0].link_fields[(pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC, 5)] = 17
    b = backend(fake, slow_every=3)
    rows = gpu_rows(b.sample(time.time_ns()))
    assert rows[0, col("nvlink_links_down")] == 1 and rows[0, col("nvlink_links_up")] == 17
    assert rows[0, col("compute_processes")] == 1
    link = b.links()[0]
    assert [s.link for s in link if not s.up] == [3] and link[5].crc_errors == 17
    assert b.processes()[0][0].pid == 4242 and b.processes()[0][0].used_memory_bytes == 40 * 2**30
    fake.reset_counts()
    fake.gpus[0].processes = []
    rows = gpu_rows(b.sample(time.time_ns()))
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 0
    assert rows[0, col("compute_processes")] == 1  # the last slow reading stands in between
    gpu_rows(b.sample(time.time_ns()))
    rows = gpu_rows(b.sample(time.time_ns()))  # tick 4: slow again
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 2 and rows[0, col("compute_processes")] == 0
    b.close()


def test_nvlink_totals_come_from_per_link_counters_where_the_total_field_is_missing(fake: FakeNvml) -> None:
    for fid in (
        pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
        pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    ):
        fake.gpus[0].unsupported_fields.add(fid)
    fake.gpus[0].link_fields[(pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC, 0)] = 5
    fake.gpus[0].link_fields[(pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC, 7)] = 6
    b = backend(fake)
    assert gpu_rows(b.sample(time.time_ns()))[0, col("nvlink_crc_errors")] == 11
    b.close()


def test_every_xid_event_is_sent_and_a_storm_keeps_its_count(fake: FakeNvml) -> None:
    now = [100.0]
    b = backend(fake, xid_window_s=10, monotonic=lambda: now[0])
    assert b.xid_source == "nvml"
    fake.raise_xid(1, 79)
    fake.raise_xid(0, 48, times=500)
    deadline = time.monotonic() + 5
    while b.xids.occurrences < 501 and time.monotonic() < deadline:
        time.sleep(0.01)
    first = [e.xid for e in b.drain_events()]
    assert sorted((x.gpu_index, x.xid, x.count, x.source) for x in first) == [(0, 48, 1, "nvml"), (1, 79, 1, "nvml")]
    now[0] += 11
    storm = [e.xid for e in b.drain_events()]
    assert [(x.gpu_index, x.xid, x.count) for x in storm] == [(0, 48, 499)]
    b.close()


def test_xids_come_from_the_kernel_log_where_nvml_events_are_unsupported(fake: FakeNvml, tmp_path: Path) -> None:
    fake.events_supported = False
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,100,1000,-;NVRM: Xid (PCI:0000:18:00): 31, old line before the agent started\n")
    b = backend(fake, kmsg_path=kmsg)
    assert b.xid_source == "kmsg"
    with kmsg.open("a") as f:
        f.write("4,101,2000,-;NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.\n")
    deadline = time.monotonic() + 5
    events = []
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
        events = b.drain_events()
    assert [(e.xid.gpu_index, e.xid.xid, e.xid.source) for e in events] == [(1, 79, "kmsg")]
    assert "fallen off the bus" in events[0].xid.message
    b.close()


def test_constructs_with_no_arguments_over_the_real_bindings() -> None:
    backend = NvmlBackend()  # agent.main and gpulse.demo build it this way
    try:
        gpus = backend.open()
    except BackendUnavailable as exc:  # no driver here: a clear startup error, not a traceback
        # Where an earlier test loaded the stub libnvidia-ml.so.1 into this process, the library is
        # found and, with no stub configuration, answers as a host without the kernel module.
        assert "libnvidia-ml.so.1 was not found" in str(exc) or "kernel driver is not loaded" in str(exc)
    else:  # a machine with the NVIDIA driver
        assert gpus and all(g.uuid.startswith(("GPU-", "MIG-")) for g in gpus)
    finally:
        backend.close()
        backend.close()  # safe twice


def test_per_link_nvlink_state_is_sent_at_start_and_when_it_changes(fake: FakeNvml) -> None:
    b = backend(fake, slow_every=1)

    def nvlink_events() -> dict[int, list[tuple[int, bool, float]]]:
        return {
            e.nvlink.gpu_index: [(ln.link, ln.up, ln.crc_errors) for ln in e.nvlink.links]
            for e in b.drain_events()
            if e.WhichOneof("kind") == "nvlink"
        }

    gpu_rows(b.sample(time.time_ns()))
    first = nvlink_events()
    assert sorted(first) == [0, 1] and len(first[0]) == 18 and all(up for _, up, _ in first[0])
    gpu_rows(b.sample(time.time_ns()))
    assert nvlink_events() == {}  # nothing changed: nothing sent
    fake.gpus[1].link_fields[(pynvml.NVML_FI_DEV_NVLINK_GET_STATE, 2)] = 0
    fake.gpus[1].link_fields[(pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC, 2)] = 40
    gpu_rows(b.sample(time.time_ns()))
    changed = nvlink_events()
    assert list(changed) == [1] and changed[1][2] == (2, False, 40.0)
    b.close()


def test_an_inventory_change_under_a_running_agent_is_reported(fake: FakeNvml) -> None:
    b = backend(fake, inventory_every=3)
    for _ in range(3):
        gpu_rows(b.sample(time.time_ns()))
    fake.gpus[0].power_max_mw = 600_000
    fake.gpus[0].mig = 1
    gpu_rows(b.sample(time.time_ns()))  # tick 4: the inventory is read again
    changes = [e.inventory for e in b.drain_events() if e.WhichOneof("kind") == "inventory"]
    assert [c.gpu.index for c in changes] == [0]
    assert changes[0].gpu.mig_mode and changes[0].gpu.power_limit_max_watts == 600
    assert "power_limit_max_watts 700.0 -> 600.0" in changes[0].what and "mig_mode False -> True" in changes[0].what
    gpu_rows(b.sample(time.time_ns()))
    assert not [e for e in b.drain_events() if e.WhichOneof("kind") == "inventory"]
    b.close()


def test_after_a_reload_a_gpu_that_went_missing_stays_empty_and_a_new_one_waits_for_restart() -> None:
    fake = FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b", pci_bus_id="00000000:3B:00.0")])
    b = backend(fake, init_retry_s=0.0)
    gpu_rows(b.sample(time.time_ns()))
    fake.driver_unloaded = True
    fake.gpus = [fake.gpus[0]]  # GPU-b did not come back with the driver
    gpu_rows(b.sample(time.time_ns()))
    rows = gpu_rows(b.sample(time.time_ns()))
    assert rows.shape[0] == 2 and rows[0, col("utilization")] == pytest.approx(0.97) and np.isnan(rows[1]).all()
    fake.driver_unloaded = True
    fake.gpus = [fake.gpus[0], FakeGpu(uuid="GPU-b"), FakeGpu(uuid="GPU-c")]
    gpu_rows(b.sample(time.time_ns()))
    rows = gpu_rows(b.sample(time.time_ns()))
    assert rows.shape[0] == 2  # the Hello's GPU list is fixed for this boot
    b.close()


def test_the_backends_own_counters_reach_the_agents_metrics(fake: FakeNvml) -> None:
    b = backend(fake, budget_s=0.2)
    hang = threading.Event()
    hang.set()
    fake.gpus[1].hang = hang
    values = gpu_rows(b.sample(time.time_ns()))
    hang.clear()

    class Source:
        host_id = "node-x"
        hello = pb.Hello(host_id="node-x", gpus=[pb.GpuInventory(index=0, uuid="GPU-a", name="H100")])
        latest = (time.time_ns(), np.zeros(0), values[:1, :0])
        xid_counts: dict[tuple[int, int], int] = {}
        gpu = b

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentMetrics(Source()))
    text = generate_latest(registry).decode()
    assert metric_value(text, "gpulse_agent_nvml_read_budget_exceeded_total", host="node-x") == 1
    assert metric_value(text, "gpulse_agent_nvml_calls_total", host="node-x") > 0
    b.close()


def test_a_gpu_lost_before_a_driver_reload_that_answers_again_is_reported_back(fake: FakeNvml) -> None:
    b = backend(fake, init_retry_s=0.0)
    fake.gpus[1].lost = True
    gpu_rows(b.sample(time.time_ns()))
    assert [e.gpu_lost.gpu_index for e in b.drain_events() if e.WhichOneof("kind") == "gpu_lost"] == [1]
    fake.gpus[1].lost = False  # the GPU was reset and the driver reloaded
    fake.driver_unloaded = True
    gpu_rows(b.sample(time.time_ns()))
    rows = gpu_rows(b.sample(time.time_ns()))
    back = [e.inventory for e in b.drain_events() if e.WhichOneof("kind") == "inventory"]
    assert [(c.gpu.index, c.what) for c in back] == [(1, "answering again after driver reload")]
    assert rows[1, col("utilization")] == pytest.approx(0.97)
    b.close()
