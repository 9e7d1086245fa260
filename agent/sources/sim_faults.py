"""Injecting sim faults into a running agent: a TOML file dropped into its fault inbox.

The same keys as a ``[[sim.faults]]`` table (kind, gpu, duration, severity, xid, count; ``at`` is
ignored: an injected fault starts now). ``gpulse sim-fault`` writes one atomically; the agent takes
it on its next tick and renames it ``.applied``, or ``.rejected`` with the reason beside it, so
whoever dropped it can see what happened without reading the agent's log.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from agent.sources.sim import Fault, FaultKind
from runtime.configfile import ConfigError, Section, load_toml

__all__ = ["INBOX_DIR", "FaultInbox", "add_parser", "parse_fault", "write_fault"]

log = structlog.get_logger("gpulse.agent.sim")

INBOX_DIR = "sim-faults"  # under the agent's state_dir


def parse_fault(section: Section, gpu_count: int) -> Fault:
    """A fault from a ``[[sim.faults]]``-shaped table; raises ConfigError naming the key and problem."""
    kind = FaultKind(section.choice("kind", tuple(k.value for k in FaultKind), "xid"))
    gpu = section.get("gpu", int, 0)
    if not 0 <= gpu < gpu_count:
        raise section.error("gpu", f"must be between 0 and {gpu_count - 1}, got {gpu}")
    severity = section.get("severity", float, 0.5)
    if not 0.0 <= severity <= 1.0:
        raise section.error("severity", f"must be between 0 and 1, got {severity}")
    duration = section.get("duration", float, 0.0)
    if duration < 0:
        raise section.error("duration", f"must be 0 (for good) or more seconds, got {duration}")
    count = section.get("count", int, 1)
    if count < 1:
        raise section.error("count", f"must be at least 1, got {count}")
    xid = section.get("xid", int, 0)
    if kind is FaultKind.XID and not 0 < xid < 1 << 16:
        raise section.error("xid", f"an xid fault needs an XID code between 1 and 65535, got {xid}")
    fault = Fault(kind, gpu, section.get("at", float, 0.0), duration, severity, xid, count)
    section.finish()
    return fault


class FaultInbox:
    """Faults waiting in a directory, taken once each; pass ``take`` to the sim backend."""

    def __init__(self, directory: Path, gpu_count: int) -> None:
        self.directory = directory
        self.gpu_count = gpu_count
        self.applied = 0
        self.rejected = 0

    def take(self) -> list[Fault]:
        """Faults dropped since the last call, oldest first; bad files are set aside with their reason."""
        try:
            files = sorted(self.directory.glob("*.toml"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        except OSError:
            return []
        faults = []
        for path in files:
            try:
                faults.append(parse_fault(Section(path, "", load_toml(path)), self.gpu_count))
            except (ConfigError, ValueError, OSError) as exc:
                self.rejected += 1
                log.warning("sim fault rejected", file=str(path), error=str(exc))
                path.with_suffix(".error").write_text(f"{exc}\n")
                path.replace(path.with_suffix(".rejected"))
                continue
            self.applied += 1
            log.info("sim fault injected", file=str(path), kind=faults[-1].kind.value, gpu=faults[-1].gpu)
            path.replace(path.with_suffix(".applied"))
        return faults


def write_fault(directory: Path, fields: dict[str, Any]) -> Path:
    """Drop a fault file atomically, so the agent never reads half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{k} = {_toml(v)}" for k, v in fields.items() if v is not None]
    name = f"{time.time_ns()}-{os.getpid()}-{fields.get('kind', 'fault')}"
    tmp = directory / f".{name}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    final = directory / f"{name}.toml"
    tmp.replace(final)
    return final


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_parser(sub: Any) -> None:
    """Register `gpulse sim-fault`."""
    p = sub.add_parser(
        "sim-fault",
        help="inject a fault into a running agent's simulated GPUs, now",
        epilog="example: gpulse sim-fault xid --xid 79 --gpu 3 --state-dir /var/lib/gpulse/agent",
    )
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/gpulse/agent"), help="the agent's state_dir")
    p.add_argument("kind", choices=[k.value for k in FaultKind], help="the fault to inject")
    p.add_argument("--gpu", type=int, default=0, help="index of the GPU to break (default 0)")
    p.add_argument("--xid", type=int, default=None, help="the XID code, for kind xid")
    p.add_argument("--count", type=int, default=None, help="occurrences, for kind xid (a storm)")
    p.add_argument("--severity", type=float, default=None, help="0..1, for the gray faults")
    p.add_argument("--duration", type=float, default=None, help="seconds; 0 or absent: until the agent restarts")
    p.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for the agent to take the fault before giving up (default 10)",
    )
    p.set_defaults(func=_cmd_sim_fault)


def wait_taken(path: Path, timeout: float, sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Wait for the agent to take the fault file at ``path``.

    Returns None once applied, the agent's reason once rejected; raises TimeoutError when nobody took
    it, after withdrawing it so that an agent started later does not apply a stale fault.
    """
    deadline = time.monotonic() + timeout
    while True:
        if path.with_suffix(".applied").exists():
            return None
        if path.with_suffix(".rejected").exists():
            try:
                return path.with_suffix(".error").read_text().strip()
            except FileNotFoundError:
                return "rejected"
        if time.monotonic() >= deadline:
            try:
                path.replace(path.with_suffix(".withdrawn"))
            except FileNotFoundError:
                continue  # taken just now: the next pass reads the outcome
            raise TimeoutError
        sleep(0.1)


def _cmd_sim_fault(args: argparse.Namespace) -> int:
    if not args.state_dir.is_dir():
        print(f"gpulse sim-fault: {args.state_dir}: no such directory; give the agent's state_dir", file=sys.stderr)
        return 1
    inbox = args.state_dir / INBOX_DIR
    fields = {
        "kind": args.kind,
        "gpu": args.gpu,
        "xid": args.xid,
        "count": args.count,
        "severity": args.severity,
        "duration": args.duration,
    }
    path = write_fault(inbox, fields)
    try:
        reason = wait_taken(path, args.wait)
    except TimeoutError:
        print(
            f"gpulse sim-fault: no agent took the fault within {args.wait:g}s; is an agent with "
            f'gpu source "sim" running with state_dir {args.state_dir}? (fault withdrawn)',
            file=sys.stderr,
        )
        return 1
    if reason is not None:
        print(f"gpulse sim-fault: the agent rejected the fault: {reason}", file=sys.stderr)
        return 2
    print(f"{path.with_suffix('.applied')}: applied by the agent")
    return 0
