"""`gpulse silence add|list|expire`: manage the collector's silences through its HTTP API."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from gpulse.client import Client, ClientError, add_client_options

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` in seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"duration {text!r}: expected a number and s, m, h, d or w, e.g. 2h")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _cmd(args: argparse.Namespace) -> int:
    try:
        client = Client.from_args(args)
        if args.silence_command == "add":
            silence = client.request(
                "/api/v1/silences",
                "POST",
                {
                    "matchers": args.matchers,
                    "duration_seconds": args.duration,
                    "created_by": args.author,
                    "comment": args.comment,
                },
            )
            print(silence["id"])
            return 0
        if args.silence_command == "expire":
            client.request(f"/api/v1/silences/{args.id}", "DELETE")
            print(f"expired {args.id}")
            return 0
        silences = client.request("/api/v1/silences")["silences"]
        now = time.time()
        shown = [s for s in silences if args.all or s["ends_at"] > now]
        print(f"{'ID':32}  {'ENDS':20}  {'BY':12}  MATCHERS  COMMENT")
        for s in shown:
            state = "" if s["active"] else (" (expired)" if s["ends_at"] <= now else " (pending)")
            print(
                f"{s['id']:32}  {_when(s['ends_at']):20}  {s['created_by'][:12]:12}  "
                f"{','.join(s['matchers'])}  {s['comment']}{state}"
            )
        return 0
    except ClientError as exc:
        print(f"gpulse silence: {exc}", file=sys.stderr)
        return 2


def add_parser(sub: Any) -> None:
    """Register ``silence`` on the `gpulse` command's subparsers."""
    p = sub.add_parser(
        "silence",
        help="add, list or expire alert silences on a collector",
        epilog="example: gpulse silence add host=node-1 --duration 2h --comment 'replacing PSU'",
    )
    s = p.add_subparsers(dest="silence_command", required=True)
    q = s.add_parser(
        "add",
        help="silence alerts matching all the given matchers",
        epilog="example: gpulse silence add host=node-1 alertname=~Gpu.* --duration 2h --comment 'replacing PSU'",
    )
    q.add_argument("matchers", nargs="+", metavar="MATCHER", help="label matchers: host=node-1, alertname=~Gpu.*")
    q.add_argument("--duration", type=parse_duration, default=parse_duration("2h"), help="how long (default 2h)")
    q.add_argument("--author", default=getpass.getuser(), help="who is silencing (default: you)")
    q.add_argument("--comment", required=True, help="why")
    add_client_options(q)
    q = s.add_parser(
        "list", help="list active and pending silences", epilog="example: gpulse silence list --url http://c1:9410"
    )
    q.add_argument("--all", action="store_true", help="include expired ones")
    add_client_options(q)
    q = s.add_parser("expire", help="end a silence now", epilog="example: gpulse silence expire 3f2a9c...")
    q.add_argument("id", help="the silence's id, as `gpulse silence add` printed it")
    add_client_options(q)
    p.set_defaults(func=_cmd)
