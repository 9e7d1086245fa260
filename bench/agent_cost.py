"""What the agent costs its host: CPU share of one core and resident memory, streaming to a real collector.

Runs a real collector and a real agent (8 GPUs, 1 Hz) as subprocesses over mTLS on 127.0.0.1,
the GPUs either simulated (``--source sim``) or read through the nvml source from the counting fake
pynvml (``--source fake-nvml``, tests/fakes/nvml_agent.py: the agent's real NVML code path, with
the fake's Python standing in for the driver's C), or as installed (``--source stub-nvml``: the
``gpulse agent`` command with the real nvidia-ml-py over the C stub libnvidia-ml.so.1 of
tests/fakes/nvml_stub, 8 H100s), and in the same run a floor process: the same
interpreter with the same imports waking at the same rate and doing nothing, so the agent's own cost
is told apart from Python's. CPU comes from /proc/PID/stat (user + system, all threads), memory from
/proc/PID/status (VmRSS, VmHWM).

    .venv/bin/python -m bench.agent_cost [--source sim|fake-nvml|stub-nvml] [--listen] [--seconds 30] [--gpus 8]

``--listen`` turns on the agent's local ``[metrics] listen`` and scrapes it once a second. With the
stub, the NVML calls the agent made per GPU per tick are counted in C and printed too.
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
    anon_bytes: int = 0  # heap, stacks, arenas: the process's own
    file_bytes: int = 0  # shared libraries' pages, shared with any other process mapping them
    threads: int = 0


def usage(pid: int) -> Usage:
    """CPU time so far (all threads) and resident memory of a running process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kib = {k: int(v.split()[0]) * 1024 for k, v in status.items() if v.strip().endswith("kB")}
    return Usage(
        cpu,
        kib["VmRSS"],
        kib["VmHWM"],
        kib.get("RssAnon", 0),
        kib.get("RssFile", 0) + kib.get("RssShmem", 0),
        int(status["Threads"]),
    )


def by_mapping(pid: int, top: int = 12) -> list[tuple[str, int]]:
    """Resident bytes per mapped file (or [heap], [anon], [stack]) from /proc/PID/smaps, largest first."""
    rss: dict[str, int] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
            name = (
                Path(parts[5]).name
                if len(parts) > 5 and parts[5].startswith("/")
                else (parts[5] if len(parts) > 5 else "[anon]")
            )
        elif parts and parts[0] == "Rss:":
            rss[name] = rss.get(name, 0) + int(parts[1]) * 1024
    return sorted(rss.items(), key=lambda kv: -kv[1])[:top]


def measure(pid: int, seconds: float) -> tuple[float, Usage]:
    """Share of one core used over ``seconds`` of wall time, and memory at the end."""
    before, t0 = usage(pid), time.monotonic()
    time.sleep(seconds)
    after, t1 = usage(pid), time.monotonic()
    return (after.cpu_seconds - before.cpu_seconds) / (t1 - t0), after


def main() -> None:
    from tests.fakes.nvml_stub import ENV_COUNTS, StubConfig, StubGpu, build, read_counts
    from tests.kit import (
        Pki,
        Service,
        agent_config,
        free_port,
        http_get,
        metric_value,
        start_agent,
        start_collector,
        wait_for,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("sim", "fake-nvml", "stub-nvml"), default="sim")
    parser.add_argument("--smaps", action="store_true", help="print where the agent's resident memory is")
    parser.add_argument("--listen", action="store_true", help="with the agent's local /metrics, scraped at 1 Hz")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=5.0, help="time after the first frame before measuring")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gpulse-bench-") as tmp_name:
        tmp = Path(tmp_name)
        kit = Pki.create(tmp / "pki")
        collector = start_collector(tmp, kit)
        extra: dict[str, object] = {}
        listen = ""
        if args.listen:
            listen = f"127.0.0.1:{free_port()}"
            extra["metrics"] = {"listen": listen}
        counts = tmp / "nvml-calls"
        if args.source == "stub-nvml":
            stub = StubConfig(
                tmp / "nvml-stub.conf", [StubGpu.h100(i) for i in range(args.gpus)], lib=build(tmp / "stub-build")
            )
            stub.write()
            config = agent_config(tmp, kit, "bench-host", [collector.target], interval=args.interval,
                                  log={"level": "warning"}, gpu={"source": "nvml"}, **extra)  # fmt: skip
            agent = Service("agent", config, tmp / "agent.log", ["agent"], env={**stub.env(), ENV_COUNTS: str(counts)})
            agent.start()
        elif args.source == "sim":
            agent = start_agent(
                tmp,
                kit,
                "bench-host",
                [collector.target],
                interval=args.interval,
                sim={"count": args.gpus, "seed": 7},
                log={"level": "warning"},
                **extra,
            )
        else:
            config = agent_config(tmp, kit, "bench-host", [collector.target], interval=args.interval,
                                  log={"level": "warning"}, **extra)  # fmt: skip
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
            scrapes = 0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1.0)
                if listen:
                    http_get(f"http://{listen}/metrics")  # as Prometheus or node-exporter's scrape would
                    scrapes += 1
            floor_after, agent_after, t1 = usage(floor.pid), usage(agent.process.pid), time.monotonic()
            mappings = by_mapping(agent.process.pid) if args.smaps else []
            frames = (metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0.0) - frames_before
            if args.source == "stub-nvml":
                agent.stop()  # nvmlShutdown writes the stub's call counts
        finally:
            floor.kill()
            agent.kill()
            collector.kill()
        calls = read_counts(counts) if counts.exists() else {}
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
        f"  of which anonymous / file-backed {agent_after.anon_bytes / mib:6.1f} / {agent_after.file_bytes / mib:.1f}"
        " MiB,"
        f" {agent_after.threads} threads"
    )
    print(
        f"floor (same imports, same wakeups): CPU {floor_share * 100:.3f} %, RSS {floor_after.rss_bytes / mib:.1f} MiB"
        f" (anonymous {floor_after.anon_bytes / mib:.1f}, file-backed {floor_after.file_bytes / mib:.1f})"
    )
    print(
        f"  agent CPU above the floor: {(agent_share - floor_share) * 100:.3f} % of a core"
        f" = {(agent_share - floor_share) * args.interval * 1e3:.2f} ms per tick"
    )
    print(f"  agent RSS / floor RSS: {agent_after.rss_bytes / floor_after.rss_bytes:.2f}")
    print(f"  frames applied per tick: {frames / ticks:.2f}")
    for mapping, size in mappings:
        print(f"  resident {size / mib:6.1f} MiB  {mapping}")
    if listen:
        print(f"  local /metrics on {listen}, scraped {scrapes} times")
    if calls:
        per_gpu = [sum(n for (_, g), n in calls.items() if g == i) for i in range(args.gpus)]
        print(f"  NVML calls per GPU over the whole run (stub's own count): {per_gpu}")


if __name__ == "__main__":
    main()
