"""bench.scaling end to end on a tiny fleet: real sink processes (one, then two sharing the port)
and real mTLS clients, in one run, give the table and the plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.loadgen import Deadlines, issue_certs, run_step, sustained
from bench.scaling import main


def test_a_tiny_run_writes_the_curve_and_the_plot(tmp_path: Path) -> None:
    main(["--hosts", "2", "--workers", "1,2", "--modes", "sink,collector", "--seconds", "1", "--warmup", "0.5",
          "--clients", "1", "--answer-deadline", "5", "--out", str(tmp_path)])  # fmt: skip
    text = (tmp_path / "scaling.md").read_text()
    assert "| sink | 1 | 2 |" in text and "| sink | 2 | 2 |" in text and "| collector | 1 | 2 |" in text
    assert "| collector | 2 |" not in text  # the collector is one process: not measured at 2
    assert text.count("| yes |") == 3  # two streams at 1 Hz are kept up with by every server
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_sink_workers_share_the_port_and_the_streams(tmp_path: Path) -> None:
    # 24 streams hashed over 2 listeners: all on one would be a 1 in 8 million chance.
    hosts = 24
    issue_certs(tmp_path, hosts)
    args = argparse.Namespace(clients=1, interval=1.0, warmup=1.0, seconds=2.0, scrape_every=15.0)
    row = run_step("sink", hosts, args, tmp_path, Deadlines(answer_s=5.0), workers=2)
    assert sustained(row), row["notes"]
    first, second = row["applied_by_server"]
    assert first > 0 and second > 0
    assert abs((first + second) / args.seconds - row["applied_per_s"]) < 0.1 * row["applied_per_s"]  # all counted
