"""`gpulse state backup|restore FILE`: the collector's databases, copied online and put back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "state",
        help="back up or restore the collector's state (alerts, silences, outbox, progress, actions, ledger)",
        epilog="example: gpulse state backup --config /etc/gpulse/collector.toml /var/backups/gpulse/state.tar",
    )
    state = p.add_subparsers(dest="state_command", required=True)
    q = state.add_parser(
        "backup",
        help="copy every collector database into FILE, while the collector runs",
        epilog="example: gpulse state backup /var/backups/gpulse/state.tar",
    )
    q.add_argument("file", type=Path, help="the backup archive to write")
    q.add_argument("--config", type=Path, default=Path("/etc/gpulse/collector.toml"), help="the collector config")
    q = state.add_parser(
        "restore",
        help="replace the collector's databases with those in FILE (collector stopped)",
        epilog="example: gpulse state restore /var/backups/gpulse/state.tar",
    )
    q.add_argument("file", type=Path, help="a backup archive written by `gpulse state backup`")
    q.add_argument("--config", type=Path, default=Path("/etc/gpulse/collector.toml"), help="the collector config")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from collector.statefiles import BackupError, backup, restore
    from runtime.configfile import Section, load_toml

    # Only state_dir is read: a backup timer runs without the collector's secrets in its environment.
    root = Section(args.config, "", load_toml(args.config))
    state_dir = root.get("state_dir", Path, Path("/var/lib/gpulse/collector"))
    if args.state_command == "backup":
        names = backup(state_dir, args.file)
        print(f"backed up {', '.join(names) or 'nothing (no databases yet)'} from {state_dir} to {args.file}")
        return 0
    try:
        names = restore(args.file, state_dir)
    except BackupError as exc:
        print(f"gpulse state restore: {exc}", file=sys.stderr)
        return 2
    print(f"restored {', '.join(names)} into {state_dir}; start the collector")
    return 0
