"""`gpulse report`: GPU-hours, energy, cost and waste by job, user, account, host or model, from a collector."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from gpulse.client import Client, ClientError, add_client_options
from gpulse.silences import parse_duration

BY = ("job", "user", "account", "host", "model")
COLUMNS = (
    ("name", "{}"),
    ("allocated_gpu_hours", "{:.2f}"),
    ("busy_gpu_hours", "{:.2f}"),
    ("idle_gpu_hours", "{:.2f}"),
    ("energy_kwh", "{:.2f}"),
    ("cost", "{:.2f}"),
    ("waste_cost", "{:.2f}"),
)
HEADINGS = ("", "GPU-h", "busy GPU-h", "idle GPU-h", "kWh", "cost", "waste")


def parse_time(text: str) -> int:
    """An ISO 8601 time (``2026-12-01``, ``2026-12-01T08:00``; UTC unless it says) as Unix nanoseconds."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"time {text!r}: expected ISO 8601, e.g. 2026-12-01T08:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def window(args: argparse.Namespace, now_ns: int) -> tuple[int, int]:
    to_ns = args.to if args.to is not None else now_ns
    from_ns = args.from_ if args.from_ is not None else to_ns - int(args.since * 1e9)
    return from_ns, to_ns


def render_table(report: dict[str, Any]) -> str:
    """Groups, then totals and waste, aligned for a terminal."""
    currency = report.get("currency", "")
    rows = [list(HEADINGS)]
    rows[0][0] = report["by"]
    for g in report["groups"]:
        values = dict(g, allocated_gpu_hours=g["gpu_hours"])
        rows.append([fmt.format(values[key]) for key, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADINGS))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t = report["totals"]
    share = t["idle_gpu_hours"] / t["allocated_gpu_hours"] if t["allocated_gpu_hours"] else 0.0
    lines += [
        "",
        f"allocated  {t['allocated_gpu_hours']:.2f} GPU-h, {t['energy_kwh']:.2f} kWh, {t['cost']:.2f} {currency}",
        f"busy       {t['busy_gpu_hours']:.2f} GPU-h",
        f"waste      {t['idle_gpu_hours']:.2f} idle allocated GPU-h ({share:.0%}), {t['waste_cost']:.2f} {currency}",
        f"stranded   {t['stranded_gpu_hours']:.2f} GPU-h"
        f" (idle allocated + {t['unallocated_gpu_hours']:.2f} unallocated)",
    ]
    return "\n".join(lines) + "\n"


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    keys = [
        "name",
        "gpu_hours",
        "busy_gpu_hours",
        "idle_gpu_hours",
        "gap_gpu_hours",
        "energy_kwh",
        "cost",
        "waste_cost",
    ]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report["by"], *keys[1:]])
    for g in report["groups"]:
        writer.writerow([g[k] for k in keys])
    return out.getvalue()


def _cmd(args: argparse.Namespace) -> int:
    from_ns, to_ns = window(args, time.time_ns())
    if from_ns >= to_ns:
        print("gpulse report: --from must be before --to", file=sys.stderr)
        return 2
    try:
        report = Client.from_args(args).request(f"/api/v1/ledger/report?from={from_ns}&to={to_ns}&by={args.by}")
    except ClientError as exc:
        print(f"gpulse report: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    elif args.format == "csv":
        sys.stdout.write(render_csv(report))
    else:
        sys.stdout.write(render_table(report))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``report`` on the `gpulse` command's subparsers."""
    p = sub.add_parser(
        "report",
        help="GPU-hours, energy, cost and waste by job, user, account, host or model",
        epilog="example: gpulse report --since 7d --by user --format table",
    )
    add_client_options(p)
    p.add_argument("--since", type=parse_duration, default=parse_duration("7d"), help="how far back (default 7d)")
    p.add_argument(
        "--from", dest="from_", type=parse_time, help="start (ISO 8601, UTC unless given); overrides --since"
    )
    p.add_argument("--to", type=parse_time, help="end (ISO 8601; default now)")
    p.add_argument("--by", choices=BY, default="job", help="group by (default job)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output (default table)")
    p.set_defaults(func=_cmd)
