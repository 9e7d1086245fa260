"""The remediation service's safety: modes, breaker, cooldown, opt-out, approvals, idempotence."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.actions.config import BreakerConfig, CommandConfig, RemediationConfig
from collector.actions.service import RemediationService
from collector.actions.state import RemediationState
from collector.alert import Alert, AlertState
from runtime.configfile import ConfigError, Section


def alert(host: str, action: str = "reboot_node") -> Alert:
    return Alert(
        {"alertname": "GpuXidRebootRequired", "severity": "critical", "host": host, "gpu": "3", "action": action},
        AlertState.FIRING,
        100.0,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    tmp: Path, firing: list[Alert], clock: Clock, hosts: int = 100, **config: Any
) -> tuple[RemediationService, CollectorRegistry]:
    registry = CollectorRegistry()
    service = RemediationService(
        RemediationConfig(**config),
        RemediationState(tmp / "remediation.sqlite3"),
        registry,
        firing=lambda: firing,
        host_count=lambda: hosts,
        clock=clock,
        collector_id="c1",
    )
    return service, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def script(tmp: Path, body: str) -> Path:
    path = tmp / "act.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def step(service: RemediationService, clock: Clock) -> None:
    asyncio.run(service.step(clock()))


def test_off_by_default_does_nothing(tmp_path: Path) -> None:
    clock = Clock()
    service, _ = make(tmp_path, [alert("n1")], clock)
    step(service, clock)
    assert service.snapshot()["open"] == [] and service.snapshot()["mode"] == "off"


def test_dry_run_would_drain_once_then_would_resume_after_the_hold(tmp_path: Path) -> None:
    clock = Clock()
    firing = [alert("n1"), alert("n2", action="restart_app")]
    service, registry = make(tmp_path, firing, clock, mode="dry-run", hold=60.0)
    step(service, clock)
    step(service, clock)  # a second look is the same action, not a second one
    snap = service.snapshot()
    assert [(a["host"], a["state"]) for a in snap["open"]] == [("n1", "dry_run")]  # restart_app: no drain
    assert snap["open"][0]["reason"].startswith("gpulse: GpuXidRebootRequired gpu 3 ")
    assert value(registry, "gpulse_remediation_actions_total", action="drain", outcome="dry_run") == 1
    firing.clear()
    step(service, clock)  # healthy from now
    clock.now += 30
    step(service, clock)
    assert service.snapshot()["open"]  # still inside the hold
    clock.now += 31
    step(service, clock)
    assert service.snapshot()["open"] == []
    assert [r["event"] for r in service.snapshot()["log"]] == ["would_drain", "would_resume"]


def test_restart_neither_repeats_nor_forgets(tmp_path: Path) -> None:
    clock = Clock()
    firing = [alert("n1")]
    service, _ = make(tmp_path, firing, clock, mode="dry-run")
    step(service, clock)
    service.state.close()
    again, registry = make(tmp_path, firing, clock, mode="dry-run")
    step(again, clock)
    assert len(again.snapshot()["open"]) == 1
    assert value(registry, "gpulse_remediation_actions_total", action="drain", outcome="dry_run") == 0
    assert [r["event"] for r in again.snapshot()["log"]] == ["would_drain"]


def test_breaker_trips_past_the_share_and_stays_tripped_until_reset(tmp_path: Path) -> None:
    clock = Clock()
    firing = [alert(f"n{i}") for i in range(5)]
    service, registry = make(tmp_path, firing, clock, hosts=20, mode="dry-run")  # 10% of 20: 2 hosts
    step(service, clock)
    assert len(service.snapshot()["open"]) == 2
    snap = service.snapshot()
    assert snap["breaker"]["tripped"] and "limit 2 of 20 hosts" in snap["breaker"]["reason"]
    assert value(registry, "gpulse_remediation_actions_total", action="drain", outcome="blocked") == 3
    assert value(registry, "gpulse_remediation_breaker_tripped") == 1
    clock.now += 10 * 3600  # the window has long passed, but a tripped breaker waits for a human
    step(service, clock)
    assert len(service.snapshot()["open"]) == 2
    assert service.reset_breaker("alice")
    step(service, clock)
    assert len(service.snapshot()["open"]) == 4  # two more, then it trips again
    assert any(r["event"] == "breaker_reset" and r["actor"] == "alice" for r in service.snapshot()["log"])


def test_count_limit(tmp_path: Path) -> None:
    clock = Clock()
    service, _ = make(
        tmp_path,
        [alert(f"n{i}") for i in range(5)],
        clock,
        hosts=1000,
        mode="dry-run",
        breaker=BreakerConfig(max_fraction=0.5, max_hosts=3),
    )
    step(service, clock)
    assert len(service.snapshot()["open"]) == 3


def test_opt_out_and_cooldown(tmp_path: Path) -> None:
    clock = Clock()
    firing = [alert("n1"), alert("n2")]
    service, registry = make(
        tmp_path, firing, clock, mode="dry-run", opt_out=frozenset({"n2"}), hold=0.0, cooldown=600.0
    )
    step(service, clock)
    assert [a["host"] for a in service.snapshot()["open"]] == ["n1"]
    assert value(registry, "gpulse_remediation_skips_total", reason="opt_out") == 1
    firing[:] = []
    step(service, clock)
    clock.now += 1
    step(service, clock)  # resumed (hold 0)
    firing[:] = [alert("n1")]
    clock.now += 60
    step(service, clock)
    assert service.snapshot()["open"] == []
    assert value(registry, "gpulse_remediation_skips_total", reason="cooldown") == 1
    clock.now += 600
    step(service, clock)
    assert [a["host"] for a in service.snapshot()["open"]] == ["n1"]


def test_approval_mode_waits_for_approve_then_runs_the_command(tmp_path: Path) -> None:
    clock = Clock()
    out = tmp_path / "calls.jsonl"
    command = CommandConfig(script(tmp_path, f"cat >> {out}; echo >> {out}; echo done\n"), timeout=10)
    service, registry = make(tmp_path, [alert("n1")], clock, mode="approve", command=command)
    step(service, clock)
    pending = service.snapshot()["pending"]
    assert len(pending) == 1 and not out.exists()
    with pytest.raises(KeyError):
        service.approve("nope", "bob")
    service.approve(pending[0]["id"], "bob")
    with pytest.raises(ValueError, match="not pending"):
        service.approve(pending[0]["id"], "bob")
    step(service, clock)
    call = json.loads(out.read_text().splitlines()[0])
    assert call["event"] == "drain" and call["dry_run"] is False
    assert call["alert"]["labels"]["host"] == "n1" and call["action"]["id"] == pending[0]["id"]
    assert service.snapshot()["open"][0]["state"] == "drained"
    events = [(r["event"], r["actor"]) for r in service.snapshot()["log"]]
    assert events[:2] == [("awaiting_approval", "c1"), ("approved", "bob")]
    assert ("command_drain", "c1") in events and ("drained", "c1") in events
    assert value(registry, "gpulse_remediation_approvals_total") == 1


def test_a_failing_or_hanging_command_is_a_counted_failure(tmp_path: Path) -> None:
    clock = Clock()
    command = CommandConfig(script(tmp_path, "echo nope >&2; exit 3\n"), timeout=10)
    service, registry = make(tmp_path, [alert("n1")], clock, mode="on", command=command)
    step(service, clock)
    assert service.snapshot()["open"] == []
    assert "exit status 3: nope" in service.snapshot()["recent"][0]["note"]
    assert value(registry, "gpulse_remediation_actions_total", action="drain", outcome="failed") == 1
    step(service, clock)  # the cooldown keeps it from retrying every step
    assert value(registry, "gpulse_remediation_actions_total", action="drain", outcome="failed") == 1

    hang = CommandConfig(script(tmp_path, "sleep 30\n"), timeout=0.5)
    other, _ = make(tmp_path / "b", [alert("n1")], clock, mode="on", command=hang)
    step(other, clock)
    assert "timed out" in other.snapshot()["recent"][0]["note"]


def test_config_refuses_bad_values(tmp_path: Path) -> None:
    from collector.actions.config import parse

    def section(data: dict[str, object]) -> Section:
        return Section(tmp_path / "c.toml", "remediation", data)

    assert parse(section({})).mode == "off"
    with pytest.raises(ConfigError, match=r"remediation\.mode: 'on' needs"):
        parse(section({"mode": "on"}))
    with pytest.raises(ConfigError, match=r"remediation\.drain_on: unknown suggested action 'nuke'"):
        parse(section({"drain_on": ["nuke"]}))
    with pytest.raises(ConfigError, match=r"remediation\.breaker.max_fraction"):
        parse(section({"breaker": {"max_fraction": 2}}))
    with pytest.raises(ConfigError, match=r"remediation\.bogus: unknown key"):
        parse(section({"bogus": 1}))


def test_breaker_rule() -> None:
    from collector.actions.breaker import limit, trips

    default = BreakerConfig()
    assert [limit(default, n) for n in (0, 4, 10, 19, 100)] == [1, 1, 1, 1, 10]
    assert trips(default, 100, 9) == ""
    assert trips(default, 100, 10) == "11 hosts drained within 3600s (limit 10 of 100 hosts)"
    assert limit(BreakerConfig(max_fraction=0.5, max_hosts=3), 1000) == 3


def test_every_action_log_record_reaches_the_audit_hook(tmp_path: Path) -> None:
    heard: list[tuple[str, str, str]] = []
    state = RemediationState(tmp_path / "r.sqlite", on_record=lambda r: heard.append((r.event, r.host, r.actor)))
    state.record(1.0, "approved", "node-a", "alice", {"id": "x"})
    state.record(2.0, "drained", "node-a", "", {"outcome": "ok"})
    assert heard == [("approved", "node-a", "alice"), ("drained", "node-a", "")]
    assert [r.event for r in state.log()] == ["approved", "drained"]
