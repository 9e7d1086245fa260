"""DCGM-style health checks over successive rows: each check, its level, and when it clears."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from agent.health import GpuHealth, HealthChecker, HealthThresholds, HealthTracker
from agent.records import GpuInfo
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG

IDS = CATALOG.gpu_ids
INFO = GpuInfo(index=0, uuid="GPU-x", name="H100", pcie_max_generation=5, pcie_max_width=16, nvlink_count=18)


def row(**values: float) -> np.ndarray:
    base = {
        "utilization": 0.95,
        "pstate": 0,
        "pcie_link_generation": 5,
        "pcie_link_width": 16,
        "nvlink_links_down": 0,
    }
    base.update(values)
    r = np.full(len(IDS), np.nan)
    for name, v in base.items():
        r[IDS.index(CATALOG.gpu(name).id)] = v
    return r


def checks(h: GpuHealth) -> dict[str, int]:
    return {r.check: r.status for r in h.reasons}


def test_a_healthy_gpu_is_ok_with_no_reasons() -> None:
    h = HealthChecker(IDS).evaluate(INFO, 0.0, row(ecc_uncorrected_volatile=0, pcie_replay=3))
    assert h.status == pb.HEALTH_OK and h.reasons == ()


@pytest.mark.parametrize(
    ("values", "check", "status"),
    [
        ({"ecc_uncorrected_volatile": 1}, "memory_dbe", pb.HEALTH_FAIL),
        ({"remapped_rows_failure": 1}, "memory_remap_failure", pb.HEALTH_FAIL),
        ({"remapped_rows_pending": 1}, "memory_remap_pending", pb.HEALTH_WARN),
        ({"retired_pages_pending": 1}, "memory_retire_pending", pb.HEALTH_WARN),
        ({"retired_pages_sbe": 50, "retired_pages_dbe": 10}, "memory_retired_pages", pb.HEALTH_FAIL),
        ({"remapped_rows_uncorrectable": 8}, "memory_remapped_rows", pb.HEALTH_WARN),
        ({"nvlink_links_down": 2}, "nvlink_down", pb.HEALTH_FAIL),
        ({"pcie_link_width": 8}, "pcie_link_width", pb.HEALTH_WARN),
        ({"pcie_link_generation": 3}, "pcie_link_generation", pb.HEALTH_WARN),
    ],
)
def test_state_checks(values: dict[str, float], check: str, status: int) -> None:
    h = HealthChecker(IDS).evaluate(INFO, 0.0, row(**values))
    assert checks(h) == {check: status} and h.status == status


def test_a_lower_pcie_generation_while_idle_is_power_saving_not_a_fault() -> None:
    h = HealthChecker(IDS).evaluate(INFO, 0.0, row(pcie_link_generation=1, utilization=0.0, pstate=8))
    assert h.status == pb.HEALTH_OK


@pytest.mark.parametrize(
    ("counter", "step", "check"),
    [
        ("pcie_replay", 1.0, "pcie_replay_rate"),
        ("nvlink_crc_errors", 20.0, "nvlink_crc_rate"),
        ("nvlink_replay_errors", 1.0, "nvlink_replay"),
        ("nvlink_recovery_errors", 1.0, "nvlink_recovery"),
        ("thermal_violation", 0.5, "thermal_violation"),
        ("power_violation", 0.5, "power_violation"),
    ],
)
def test_counter_growth_warns_within_the_window_and_clears_after(counter: str, step: float, check: str) -> None:
    c = HealthChecker(IDS, HealthThresholds(window_s=60))
    value = 1000.0
    statuses = []
    for t in range(10):  # growing: 10 ticks of a second
        value += step
        statuses.append(checks(c.evaluate(INFO, float(t), row(**{counter: value}))).get(check))
    assert statuses[-1] == pb.HEALTH_WARN
    # Stops growing: the warning holds while the growth is inside the window, then clears.
    for t in range(10, 75):
        h = c.evaluate(INFO, float(t), row(**{counter: value}))
    assert check not in checks(h) and h.status == pb.HEALTH_OK


def test_pcie_replays_below_the_rate_do_not_warn() -> None:
    c = HealthChecker(IDS)
    for t in range(60):
        h = c.evaluate(INFO, float(t), row(pcie_replay=1000 + t // 10))  # 6 a minute, under 8
    assert h.status == pb.HEALTH_OK


def test_a_counter_reset_after_a_driver_reload_is_not_negative_growth_or_a_burst() -> None:
    c = HealthChecker(IDS)
    c.evaluate(INFO, 0.0, row(pcie_replay=5000))
    h = c.evaluate(INFO, 1.0, row(pcie_replay=0))
    h = c.evaluate(INFO, 2.0, row(pcie_replay=1))
    assert h.status == pb.HEALTH_OK


def test_nan_means_not_read_and_says_nothing() -> None:
    h = HealthChecker(IDS).evaluate(INFO, 0.0, np.full(len(IDS), math.nan))
    assert h.status == pb.HEALTH_OK


def test_critical_xids_hold_for_a_while_and_application_xids_are_not_health() -> None:
    c = HealthChecker(IDS, HealthThresholds(xid_hold_s=300))
    c.observe_xid(0, 13, 10.0)  # graphics engine exception: the application's fault
    c.observe_xid(0, 79, 10.0)
    h = c.evaluate(INFO, 20.0, row())
    assert checks(h) == {"xid_79": pb.HEALTH_FAIL}
    c.observe_xid(0, 94, 20.0)
    assert checks(c.evaluate(INFO, 200.0, row())) == {"xid_79": pb.HEALTH_FAIL, "xid_94": pb.HEALTH_WARN}
    assert c.evaluate(INFO, 400.0, row()).status == pb.HEALTH_OK


def test_a_lost_gpu_fails() -> None:
    c = HealthChecker(IDS)
    c.mark_lost(0, "GPU has fallen off the bus")
    h = c.evaluate(INFO, 0.0, row())
    assert h.status == pb.HEALTH_FAIL and h.reasons[0].check == "gpu_lost"


def test_tracker_sends_the_first_status_and_then_only_changes() -> None:
    c, tracker = HealthChecker(IDS), HealthTracker()
    first = tracker.update(0, c.evaluate(INFO, 0.0, row()), 1)
    assert first is not None and first.health.status == pb.HEALTH_OK and first.health.previous == pb.HEALTH_UNKNOWN
    assert tracker.update(0, c.evaluate(INFO, 1.0, row()), 2) is None
    change = tracker.update(0, c.evaluate(INFO, 2.0, row(remapped_rows_pending=1)), 3)
    assert change is not None and change.health.status == pb.HEALTH_WARN and change.health.previous == pb.HEALTH_OK
    assert [r.check for r in change.health.reasons] == ["memory_remap_pending"]
    # A second reason at the same level is a change too: the on-call sees what is wrong now.
    change = tracker.update(0, c.evaluate(INFO, 3.0, row(remapped_rows_pending=1, pcie_link_width=8)), 4)
    assert change is not None and change.health.status == pb.HEALTH_WARN
    back = tracker.update(0, c.evaluate(INFO, 4.0, row()), 5)
    assert back is not None and back.health.status == pb.HEALTH_OK and back.health.previous == pb.HEALTH_WARN


def test_a_lost_gpu_that_answers_again_is_judged_by_its_checks() -> None:
    c = HealthChecker(IDS)
    c.mark_lost(0, "GPU has fallen off the bus")
    c.mark_back(0)
    assert c.evaluate(INFO, 0.0, row()).status == pb.HEALTH_OK


def test_counter_history_is_bounded_by_the_window_and_small() -> None:
    # The agent keeps every counter reading of the window for every GPU; held as Python tuples that
    # is ~110 bytes a reading, which over GPUs x counters x window/interval shows in its memory.
    window_s, counters = 60, ("pcie_replay", "nvlink_crc_errors", "nvlink_replay_errors", "nvlink_recovery_errors")
    c = HealthChecker(IDS, HealthThresholds(window_s=window_s))
    rows = [row(**{name: 1000.0 + t for name in counters}) for t in range(10 * window_s)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for t in range(2 * window_s):
            c.evaluate(INFO, float(t), rows[t])
        full = tracemalloc.get_traced_memory()[0]
        for t in range(2 * window_s, 10 * window_s):
            c.evaluate(INFO, float(t), rows[t])
        later = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    held = (window_s + 1) * len(counters)
    assert full - before < 24 * held + 8192
    assert later - full < 4096  # a window's worth, not the whole run
