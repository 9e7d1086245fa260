"""The load benchmark never hangs: a server that stops, or cannot keep up, gives a step reported
not sustained, with what it reached, within the step's deadline (real processes, real mTLS)."""

from __future__ import annotations

import argparse
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import Deadlines, Proc, format_row, issue_certs, run_step, sustained

HOSTS = 3
DEADLINES = Deadlines(start_s=30.0, connect_s=30.0, answer_s=3.0)


def step_args() -> argparse.Namespace:
    return argparse.Namespace(clients=1, interval=1.0, warmup=1.0, seconds=3.0, scrape_every=15.0)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loadgen-pki")
    issue_certs(path, HOSTS)
    return path


def timed_step(
    pki_dir: Path,
    before_window: Callable[[Proc], None] | None,
    before_connect: Callable[[Proc], None] | None = None,
    deadlines: Deadlines = DEADLINES,
) -> tuple[dict[str, Any], float]:
    args = step_args()
    t0 = time.monotonic()
    row = run_step("collector", HOSTS, args, pki_dir, deadlines, before_window, before_connect=before_connect)
    return row, time.monotonic() - t0


def test_streams_that_cannot_connect_in_time_are_reported_not_sustained(pki_dir: Path) -> None:
    # A server stopped once it listens: the handshakes wait on it, as in a storm it cannot serve.
    deadlines = Deadlines(start_s=30.0, connect_s=4.0, answer_s=3.0)
    row, took = timed_step(pki_dir, None, lambda server: os.kill(server.process.pid, signal.SIGSTOP), deadlines)
    assert took < deadlines.step_s(1.0, 3.0)
    assert row["connected"] == 0 and math.isnan(row["connect_s"]) and not sustained(row)
    assert any(note.startswith(f"0 of {HOSTS} streams connected in") for note in row["notes"])
    assert row["offered_per_s"] == 0.0


def test_a_stopped_server_is_reported_not_sustained_within_the_deadline(pki_dir: Path) -> None:
    stopped: list[int] = []

    def stop(server: Proc) -> None:
        os.kill(server.process.pid, signal.SIGSTOP)
        stopped.append(server.process.pid)

    row, took = timed_step(pki_dir, stop)
    assert stopped, "the server was never stopped"
    assert took < DEADLINES.step_s(1.0, 3.0)
    assert row["connected"] == HOSTS and not sustained(row)
    assert row["applied_from"] == "acks" and row["applied_per_s"] == 0.0  # what it reached: nothing applied
    assert float(row["offered_per_s"]) > 0
    assert math.isnan(float(row["p99_ms"]))
    assert any("server at reset" in note for note in row["notes"])
    assert "NOT sustained" in format_row("collector", row)


@pytest.fixture
def throttle() -> Iterator[list[int]]:
    """A server that cannot keep up: stopped 1.5 s of every 1.8 s, running the rest."""
    pids: list[int] = []
    done = threading.Event()

    def cycle() -> None:
        while not done.is_set():
            if pids:
                os.kill(pids[0], signal.SIGSTOP)
                done.wait(1.5)
                os.kill(pids[0], signal.SIGCONT)
            done.wait(0.3)

    worker = threading.Thread(target=cycle, daemon=True)
    worker.start()
    yield pids
    done.set()
    worker.join()


def test_a_server_that_cannot_keep_up_is_reported_with_what_it_reached(pki_dir: Path, throttle: list[int]) -> None:
    row, took = timed_step(pki_dir, lambda server: throttle.append(server.process.pid))
    assert took < DEADLINES.step_s(1.0, 3.0)
    assert row["connected"] == HOSTS and not sustained(row)
    assert float(row["offered_per_s"]) > 0
    # Its frames wait out the stops: p99 over the second sustained asks, or the server answered late.
    if row["applied_from"] == "server":
        assert float(row["p99_ms"]) > 1000.0
    else:
        assert row["notes"]
