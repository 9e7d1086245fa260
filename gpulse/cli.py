"""The `gpulse` command and its subcommands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from gpulse.client import add_client_options
from runtime import __version__, logs
from runtime.configfile import ConfigError
from runtime.lifecycle import run_service, run_until_signalled
from runtime.private import keep_private


def _cmd_agent(args: argparse.Namespace) -> int:
    from agent import config as agent_config
    from agent.main import run
    from agent.sources.gpu import BackendUnavailable

    config = agent_config.load(args.config)
    logs.configure(config.log_level)
    keep_private(config.state_dir)
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
    keep_private(config.state_dir)
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
        _pki_audit(args.dir, "pki.revoke", f"{role} {name or ''} serial {revoked or '-'}".strip())
        print(f"{crl}: {what}; collectors with tls.crl = {str(crl)!r} refuse it from their next check")
        return 0
    if args.pki_command == "init":
        issued = pki.init_ca(args.dir, name=args.name, days=args.days, force=args.force)
        print(f"CA certificate: {issued.cert}\nCA key:         {issued.key} (mode 0600)")
        return 0
    role, name = ("agent", args.agent) if args.agent else ("collector", args.collector)
    existing = pki.issued_paths(args.dir, role=role, name=pki.check_name(name, role)).key
    if existing.exists() and not args.force:
        print(f"gpulse pki issue: {existing} already exists; refusing to replace it (use --force)", file=sys.stderr)
        return 2
    issued = pki.issue(args.dir, role=role, name=name, sans=args.san, days=args.days)
    _pki_audit(args.dir, "pki.issue", f"{role} {name}")
    print(f"{role} certificate: {issued.cert}\n{role} key:         {issued.key} (mode 0600)")
    return 0


def _pki_audit(directory: Path, action: str, what: str) -> None:
    """Issuing and revoking are recorded beside the CA, in the same hash-chained format as the collector's."""
    import getpass

    from collector.audit.log import AuditLog

    AuditLog(directory / "audit.jsonl").record(
        actor=getpass.getuser(), source="local", action=action, object=what, result="success"
    )


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
    from runtime.tlscheck import tls_problems

    if kind == "agent":
        agent = agent_config.load(path)
        if not args.no_tls and _report_tls(path, tls_problems(agent.tls, host_id=agent.host_id)):
            return 2
        print(f"{path}: ok (agent config)")
        return 0
    # The detection engine (numpy) is loaded only here, for the kinds that have rules.
    from collector.detect.engine import check_rules

    if kind == "rules":
        rules = check_rules([path])
        print(f"{path}: ok ({len(rules.rules)} rules)")
        return 0
    config = collector_config.load(path)
    if not args.no_tls and _report_tls(path, tls_problems(config.tls)):
        return 2
    # The rule files it names are checked as the collector would load them at start.
    rules = check_rules(config.detect.rules)
    print(f"{path}: ok (collector config; {len(rules.rules)} rules from {', '.join(rules.sources)})")
    return 0


def _report_tls(path: Path, problems: list[str]) -> bool:
    for problem in problems:
        print(f"gpulse check-config: {path}: TLS: {problem}", file=sys.stderr)
    return bool(problems)


def _cmd_top(args: argparse.Namespace) -> int:
    from gpulse.client import Client, ClientError
    from gpulse.top import View, run

    try:
        client = Client.from_args(args)
    except ClientError as exc:
        print(f"gpulse top: {exc}", file=sys.stderr)
        return 2
    view = View(args.sort, args.host, args.model, args.job, args.health, args.page, args.hosts)
    return run(client, view, interval=args.interval, once=args.once)


def version_text() -> str:
    """``gpulse 0.1.0 (wire protocol 1)``: what an agent and a collector must agree on is the protocol."""
    from protos.codec import PROTOCOL_VERSION

    return f"gpulse {__version__} (wire protocol {PROTOCOL_VERSION})"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `gpulse` parser; with ``command``, only that command's module is loaded among the external ones."""
    parser = argparse.ArgumentParser(prog="gpulse", description="GPU fleet telemetry and health monitoring.")
    parser.add_argument(
        "-V", "--version", action="version", version=version_text(), help="print the gpulse and wire-protocol versions"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "agent", help="run the host agent", epilog="example: gpulse agent --config /etc/gpulse/agent.toml"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/gpulse/agent.toml"),
        help="config file (default /etc/gpulse/agent.toml)",
    )
    p.set_defaults(func=_cmd_agent)

    p = sub.add_parser(
        "collector", help="run the collector", epilog="example: gpulse collector --config /etc/gpulse/collector.toml"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/gpulse/collector.toml"),
        help="config file (default /etc/gpulse/collector.toml)",
    )
    p.set_defaults(func=_cmd_collector)

    p = sub.add_parser(
        "demo",
        help="a collector and simulated agents on this machine, no config needed",
        epilog="example: gpulse demo --http-port 9500 --fault-after 30",
    )
    p.add_argument(
        "--state-dir", type=Path, default=None, help="where the demo keeps its PKI and state (default ~/.local/state)"
    )
    p.add_argument("--http-port", type=int, default=9410, help="port for /metrics and the API (default 9410)")
    p.add_argument("--hosts", type=int, default=4, help="simulated hosts (up to 4)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.add_argument("--log-level", default="warning", help="debug, info, warning or error (default warning)")
    p.add_argument("--fault-after", type=float, default=60.0, help="inject a GPU fault after this long (0: never)")
    p.add_argument("--fault-duration", type=float, default=45.0, help="how long the injected fault lasts")
    p.add_argument("--rules", type=Path, action="append", default=[], help="detection rule file (default: built-in)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "top",
        help="a live terminal view of the fleet, from a collector's HTTP API",
        description="Firing alerts first, then the GPUs (or hosts) that need a look, worst first, "
        "one page at a time to fit the terminal.",
        epilog="example: gpulse top --url http://collector-a:9410 --health unhealthy --model H100",
    )
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print one frame, without colour, and exit")
    p.add_argument("--hosts", action="store_true", help="one line per host instead of one per GPU")
    p.add_argument("--sort", choices=TOP_SORT_KEYS, default="health", help="order of the rows (default health)")
    p.add_argument("--host", default="", metavar="PATTERN", help="only hosts matching (glob, or a substring)")
    p.add_argument("--model", default="", metavar="PATTERN", help="only GPUs whose model matches (e.g. H100)")
    p.add_argument("--job", default="", metavar="PATTERN", help="only GPUs running a matching job (e.g. 'slurm 1234')")
    p.add_argument("--health", choices=TOP_HEALTH_FILTERS, default="", help="only GPUs of this health")
    p.add_argument("--page", type=int, default=1, help="which page of rows to show (default 1)")
    add_client_options(p)
    p.set_defaults(func=_cmd_top)

    p = sub.add_parser("pki", help="certificates for agents and collectors")
    pki_sub = p.add_subparsers(dest="pki_command", required=True)
    q = pki_sub.add_parser("init", help="create a CA in DIR", epilog="example: gpulse pki init /etc/gpulse/pki")
    q.add_argument("dir", type=Path, help="directory for ca.pem and ca-key.pem (created)")
    q.add_argument("--name", default="gpulse CA", help="the CA's common name (default 'gpulse CA')")
    q.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    q.add_argument("--force", action="store_true", help="replace an existing CA")
    q = pki_sub.add_parser(
        "issue",
        help="issue an agent or collector certificate from the CA in DIR",
        epilog="example: gpulse pki issue /etc/gpulse/pki --collector collector-1 --san collector-1.example.net",
    )
    q.add_argument("dir", type=Path, help="the CA directory made by `gpulse pki init`")
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--agent", metavar="HOST", help="client certificate for this host id")
    who.add_argument("--collector", metavar="NAME", help="server certificate for this collector")
    q.add_argument("--san", action="append", default=[], help="extra DNS name or IP (repeatable)")
    q.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    q.add_argument("--force", action="store_true", help="replace an existing certificate and key of that name")
    p.set_defaults(func=_cmd_pki)

    q = pki_sub.add_parser(
        "revoke",
        help="revoke a certificate: add it to DIR/crl.pem, signed by the CA",
        epilog="example: gpulse pki revoke /etc/gpulse/pki --agent gpu-node-017",
    )
    q.add_argument("dir", type=Path, help="the CA directory made by `gpulse pki init`")
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
        epilog="example: gpulse check-config /etc/gpulse/collector.toml\n"
        "example: gpulse check-config rules /etc/gpulse/rules.d/site.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind_or_file", metavar="[agent|collector|rules] FILE", help="the kind (optional), then the file")
    p.add_argument("file", type=Path, nargs="?", help="the file, when a kind is given first")
    p.add_argument(
        "--no-tls",
        action="store_true",
        help="skip the TLS files (by default: readable, key matches, valid now, from the CA, naming the host)",
    )
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
    "remediation": "gpulse.remediation:add_parser",
    "report": "gpulse.report:add_parser",
    "audit": "gpulse.audit:add_parser",
    "state": "gpulse.state_commands:add_parser",
}
# `gpulse top`'s choices, kept here so that building the parser does not import the view.
TOP_SORT_KEYS = ("health", "host", "temp", "power", "util", "mem")
TOP_HEALTH_FILTERS = ("ok", "warn", "fail", "lost", "unhealthy")
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
