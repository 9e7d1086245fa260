"""The `gpulse` command and its subcommands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from runtime import __version__, logs
from runtime.configfile import ConfigError
from runtime.lifecycle import run_service, run_until_signalled


def _cmd_agent(args: argparse.Namespace) -> int:
    from agent import config as agent_config
    from agent.main import run
    from agent.sources.gpu import BackendUnavailable

    config = agent_config.load(args.config)
    logs.configure(config.log_level)
    try:
        run_service(lambda lc: run(config, lc.stop, lifecycle=lc, reload_config=lambda: agent_config.load(args.config)))
    except BackendUnavailable as exc:
        print(f"gpulse agent: {exc}", file=sys.stderr)
        return 3
    return 0


def _cmd_collector(args: argparse.Namespace) -> int:
    from collector import config as collector_config
    from collector.app import run_collector

    config = collector_config.load(args.config)
    logs.configure(config.log_level)
    run_service(lambda lc: run_collector(config, lc.stop, lc, args.config))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gpulse.demo import DemoFault, default_state_dir, run_demo

    logs.configure(args.log_level)
    state_dir = args.state_dir or default_state_dir()

    async def main(stop: asyncio.Event) -> None:
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        fault = DemoFault(after=args.fault_after, duration=args.fault_duration)
        rules = tuple(str(r.resolve()) for r in args.rules)
        await run_demo(stop, state_dir=state_dir, http_port=args.http_port, hosts=args.hosts, fault=fault, rules=rules)

    run_until_signalled(main)
    return 0


def _cmd_pki(args: argparse.Namespace) -> int:
    from collector.trust import pki

    if args.pki_command == "revoke":
        if args.agent is None and args.collector is None and args.serial is None and not args.refresh:
            print("gpulse pki revoke: give --agent HOST, --collector NAME, --serial N or --refresh", file=sys.stderr)
            return 2
        role, name = ("collector", args.collector) if args.collector else ("agent", args.agent)
        serial = int(args.serial, 0) if args.serial else None
        crl, revoked = pki.revoke(args.dir, name=name, serial=serial, role=role, days=args.days)
        what = f"serial {revoked:x} revoked" if revoked is not None else "re-signed"
        print(f"{crl}: {what}; collectors with tls.crl = {str(crl)!r} refuse it from their next check")
        return 0
    if args.pki_command == "init":
        issued = pki.init_ca(args.dir, name=args.name, days=args.days, force=args.force)
        print(f"CA certificate: {issued.cert}\nCA key:         {issued.key} (mode 0600)")
        return 0
    role, name = ("agent", args.agent) if args.agent else ("collector", args.collector)
    issued = pki.issue(args.dir, role=role, name=name, sans=args.san, days=args.days)
    print(f"{role} certificate: {issued.cert}\n{role} key:         {issued.key} (mode 0600)")
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from agent import config as agent_config
    from collector import config as collector_config
    from runtime.configfile import infer_kind

    if args.file is None:
        path, kind = Path(args.kind_or_file), ""
    elif args.kind_or_file in ("agent", "collector", "rules"):
        path, kind = args.file, args.kind_or_file
    else:
        print(
            f"gpulse check-config: unknown kind {args.kind_or_file!r}: expected agent, collector or rules",
            file=sys.stderr,
        )
        return 2
    kind = kind or infer_kind(path)
    if kind == "agent":
        agent_config.load(path)
        print(f"{path}: ok (agent config)")
        return 0
    # The detection engine (numpy) is loaded only here, for the kinds that have rules.
    from collector.detect.engine import check_rules

    if kind == "rules":
        rules = check_rules([path])
        print(f"{path}: ok ({len(rules.rules)} rules)")
        return 0
    config = collector_config.load(path)
    # The rule files it names are checked as the collector would load them at start.
    rules = check_rules(config.detect.rules)
    print(f"{path}: ok (collector config; {len(rules.rules)} rules from {', '.join(rules.sources)})")
    return 0


def _cmd_top(args: argparse.Namespace) -> int:
    from gpulse.top import run

    return run(args.url, interval=args.interval, once=args.once)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `gpulse` parser; with ``command``, only that command's module is loaded among the external ones."""
    parser = argparse.ArgumentParser(prog="gpulse", description="GPU fleet telemetry and health monitoring.")
    parser.add_argument("--version", action="version", version=f"gpulse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("agent", help="run the host agent")
    p.add_argument("--config", type=Path, default=Path("/etc/gpulse/agent.toml"))
    p.set_defaults(func=_cmd_agent)

    p = sub.add_parser("collector", help="run the collector")
    p.add_argument("--config", type=Path, default=Path("/etc/gpulse/collector.toml"))
    p.set_defaults(func=_cmd_collector)

    p = sub.add_parser("demo", help="a collector and simulated agents on this machine, no config needed")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--http-port", type=int, default=9410)
    p.add_argument("--hosts", type=int, default=4, help="simulated hosts (up to 4)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--fault-after", type=float, default=60.0, help="inject a GPU fault after this long (0: never)")
    p.add_argument("--fault-duration", type=float, default=45.0, help="how long the injected fault lasts")
    p.add_argument("--rules", type=Path, action="append", default=[], help="detection rule file (default: built-in)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("top", help="a live terminal view of the fleet, from a collector's HTTP API")
    p.add_argument("--url", default="http://127.0.0.1:9410", help="the collector's HTTP address")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--once", action="store_true", help="print one frame, without colour, and exit")
    p.set_defaults(func=_cmd_top)

    p = sub.add_parser("pki", help="certificates for agents and collectors")
    pki_sub = p.add_subparsers(dest="pki_command", required=True)
    q = pki_sub.add_parser("init", help="create a CA in DIR")
    q.add_argument("dir", type=Path)
    q.add_argument("--name", default="gpulse CA")
    q.add_argument("--days", type=int, default=3650)
    q.add_argument("--force", action="store_true", help="replace an existing CA")
    q = pki_sub.add_parser("issue", help="issue an agent or collector certificate from the CA in DIR")
    q.add_argument("dir", type=Path)
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--agent", metavar="HOST", help="client certificate for this host id")
    who.add_argument("--collector", metavar="NAME", help="server certificate for this collector")
    q.add_argument("--san", action="append", default=[], help="extra DNS name or IP (repeatable)")
    q.add_argument("--days", type=int, default=365)
    p.set_defaults(func=_cmd_pki)

    q = pki_sub.add_parser("revoke", help="revoke a certificate: add it to DIR/crl.pem, signed by the CA")
    q.add_argument("dir", type=Path)
    who = q.add_mutually_exclusive_group()
    who.add_argument("--agent", metavar="HOST", help="the agent certificate issued for this host id")
    who.add_argument("--collector", metavar="NAME", help="the collector certificate issued under this name")
    who.add_argument("--serial", help="serial number (hex with 0x, or decimal) of a certificate issued elsewhere")
    q.add_argument("--refresh", action="store_true", help="only re-sign the list with a new next-update date")
    q.add_argument("--days", type=int, default=30, help="days until the list's next update")

    p = sub.add_parser(
        "check-config",
        help="validate an agent or collector config (with the rule files it names) or a rule file; "
        "a config's kind is inferred when not given",
    )
    p.add_argument("kind_or_file", metavar="[agent|collector|rules] FILE")
    p.add_argument("file", type=Path, nargs="?")
    p.set_defaults(func=_cmd_check_config)

    for registrar in _registrars(command):
        module, _, function = registrar.partition(":")
        getattr(importlib.import_module(module), function)(sub)
    return parser


# Commands that register themselves from their own modules ("module:function"). Each module is
# imported only when its command runs (or for the full help), so a long-running `gpulse agent` does
# not keep in memory the code of commands it never runs.
EXTERNAL_COMMANDS = {
    "gpu-smoke": "gpulse.gpusmoke:add_parser",
    "sim-fault": "agent.sources.sim_faults:add_parser",
    "record": "gpulse.trace_commands:add_commands",
    "backtest": "gpulse.trace_commands:add_commands",
    "silence": "gpulse.silences:add_parser",
    "state": "gpulse.state_commands:add_parser",
}
BUILT_IN_COMMANDS = ("agent", "collector", "demo", "top", "pki", "check-config")


def _registrars(command: str | None) -> list[str]:
    """What must register its commands to parse ``command``: nothing for a built-in one, all when unknown."""
    if command in BUILT_IN_COMMANDS:
        return []
    if command in EXTERNAL_COMMANDS:
        return [EXTERNAL_COMMANDS[command]]
    return list(dict.fromkeys(EXTERNAL_COMMANDS.values()))


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: its first word that is not an option (the top level has no valued options)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_of(argv)).parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"gpulse {args.command}: config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gpulse {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from collector.trust.pki import PkiError

        if isinstance(exc, PkiError):
            print(f"gpulse pki: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
