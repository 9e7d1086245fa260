"""What the agent costs its host: CPU share of one core and resident memory, streaming to a real collector.

Runs a real collector and a real agent (8 GPUs, 1 Hz) as subprocesses over mTLS on 127.0.0.1,
the GPUs either simulated (``--source sim``) or read through the nvml source from the counting fake
pynvml (``--source fake-nvml``, tests/fakes/nvml_agent.py: the agent's real NVML code path, with
the fake's Python standing in for the driver's C), and in the same run a floor process: the same
interpreter with the same imports waking at the same rate and doing nothing, so the agent's own cost
is told apart from Python's. CPU comes from /proc/PID/stat (user + system, all threads), memory from
/proc/PID/status (VmRSS, VmHWM).

    .venv/bin/python -m bench.agent_cost [--source sim|fake-nvml] [--seconds 30] [--gpus 8] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

FLOOR = """
import asyncio, grpc, psutil, structlog  # the agent's heavy imports
from protos import telemetry_pb2
async def main():
    while True:
        await asyncio.sleep({interval})
asyncio.run(main())
"""


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


def usage(pid: int) -> Usage:
    """CPU time so far (all threads) and resident memory of a running process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return Usage(cpu, int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024)


def measure(pid: int, seconds: float) -> tuple[float, Usage]:
    """Share of one core used over ``seconds`` of wall time, and memory at the end."""
    before, t0 = usage(pid), time.monotonic()
    time.sleep(seconds)
    after, t1 = usage(pid), time.monotonic()
    return (after.cpu_seconds - before.cpu_seconds) / (t1 - t0), after


def main() -> None:
    from tests.kit import Pki, Service, agent_config, metric_value, start_agent, start_collector, wait_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("sim", "fake-nvml"), default="sim")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=5.0, help="time after the first frame before measuring")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gpulse-bench-") as tmp_name:
        tmp = Path(tmp_name)
        kit = Pki.create(tmp / "pki")
        collector = start_collector(tmp, kit)
        if args.source == "sim":
            agent = start_agent(
                tmp,
                kit,
                "bench-host",
                [collector.target],
                interval=args.interval,
                sim={"count": args.gpus, "seed": 7},
                log={"level": "warning"},
            )
        else:
            config = agent_config(tmp, kit, "bench-host", [collector.target], interval=args.interval,
                                  log={"level": "warning"})  # fmt: skip
            agent = Service("agent", config, tmp / "agent.log", [])
            agent.process = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.nvml_agent", str(config), str(args.gpus)],
                stdout=(tmp / "agent.log").open("ab"),
                stderr=subprocess.STDOUT,
                cwd=Path.cwd(),
            )
        floor = subprocess.Popen([sys.executable, "-c", FLOOR.format(interval=args.interval)], cwd=Path.cwd())
        try:
            wait_for(
                lambda: metric_value(collector.metrics(), "gpulse_host_up", host="bench-host") == 1,
                what="the agent's first frame",
            )
            time.sleep(args.warmup)
            frames_before = metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0.0
            assert agent.process is not None
            floor_before, agent_before, t0 = usage(floor.pid), usage(agent.process.pid), time.monotonic()
            time.sleep(args.seconds)
            floor_after, agent_after, t1 = usage(floor.pid), usage(agent.process.pid), time.monotonic()
            frames = (metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0.0) - frames_before
        finally:
            floor.kill()
            agent.kill()
            collector.kill()
    wall = t1 - t0
    agent_share = (agent_after.cpu_seconds - agent_before.cpu_seconds) / wall
    floor_share = (floor_after.cpu_seconds - floor_before.cpu_seconds) / wall
    ticks = wall / args.interval
    mib = 1024 * 1024
    print(f"agent: {args.gpus} {args.source} GPUs at {1 / args.interval:g} Hz, {wall:.0f}s window,"
          f" {frames:.0f} frames applied")  # fmt: skip
    print(f"  CPU share of one core   {agent_share * 100:6.3f} %   (target <= 1 %)")
    print(f"  CPU per tick            {agent_share * args.interval * 1e3:6.2f} ms")
    print(
        f"  RSS now / peak          {agent_after.rss_bytes / mib:6.1f} / {agent_after.peak_rss_bytes / mib:.1f} MiB"
        "   (target <= 60 MB)"
    )
    print(
        f"floor (same imports, same wakeups): CPU {floor_share * 100:.3f} %, RSS {floor_after.rss_bytes / mib:.1f} MiB"
    )
    print(
        f"  agent CPU above the floor: {(agent_share - floor_share) * 100:.3f} % of a core"
        f" = {(agent_share - floor_share) * args.interval * 1e3:.2f} ms per tick"
    )
    print(f"  agent RSS / floor RSS: {agent_after.rss_bytes / floor_after.rss_bytes:.2f}")
    print(f"  frames applied per tick: {frames / ticks:.2f}")


if __name__ == "__main__":
    main()
