"""The ``[remediation]`` section: off by default; then dry-run, approve, or on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from collector.actions.suggest import SuggestedAction
from runtime.configfile import Section

MODES = ("off", "dry-run", "approve", "on")


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Stop all automatic actions when more than ``max_fraction`` of the hosts, or more than
    ``max_hosts`` hosts (0: no count limit), were drained within ``window`` seconds."""

    max_fraction: float = 0.10
    max_hosts: int = 0
    window: float = 3600.0


@dataclass(frozen=True, slots=True)
class SlurmConfig:
    scontrol: str = "scontrol"
    sinfo: str = "sinfo"
    conf: Path | None = None  # SLURM_CONF for scontrol and sinfo; None: Slurm's default
    node_name: str = "{host}"  # template over the alert's labels: the Slurm node of a gpulse host
    timeout: float = 30.0
    # What a drain does to the running job: "finish" (state=drain) lets it run to its end;
    # "requeue" also requeues the jobs on the node (scontrol requeue).
    running_jobs: str = "finish"


@dataclass(frozen=True, slots=True)
class CommandConfig:
    """Run ``path`` with the action (and its alert) as JSON on stdin, for a drain and for a resume."""

    path: Path
    args: tuple[str, ...] = ()
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class RemediationConfig:
    mode: str = "off"
    drain_on: frozenset[SuggestedAction] = frozenset(
        {SuggestedAction.RESET_GPU, SuggestedAction.REBOOT_HOST, SuggestedAction.INSPECT_HARDWARE}
    )
    hold: float = 600.0  # healthy this long after the incident resolves before the node is resumed
    cooldown: float = 3600.0  # no new drain of a host this soon after its last one ended
    opt_out: frozenset[str] = frozenset()  # hosts never acted on
    escalate_after: int = 2  # resets/reboots after which the same fault escalates to inspect_hardware
    escalate_window: float = 30 * 86400.0
    tick: float = 5.0
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    slurm: SlurmConfig | None = None
    command: CommandConfig | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


def parse(section: Section) -> RemediationConfig:
    mode = section.choice("mode", MODES, "off")
    names = section.get("drain_on", list, ["reset_gpu", "reboot_host", "inspect_hardware"])
    try:
        drain_on = frozenset(SuggestedAction.parse(str(n)) for n in names)
    except ValueError as exc:
        raise section.error("drain_on", str(exc)) from None
    opt_out = section.get("opt_out", list, [])
    if not all(isinstance(h, str) and h for h in opt_out):
        raise section.error("opt_out", "must be a list of host names")
    escalate_after = section.get("escalate_after", int, 2)
    if escalate_after < 1:
        raise section.error("escalate_after", f"must be at least 1, got {escalate_after}")
    b = section.section("breaker")
    max_fraction = b.get("max_fraction", float, 0.10)
    if not 0 < max_fraction <= 1:
        raise b.error("max_fraction", f"must be above 0 and at most 1, got {max_fraction}")
    max_hosts = b.get("max_hosts", int, 0)
    if max_hosts < 0:
        raise b.error("max_hosts", f"must be 0 (no limit) or more, got {max_hosts}")
    breaker = BreakerConfig(max_fraction, max_hosts, b.positive("window_seconds", 3600.0))
    b.finish()
    slurm = None
    if "slurm" in section.data:
        s = section.section("slurm")
        slurm = SlurmConfig(
            scontrol=s.get("scontrol", str, "scontrol"),
            sinfo=s.get("sinfo", str, "sinfo"),
            conf=s.get("conf", Path, Path()) if "conf" in s.data else None,
            node_name=s.get("node_name", str, "{host}"),
            timeout=s.positive("timeout_seconds", 30.0),
            running_jobs=s.choice("running_jobs", ("finish", "requeue"), "finish"),
        )
        s.finish()
    command = None
    if "command" in section.data:
        c = section.section("command")
        args = c.get("args", list, [])
        if not all(isinstance(a, str) for a in args):
            raise c.error("args", "must be a list of strings")
        command = CommandConfig(c.require("path", Path), tuple(args), c.positive("timeout_seconds", 30.0))
        c.finish()
    config = RemediationConfig(
        mode=mode,
        drain_on=drain_on,
        hold=section.get("hold_seconds", float, 600.0),
        cooldown=section.get("cooldown_seconds", float, 3600.0),
        opt_out=frozenset(opt_out),
        escalate_after=escalate_after,
        escalate_window=section.positive("escalate_window_seconds", 30 * 86400.0),
        tick=section.positive("tick_seconds", 5.0),
        breaker=breaker,
        slurm=slurm,
        command=command,
    )
    if mode in ("approve", "on") and slurm is None and command is None:
        raise section.error("mode", f"{mode!r} needs [remediation.slurm] or [remediation.command] to act with")
    if config.hold < 0 or config.cooldown < 0:
        raise section.error("hold_seconds" if config.hold < 0 else "cooldown_seconds", "must not be negative")
    section.finish()
    return config
