"""`gpulse record` and `gpulse backtest`: make a trace from the simulator, run detection over a trace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _cmd_record(args: argparse.Namespace) -> int:
    from agent.record import RecordPlan, parse_fault, record
    from agent.sources.sim import LoadPattern

    try:
        faults = tuple(parse_fault(spec) for spec in args.fault)
    except ValueError as exc:
        print(f"gpulse record: {exc}", file=sys.stderr)
        return 2
    plan = RecordPlan(
        hosts=args.hosts,
        gpus=args.gpus,
        profile=args.profile,
        pattern=LoadPattern(args.pattern),
        seed=args.seed,
        duration=args.duration,
        interval=args.interval,
        start_unix=args.start,
        faults=faults,
    )
    for host, fault in faults:
        if not 0 <= host < plan.hosts or not 0 <= fault.gpu < plan.gpus:
            print(f"gpulse record: fault on host {host} GPU {fault.gpu} is outside the recorded fleet", file=sys.stderr)
            return 2
    with args.out.open("w") as out:
        frames = record(out, plan)
    print(f"{args.out}: {frames} frames from {plan.hosts} hosts x {plan.gpus} GPUs over {plan.duration:g}s")
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from collector.detect.backtest import backtest, format_alerts
    from collector.detect.rules import DEFAULT_RULES, RuleError
    from runtime.trace import TraceError

    rules = [str(p) for p in args.rules] or [DEFAULT_RULES]
    try:
        result = backtest(args.trace, rules, interval=args.interval)
    except (RuleError, TraceError) as exc:
        print(f"gpulse backtest: {exc}", file=sys.stderr)
        return 2
    for line in format_alerts(result):
        print(line)
    print(
        f"{len(result.alerts)} alert state changes; {result.frames} frames and {result.events} events "
        f"over {result.end - result.start:.0f}s of trace",
        file=sys.stderr,
    )
    return 0


def add_commands(sub: Any) -> None:
    """Register the trace subcommands on the `gpulse` parser's subparsers."""
    from agent.sources.sim import PROFILES, LoadPattern

    p = sub.add_parser(
        "record",
        help="run simulated hosts faster than real time and write a trace (JSONL)",
        epilog="example: gpulse record trace.jsonl --hosts 4 --duration 300 "
        "--fault kind=straggler,host=0,gpu=3,at=120,severity=0.5",
    )
    p.add_argument("out", type=Path, help="the trace file to write (docs/trace-format.md)")
    p.add_argument("--hosts", type=int, default=2, help="simulated hosts (default 2)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs per host (default 8)")
    p.add_argument("--profile", choices=tuple(PROFILES), default="H100", help="GPU model to simulate (default H100)")
    p.add_argument(
        "--pattern", choices=[x.value for x in LoadPattern], default="training", help="load pattern (default training)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed records the same trace")
    p.add_argument("--duration", type=float, default=600.0, help="simulated seconds")
    p.add_argument("--interval", type=float, default=1.0, help="simulated seconds between samples")
    p.add_argument("--start", type=float, default=1_700_000_000.0, help="Unix time of the first sample")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault: kind=straggler,host=0,gpu=3,at=120,severity=0.5[,duration=S][,xid=N] (repeatable)",
    )
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser(
        "backtest",
        help="run detection over a trace offline and print the alerts with their times",
        epilog="example: gpulse backtest trace.jsonl --rules site-rules.toml",
    )
    p.add_argument("trace", type=Path, help="a trace written by `gpulse record` or an agent (JSONL)")
    p.add_argument(
        "--rules", type=Path, action="append", default=[], help="rule file (repeatable; default: the built-in pack)"
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between evaluations")
    p.set_defaults(func=_cmd_backtest)
