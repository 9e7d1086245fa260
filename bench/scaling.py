"""Collector scaling: fleet size against p99 ingest latency and CPU per 1,000 frames, per worker count.

Runs bench.loadgen's steps (same simulated hosts, deadlines and figures) for every fleet size, mode
and worker count asked, in one run, so the curves share a machine and a moment; then writes the
table as Markdown and the curve as a PNG, and prints the ratios the sizing rests on:

- per mode, the largest applied frame rate sustained at N workers over that at 1 worker;
- per size, the collector's CPU per frame over the null sink's (the share of the transport kept).

The null sink runs as N processes sharing the port. The collector modes run as one process: at
more than one worker their steps are listed as not available, not measured.

    .venv/bin/python -m bench.scaling --hosts 1000,2000,3000,4000,5000 --workers 1,2 --modes sink,full \\
        --seconds 20 --scrape-every 15 --out /tmp/gpulse-scaling
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen


@dataclass(frozen=True)
class Point:
    mode: str
    workers: int
    row: dict[str, Any] | None  # None: not available at this worker count
    why: str = ""


def measure(args: argparse.Namespace, pki_dir: Path) -> list[Point]:
    deadlines = loadgen.Deadlines(connect_s=args.connect_deadline, answer_s=args.answer_deadline)
    points: list[Point] = []
    for hosts in (int(h) for h in args.hosts.split(",")):
        for workers in (int(w) for w in args.workers.split(",")):
            for mode in args.modes.split(","):
                try:
                    row = loadgen.run_step(mode, hosts, args, pki_dir, deadlines, workers=workers)
                except ValueError as exc:
                    points.append(Point(mode, workers, None, str(exc)))
                    print(f"{mode:9} {hosts:6d} x{workers}: not available: {exc}", flush=True)
                    continue
                points.append(Point(mode, workers, row))
                print(f"x{workers} " + loadgen.format_row(mode, row), flush=True)
    return points


def table(points: Sequence[Point]) -> str:
    """The curve as a Markdown table, one line per step."""
    lines = [
        "| server | workers | hosts | connect | offered/s | applied/s | p50 | p99 | CPU per 1k frames | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        if p.row is None:
            continue
        r = p.row
        lines.append(
            f"| {p.mode} | {p.workers} | {r['hosts']:,} | {r['connect_s']:.1f} s | {r['offered_per_s']:,.0f}"
            f" | {r['applied_per_s']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.0f} ms"
            f" | {r['cpu_ms_per_1k']:.0f} ms | {'yes' if loadgen.sustained(r) else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def best_sustained(points: Sequence[Point], mode: str, workers: int) -> float:
    """The largest applied frame rate of a sustained step; 0 if none was."""
    rates = [
        float(p.row["applied_per_s"])
        for p in points
        if p.mode == mode and p.workers == workers and p.row is not None and loadgen.sustained(p.row)
    ]
    return max(rates, default=0.0)


def ratios(points: Sequence[Point]) -> list[str]:
    """Scaling over workers, and the share of the sink kept, as printed lines."""
    out: list[str] = []
    modes = sorted({p.mode for p in points})
    counts = sorted({p.workers for p in points})
    for mode in modes:
        base = best_sustained(points, mode, 1)
        for workers in counts[1:] if counts and counts[0] == 1 else []:
            top = best_sustained(points, mode, workers)
            if base and top:
                out.append(f"{mode}: frames sustained at {workers} workers over 1: {top / base:.2f}x")
    sinks = {(p.workers, p.row["hosts"]): p.row for p in points if p.mode == "sink" and p.row is not None}
    for p in points:
        if p.mode != "sink" and p.row is not None and (sink := sinks.get((p.workers, p.row["hosts"]))):
            ours, theirs = float(p.row["cpu_ms_per_1k"]), float(sink["cpu_ms_per_1k"])
            if math.isfinite(ours) and math.isfinite(theirs) and ours > 0 and theirs > 0:
                where = f"{p.mode} x{p.workers} at {p.row['hosts']:,} hosts"
                out.append(f"{where}: sink CPU per frame over ours {theirs / ours:.2f}")
    return out


def plot(points: Sequence[Point], path: Path) -> None:
    """Hosts against p99 and against CPU per 1,000 frames, one line per mode and worker count."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a benchmark host
    import matplotlib.pyplot as plt

    fig, (latency, cost) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, workers in sorted({(p.mode, p.workers) for p in points if p.row is not None}):
        rows = sorted(
            (p.row for p in points if p.mode == mode and p.workers == workers and p.row), key=lambda r: r["hosts"]
        )
        hosts = [r["hosts"] for r in rows]
        label = f"{mode}, {workers} worker{'s' if workers > 1 else ''}"
        latency.plot(hosts, [r["p99_ms"] for r in rows], marker="o", label=label)
        cost.plot(hosts, [r["cpu_ms_per_1k"] for r in rows], marker="o", label=label)
    latency.axhline(1000.0, color="grey", linestyle="--", linewidth=0.8)  # the sustained bound
    latency.set(xlabel="hosts (8 GPUs, 1 Hz)", ylabel="p99 ingest latency (ms)", yscale="log")
    cost.set(xlabel="hosts (8 GPUs, 1 Hz)", ylabel="server CPU per 1,000 frames (ms)")
    for axes in (latency, cost):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1000,2000,3000", help="fleet sizes, comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--modes", default="sink,full", help="sink, collector, full")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--scrape-every", type=float, default=15.0)
    parser.add_argument("--connect-deadline", type=float, default=loadgen.Deadlines.connect_s)
    parser.add_argument("--answer-deadline", type=float, default=loadgen.Deadlines.answer_s)
    parser.add_argument("--out", type=Path, required=True, help="folder for scaling.md and scaling.png")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpulse-scaling-") as tmp:
        largest = max(int(h) for h in args.hosts.split(","))
        t = time.monotonic()
        loadgen.issue_certs(Path(tmp), largest)
        print(f"issued {largest} agent certificates in {time.monotonic() - t:.1f}s", flush=True)
        print(loadgen.HEADER, flush=True)
        points = measure(args, Path(tmp))
    summary = ratios(points)
    (args.out / "scaling.md").write_text(table(points) + "".join(f"\n- {line}" for line in summary) + "\n")
    plot(points, args.out / "scaling.png")
    for line in summary:
        print(line)
    print(f"wrote {args.out / 'scaling.md'} and {args.out / 'scaling.png'}")


if __name__ == "__main__":
    main()
