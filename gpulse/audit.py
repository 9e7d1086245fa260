"""``gpulse audit verify FILE``: check an audit log's hash chain; names the first bad record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collector.audit.log import verify


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        with args.file.open(encoding="utf-8", errors="replace") as fh:
            checked, problem = verify(fh)
    except OSError as exc:
        print(f"gpulse audit verify: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if problem:
        print(f"{args.file}: TAMPERED at record {checked}: {problem}")
        return 1
    print(f"{args.file}: ok ({checked} records, chain intact)")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit", help="the collector's audit log", epilog="example: gpulse audit verify /var/lib/gpulse/audit.jsonl"
    )
    sub = audit.add_subparsers(dest="audit_command", required=True)
    check = sub.add_parser(
        "verify",
        help="check the hash chain; exit 1 at the first altered or missing record",
        epilog="example: gpulse audit verify /var/lib/gpulse/collector/audit.jsonl",
    )
    check.add_argument("file", type=Path, help="the audit log, a JSON-lines file")
    check.set_defaults(func=_cmd_verify)
