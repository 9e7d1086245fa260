"""A simulated job's energy against the integral of the simulator's own power, and its idle time
against the idle stretches the simulator scripted (MIXED: 25 minutes at work, 5 minutes at rest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.ledger.service import LedgerService
from tests.unit.ledger.harness import SimHost, ledger_for


def job(ledger: LedgerService, job_id: str) -> tuple[float, float, float, int, int]:
    ledger.flush()
    rows = ledger.db.jobs_between(0, 2**62)
    found = [j for j in rows if j.job_id == job_id]
    assert len(found) == 1, rows
    j = found[0]
    return j.energy_j, j.idle_s, j.gap_s, j.gaps, j.resets


def scripted_idle(host: SimHost, job_id: str, idle_after: float = 120.0) -> float:
    return sum(run for run in host.low_runs[job_id] if run > idle_after)


def test_energy_matches_the_simulators_power_and_idle_matches_the_script(tmp_path: Path) -> None:
    host = SimHost("sim-a")
    ledger = ledger_for(host, tmp_path / "ledger.sqlite")
    host.attribute(0, "101")
    host.run(2 * 3600, ledger)
    energy, idle, gap_s, gaps, resets = job(ledger, "101")
    assert energy == pytest.approx(host.true_j["101"], rel=0.01)
    assert scripted_idle(host, "101") >= 3 * 300 - 2  # the scenario does rest, so the check has teeth
    assert idle == pytest.approx(scripted_idle(host, "101"), abs=2.0)
    assert (gap_s, gaps, resets) == (0.0, 0, 0)


def test_energy_is_whole_across_a_gap_which_is_marked(tmp_path: Path) -> None:
    host = SimHost("sim-b")
    ledger = ledger_for(host, tmp_path / "ledger.sqlite")
    host.attribute(0, "102")
    host.run(1200, ledger)
    host.run(600, ledger, deliver=False)  # ten minutes of frames never arrive; the GPU works on
    host.run(1200, ledger)
    energy, _, gap_s, gaps, _ = job(ledger, "102")
    assert energy == pytest.approx(host.true_j["102"], rel=0.01)
    assert gaps == 1
    assert gap_s == pytest.approx(601.0)


def test_energy_is_whole_across_a_reboot_inside_the_job(tmp_path: Path) -> None:
    host = SimHost("sim-c")
    ledger = ledger_for(host, tmp_path / "ledger.sqlite")
    host.attribute(0, "103")
    host.run(1500, ledger)
    host.reboot(down_seconds=240)  # powered off: the counter restarts from zero after
    host.run(1500, ledger)
    energy, _, _, gaps, resets = job(ledger, "103")
    assert energy == pytest.approx(host.true_j["103"], rel=0.01)
    assert resets == 1
    assert gaps == 1


def test_without_an_energy_counter_power_is_integrated_and_said_to_be(tmp_path: Path) -> None:
    host = SimHost("sim-d")
    ledger = ledger_for(host, tmp_path / "ledger.sqlite")
    host.attribute(0, "104")
    host.run(1800, ledger, counter=False)
    ledger.flush()
    (record,) = ledger.db.jobs_between(0, 2**62)
    assert record.energy_j == pytest.approx(host.true_j["104"], rel=0.01)
    assert record.estimated_j == pytest.approx(record.energy_j)


def test_the_ledger_survives_a_collector_restart_inside_a_job(tmp_path: Path) -> None:
    host = SimHost("sim-e")
    path = tmp_path / "ledger.sqlite"
    first = ledger_for(host, path)
    host.attribute(0, "105")
    host.run(900, first)
    first.flush()
    first.db.close()
    host.run(120, None)  # the collector is down; the host keeps working, the store keeps its last values
    second = ledger_for(host, path)
    host.run(900, second)
    energy, _, gap_s, gaps, _ = job(second, "105")
    assert energy == pytest.approx(host.true_j["105"], rel=0.01)
    assert gaps == 1 and gap_s == pytest.approx(121.0)
