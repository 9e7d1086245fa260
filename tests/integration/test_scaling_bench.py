"""bench.scaling end to end on a tiny fleet: real sink processes (one, then two sharing the port)
and real mTLS clients, in one run, give the table and the plot."""

from __future__ import annotations

from pathlib import Path

from bench.scaling import main


def test_a_tiny_run_writes_the_curve_and_the_plot(tmp_path: Path) -> None:
    main(["--hosts", "2", "--workers", "1,2", "--modes", "sink,collector", "--seconds", "1", "--warmup", "0.5",
          "--clients", "1", "--answer-deadline", "5", "--out", str(tmp_path)])  # fmt: skip
    text = (tmp_path / "scaling.md").read_text()
    assert "| sink | 1 | 2 |" in text and "| sink | 2 | 2 |" in text and "| collector | 1 | 2 |" in text
    assert "| collector | 2 |" not in text  # the collector is one process: not measured at 2
    assert text.count("| yes |") == 3  # two streams at 1 Hz are kept up with by every server
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"
