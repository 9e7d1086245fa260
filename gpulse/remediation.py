"""`gpulse remediation list|approve|reset`: a collector's remediation through its HTTP API."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from gpulse.client import Client, ClientError, add_client_options
from gpulse.silences import _when


def _cmd(args: argparse.Namespace) -> int:
    try:
        client = Client.from_args(args)
        if args.remediation_command == "approve":
            action = client.request(f"/api/v1/remediation/actions/{args.id}/approve", "POST", {"by": args.by})
            print(f"approved {action['id']}: {action['host']} ({action['node']}) will be drained")
            return 0
        if args.remediation_command == "reset":
            result = client.request("/api/v1/remediation/reset", "POST", {"by": args.by})
            print("circuit breaker reset" if result["was_tripped"] else "circuit breaker was not tripped")
            return 0
        snap = client.request("/api/v1/remediation")
        breaker = snap["breaker"]
        print(f"mode: {snap['mode']}; breaker: " + (f"TRIPPED ({breaker['reason']})" if breaker["tripped"] else "ok"))
        rows = snap["recent"] if args.all else snap["open"]
        print(f"{'ID':8}  {'STATE':9}  {'HOST':20}  {'SINCE':20}  REASON")
        for a in rows:
            print(f"{a['id']:8}  {a['state']:9}  {a['host'][:20]:20}  {_when(a['created_at']):20}  {a['reason']}")
        return 0
    except ClientError as exc:
        print(f"gpulse remediation: {exc}", file=sys.stderr)
        return 2


def add_parser(sub: Any) -> None:
    """Register ``remediation`` on the `gpulse` command's subparsers."""
    p = sub.add_parser(
        "remediation",
        help="list, approve or unblock a collector's automatic actions",
        epilog="example: gpulse remediation list --url http://127.0.0.1:9410",
    )
    s = p.add_subparsers(dest="remediation_command", required=True)
    q = s.add_parser(
        "list",
        help="mode, breaker, and the open actions (pending approval among them)",
        epilog="example: gpulse remediation list --all",
    )
    q.add_argument("--all", action="store_true", help="recent finished actions too")
    add_client_options(q)
    q = s.add_parser("approve", help="let a pending action run", epilog="example: gpulse remediation approve 3f2a9c1d")
    q.add_argument("id", help="the action's id, as `gpulse remediation list` shows it")
    q.add_argument("--by", default=getpass.getuser(), help="who approves, for the action log (default: you)")
    add_client_options(q)
    q = s.add_parser("reset", help="close a tripped circuit breaker", epilog="example: gpulse remediation reset")
    q.add_argument("--by", default=getpass.getuser(), help="who resets it, for the action log (default: you)")
    add_client_options(q)
    p.set_defaults(func=_cmd)
