"""bench.scaling's table, ratios and plot, from rows as loadgen reports them (no processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scaling import Point, best_sustained, plot, ratios, table


def row(hosts: int, applied: float, p99: float, cpu_per_1k: float) -> dict[str, Any]:
    return {
        "hosts": hosts, "connected": hosts, "connect_s": 1.0, "offered_per_s": float(hosts),
        "applied_per_s": applied, "applied_from": "server", "p50_ms": 1.0, "p99_ms": p99,
        "server_cpu_share": 0.5, "cpu_ms_per_1k": cpu_per_1k, "errors": 0, "client_late_ms": 0.0, "notes": [],
    }  # fmt: skip


POINTS = [
    Point("sink", 1, row(1000, 1000.0, 50.0, 200.0)),
    Point("sink", 1, row(2000, 1500.0, 3000.0, 210.0)),  # not sustained: 1,500 of 2,000, p99 3 s
    Point("sink", 2, row(1000, 1000.0, 20.0, 220.0)),
    Point("sink", 2, row(2000, 2000.0, 60.0, 230.0)),
    Point("full", 1, row(1000, 1000.0, 300.0, 400.0)),
    Point("full", 2, None, "full mode runs one process"),
]


def test_the_largest_sustained_rate_ignores_steps_not_sustained() -> None:
    assert best_sustained(POINTS, "sink", 1) == 1000.0
    assert best_sustained(POINTS, "sink", 2) == 2000.0
    assert best_sustained(POINTS, "full", 2) == 0.0


def test_ratios_give_scaling_over_workers_and_the_share_of_the_sink() -> None:
    lines = ratios(POINTS)
    assert "sink: frames sustained at 2 workers over 1: 2.00x" in lines
    assert "full x1 at 1,000 hosts: sink CPU per frame over ours 0.50" in lines
    assert not any(line.startswith("full: frames") for line in lines)  # nothing at 2 workers to compare


def test_the_table_has_a_line_per_measured_step() -> None:
    text = table(POINTS)
    body = [line for line in text.splitlines() if line.startswith("| sink") or line.startswith("| full")]
    assert len(body) == 5
    assert "| sink | 1 | 2,000 | 1.0 s | 2,000 | 1,500 | 1.0 ms | 3000 ms | 210 ms | no |" in body


def test_the_plot_is_written_as_a_png(tmp_path: Path) -> None:
    path = tmp_path / "scaling.png"
    plot(POINTS, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
