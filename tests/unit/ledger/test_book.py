"""The ledger's books: unallocated hours, shared GPUs, job ends, the rollup cap, reports and the idle rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.ledger.book import OTHER, Ledger, Owner, Rollup, RowContext
from collector.ledger.exposition import LedgerCollector
from collector.ledger.meter import GpuMeter
from collector.ledger.report import Prices, summarise
from protos.fields import CATALOG
from tests.unit.ledger.harness import SimHost, ledger_for

S = 10**9


def test_a_gpu_with_no_job_counts_as_unallocated(tmp_path: Path) -> None:
    host = SimHost("sim-u", gpus=2)
    ledger = ledger_for(host, tmp_path / "l.sqlite")
    host.attribute(0, "201")
    host.run(600, ledger)
    counters = dict(
        zip(("energy", "alloc", "busy", "idle", "unalloc", "gap"), ledger.ledger.hosts["sim-u"], strict=True)
    )
    assert counters["alloc"] == pytest.approx(599.0)
    assert counters["unalloc"] == pytest.approx(599.0)
    ledger.flush()
    report = summarise(ledger.db.usage_rows(0, 2**62), ledger.db.jobs_between(0, 2**62), "host", Prices(0.1, 2.0))
    assert report["totals"]["unallocated_gpu_hours"] == pytest.approx(599 / 3600, abs=1e-5)
    assert report["totals"]["allocated_gpu_hours"] == pytest.approx(599 / 3600, abs=1e-5)
    assert report["totals"]["cost"] == pytest.approx(
        report["totals"]["energy_kwh"] * 0.1 + report["totals"]["allocated_gpu_hours"] * 2.0, abs=1e-3
    )


def test_a_job_ends_after_the_grace_and_is_written_with_its_end(tmp_path: Path) -> None:
    host = SimHost("sim-v", gpus=1)
    ledger = ledger_for(host, tmp_path / "l.sqlite", job_end_grace=60.0)
    host.attribute(0, "301")
    host.run(300, ledger)
    host.attribute(0, None)
    host.run(30, ledger)
    host.attribute(0, "301")  # back within the grace: the same job
    host.run(100, ledger)
    host.attribute(0, None)
    host.run(120, ledger)
    ledger.flush()
    (job,) = ledger.db.jobs_between(0, 2**62)
    assert job.end_ns is not None and job.end_ns - job.start_ns == 429 * S
    assert job.allocated_s == pytest.approx(399.0)  # the 30 s in between no job held the GPU
    assert "301" not in {k[2] for k in ledger.ledger.jobs}  # ended and written, so no longer in memory


def test_a_gpu_shared_by_two_jobs_splits_evenly() -> None:
    ledger = Ledger()
    meter = GpuMeter(idle_threshold=0.05, idle_after=300, max_gap=30)
    rows = np.array([0], dtype=np.int64)
    owners = (Owner("slurm", "1", user="a"), Owner("slurm", "2", user="b"))
    ctx = [RowContext("h", "H100", 0, owners)]
    for t, e in ((1, 100.0), (2, 400.0)):
        step = meter.step(
            rows, np.array([t * S]), np.array([e]), np.array([300.0]), np.array([np.nan]), np.array([1.0])
        )
        ledger.add(step, ctx, [t * S])
    assert [j.energy_j for j in ledger.jobs.values()] == [150.0, 150.0]
    assert [j.allocated_s for j in ledger.jobs.values()] == [0.5, 0.5]


def test_idle_needs_a_stretch_longer_than_idle_after_and_then_counts_all_of_it() -> None:
    meter = GpuMeter(idle_threshold=0.05, idle_after=10, max_gap=30)
    rows = np.array([0], dtype=np.int64)
    idle = []
    for t, util in enumerate([0.9] + [0.0] * 8 + [0.9] + [0.0] * 12, start=1):
        step = meter.step(
            rows, np.array([t * S]), np.array([t * 100.0]), np.array([100.0]), np.array([np.nan]), np.array([util])
        )
        idle.append(float(step.idle_s[0]))
    assert sum(idle[:10]) == 0.0  # eight low seconds: not idle
    assert sum(idle) == 12.0  # twelve: all twelve are
    assert idle[-2:] == [11.0, 1.0]  # counted when the stretch passes idle_after, then second by second


def test_sm_activity_is_preferred_to_utilisation_and_said_to_be() -> None:
    meter = GpuMeter(idle_threshold=0.05, idle_after=10, max_gap=30)
    rows = np.array([0, 1], dtype=np.int64)
    meter.step(
        rows,
        np.array([S, S]),
        np.array([0.0, 0.0]),
        np.array([1.0, 1.0]),
        np.array([0.3, np.nan]),
        np.array([0.9, 0.9]),
    )
    step = meter.step(
        rows,
        np.array([2 * S, 2 * S]),
        np.array([1.0, 1.0]),
        np.array([1.0, 1.0]),
        np.array([0.3, np.nan]),
        np.array([0.9, 0.9]),
    )
    assert step.busy_s.tolist() == pytest.approx([0.3, 0.9])
    assert step.sm.tolist() == [True, False]


def test_the_user_rollup_is_capped_and_stays_monotonic() -> None:
    rollup = Rollup(cap=2)
    for name in ("a", "b", "c", "d", "a"):
        rollup.add(name, (1.0, 1.0, 0.0, 0.0))
    assert rollup.values == {"a": [2.0, 2.0, 0.0, 0.0], "b": [1.0, 1.0, 0.0, 0.0], OTHER: [2.0, 2.0, 0.0, 0.0]}


def test_metrics_name_no_job_but_in_the_bounded_top_gauge(tmp_path: Path) -> None:
    host = SimHost("sim-w", gpus=2)
    ledger = ledger_for(host, tmp_path / "l.sqlite", top_jobs=1)
    host.attribute(0, "401")
    host.attribute(1, "402")
    host.run(3600, ledger)
    registry = CollectorRegistry()
    registry.register(LedgerCollector(ledger))
    text = generate_latest(registry).decode()
    lines = [line for line in text.splitlines() if "job_id=" in line and not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("gpulse_ledger_top_idle_job_gpu_seconds{")
    assert 'gpulse_ledger_host_energy_joules_total{host="sim-w"}' in text
    assert 'gpulse_ledger_gpus{host="sim-w",state=' in text


def test_a_counter_jumping_faster_than_any_gpu_is_refused_and_counted(tmp_path: Path) -> None:
    host = SimHost("sim-x", gpus=1)
    ledger = ledger_for(host, tmp_path / "l.sqlite")
    host.attribute(0, "501")
    host.run(60, ledger)
    row = host.record.gpus[0].row
    column = host.store.gpu_columns[CATALOG.gpu("energy_consumption").id]
    host.sim._state[0].energy_j += 1e12  # a corrupt reading: a terajoule in a second
    host.run(1, ledger)
    assert host.store.gpu_values[row, column] > 1e12
    host.sim._state[0].energy_j -= 1e12
    host.run(60, ledger)
    ledger.flush()
    (job,) = ledger.db.jobs_between(0, 2**62)
    assert job.energy_j == pytest.approx(host.true_j["501"], rel=0.01)
    # The jump up, and the fall back to the true reading (which would read as a counter reset
    # larger than the interval allows): both intervals take power instead.
    assert ledger.energy_refused == 2
    registry = CollectorRegistry()
    registry.register(LedgerCollector(ledger))
    assert "gpulse_ledger_energy_readings_refused_total 2.0" in generate_latest(registry).decode()
