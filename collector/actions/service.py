"""Remediation run by the collector: from firing alerts to drains, and from healthy hosts to resumes.

Each step reads the firing alerts, and for every host with an alert whose suggested action is in
``drain_on`` opens at most one action (kept in SQLite): dry-run, pending approval, or a drain through
Slurm and/or the configured command. A host whose alerts have all cleared and stayed clear for
``hold`` seconds is resumed, but a drain that is no longer ours is left alone. Safety checks, in order:
per-host opt-out, silences, per-host cooldown, the circuit breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import string
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from collector.actions import state as st
from collector.actions.breaker import trips
from collector.actions.command import run_command
from collector.actions.config import RemediationConfig
from collector.actions.metrics import RemediationMetrics
from collector.actions.slurm import Slurm, SlurmError, drain_reason
from collector.actions.state import Action, RemediationState
from collector.actions.suggest import ANNOTATION, SuggestedAction, suggest
from collector.alert import Alert

log = structlog.get_logger("gpulse.remediation")

STATE_FILE = "remediation.sqlite3"
Clock = Callable[[], float]


def _action_of(alert: Alert) -> SuggestedAction:
    try:
        return SuggestedAction.parse(alert.annotations[ANNOTATION])
    except (KeyError, ValueError):
        return suggest(alert)


def _evidence(alert: Alert) -> str:
    labels = alert.labels
    parts = [f"{k} {labels[k]}" for k in ("xid", "uuid") if labels.get(k)]
    parts.append(f"suggests {_action_of(alert).value}")
    return " ".join(parts)


class RemediationService:
    def __init__(
        self,
        config: RemediationConfig,
        state: RemediationState,
        registry: CollectorRegistry,
        *,
        firing: Callable[[], Sequence[Alert]],
        host_count: Callable[[], int],
        muted: Callable[[Mapping[str, str]], bool] = lambda labels: False,
        collector_id: str = "gpulse",
        clock: Clock = time.time,
    ) -> None:
        self.config = config
        self.state = state
        self.metrics = RemediationMetrics(registry)
        self._firing = firing
        self._host_count = host_count
        self._muted = muted
        self.collector_id = collector_id
        self.clock = clock
        self.slurm = Slurm(config.slurm) if config.slurm is not None else None
        self._noted: set[tuple[str, str, str]] = set()  # (host, fingerprint, reason) counted once
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = False
        self._refresh_gauges()

    # -- what operators call --------------------------------------------------------------------------
    def approve(self, action_id: str, by: str) -> Action:
        """Approve a pending action; it runs at the next step. KeyError if unknown, ValueError if not pending."""
        action = self.state.get(action_id)
        if action is None:
            raise KeyError(action_id)
        if action.state != st.PENDING:
            raise ValueError(f"action {action_id} is {action.state}, not pending")
        now = self.clock()
        with self.state.transaction():
            action = self.state.update(action, state=st.APPROVED, updated_at=now, note=f"approved by {by}")
            self.state.record(now, "approved", action.host, by, {"action": action.id, "node": action.node})
        self.metrics.approvals.inc()
        self._refresh_gauges()
        self._wake.set()
        return action

    def reset_breaker(self, by: str) -> bool:
        """Close a tripped breaker; True if it was tripped."""
        now = self.clock()
        with self.state.transaction():
            was = self.state.reset_breaker()
            if was:
                self.state.record(now, "breaker_reset", "", by, {})
        self._noted = {n for n in self._noted if n[2] != "breaker"}
        self._refresh_gauges()
        self._wake.set()
        return was

    def snapshot(self) -> dict[str, Any]:
        """For the API and `gpulse top`: mode, breaker, open and recent actions, the log's tail."""
        breaker = self.state.breaker()
        return {
            "mode": self.config.mode,
            "breaker": {
                "tripped": breaker is not None,
                "tripped_at": breaker[0] if breaker else None,
                "reason": breaker[1] if breaker else "",
            },
            "pending": [a.to_dict() for a in self.state.open_actions() if a.state == st.PENDING],
            "open": [a.to_dict() for a in self.state.open_actions()],
            "recent": [a.to_dict() for a in self.state.recent(50)],
            "log": [r.to_dict() for r in self.state.log(100)],
        }

    # -- the step -------------------------------------------------------------------------------------
    async def step(self, now: float) -> None:
        if not self.config.enabled:
            return
        wanted: dict[str, list[Alert]] = defaultdict(list)
        for alert in sorted(self._firing(), key=lambda a: (a.starts_at, a.fingerprint)):
            host = alert.labels.get("host", "")
            if not host or _action_of(alert) not in self.config.drain_on:
                continue
            if self._muted(alert.labels):
                self._skip(host, alert, "silenced")
                continue
            wanted[host].append(alert)
        open_by_host = {a.host: a for a in self.state.open_actions()}
        for host, alerts in wanted.items():
            action = open_by_host.get(host)
            if action is None:
                await self._open(host, alerts[0], now)
            elif action.healthy_since is not None:
                self.state.update(action, healthy_since=None, updated_at=now)  # the fault is back: hold again
            if action is not None and action.state == st.APPROVED:
                await self._drain(action, alerts[0], now)
        for host, action in open_by_host.items():
            if host not in wanted:
                await self._healthy(action, now)
        self._refresh_gauges()

    def _skip(self, host: str, alert: Alert, reason: str, *, outcome: str = "skipped") -> None:
        key = (host, alert.fingerprint, reason)
        if key in self._noted:
            return
        self._noted.add(key)
        self.metrics.actions.labels("drain", outcome).inc()
        if outcome == "skipped":
            self.metrics.skips.labels(reason).inc()
        now = self.clock()
        self.state.record(now, f"drain_{outcome}", host, self.collector_id, {"reason": reason, "alert": alert.name})
        log.warning(f"remediation {outcome}", host=host, alertname=alert.name, reason=reason)

    def _breaker_allows(self, host: str, alert: Alert, now: float) -> bool:
        tripped = self.state.breaker()
        if tripped is not None:
            self._skip(host, alert, "breaker", outcome="blocked")
            return False
        b = self.config.breaker
        why = trips(b, self._host_count(), self.state.drains_since(now - b.window))
        if why:
            reason = f"draining {host} would make {why}"
            self.state.trip(now, reason)
            self.state.record(now, "breaker_tripped", host, self.collector_id, {"reason": reason})
            log.error("remediation circuit breaker tripped", reason=reason)
            self._skip(host, alert, "breaker", outcome="blocked")
            return False
        return True

    async def _open(self, host: str, alert: Alert, now: float) -> None:
        if host in self.config.opt_out:
            self._skip(host, alert, "opt_out")
            return
        last = self.state.last_closed_at(host)
        if last is not None and now - last < self.config.cooldown:
            self._skip(host, alert, "cooldown")
            return
        if self.config.mode != "approve" and not self._breaker_allows(host, alert, now):
            return
        action_id = uuid.uuid4().hex[:8]
        gpu = alert.labels.get("gpu", "")
        node = string.Formatter().vformat(
            self.config.slurm.node_name if self.config.slurm else "{host}", (), defaultdict(str, alert.labels)
        )
        action = Action(
            id=action_id,
            host=host,
            node=node,
            fingerprint=alert.fingerprint,
            alertname=alert.name,
            gpu=gpu,
            reason=drain_reason(alert.name, gpu, _evidence(alert), action_id),
            state=st.PENDING,
            created_at=now,
            updated_at=now,
        )
        if self.config.mode == "dry-run":
            with self.state.transaction():
                action = replace_state(action, st.DRY_RUN, now, drained_at=now, note="dry-run: would drain")
                self.state.save(action)
                self.state.record(now, "would_drain", host, self.collector_id, _detail(action))
            self.metrics.actions.labels("drain", "dry_run").inc()
            log.warning("remediation: would drain", host=host, node=node, reason=action.reason, action=action.id)
            await self._command("drain", action, alert, dry_run=True)
            return
        if self.config.mode == "approve":
            with self.state.transaction():
                self.state.save(action)
                self.state.record(now, "awaiting_approval", host, self.collector_id, _detail(action))
            self.metrics.actions.labels("drain", "pending").inc()
            log.warning(
                "remediation: drain awaits approval",
                host=host,
                node=node,
                action=action.id,
                approve=f"gpulse remediation approve {action.id}",
            )
            return
        self.state.save(action)
        await self._drain(action, alert, now)

    async def _drain(self, action: Action, alert: Alert, now: float) -> None:
        if action.state == st.APPROVED and not self._breaker_allows(action.host, alert, now):
            return
        if self.slurm is not None:
            try:
                before = await self.slurm.state(action.node)
                if before.drained:
                    who = "another gpulse collector" if before.ours else "an operator"
                    reason = "already_drained" if before.ours else "operator_drain"
                    self._watch(action, now, f"already drained by {who}: {before.reason}", reason)
                    return
                await self.slurm.drain(action.node, action.reason)
                after = await self.slurm.state(action.node)
            except SlurmError as exc:
                self._fail(action, "drain", now, str(exc))
                return
            if action.id not in after.reason:
                # Two collectors drained at once: the reason written last names the one that holds the node.
                self._watch(action, now, f"drained by another collector: {after.reason}", "already_drained")
                return
        result = await self._command("drain", action, alert, dry_run=False)
        if result is not None and not result.ok:
            self._fail(action, "drain", now, f"command {result.describe()}")
            return
        with self.state.transaction():
            action = replace_state(action, st.DRAINED, now, drained_at=now, note="drained")
            self.state.save(action)
            self.state.record(now, "drained", action.host, self.collector_id, _detail(action))
        self.metrics.actions.labels("drain", "taken").inc()
        log.warning("remediation: drained", host=action.host, node=action.node, reason=action.reason)

    def _watch(self, action: Action, now: float, note: str, reason: str) -> None:
        with self.state.transaction():
            action = replace_state(action, st.WATCHING, now, note=note)
            self.state.save(action)
            self.state.record(now, "drain_skipped", action.host, self.collector_id, {**_detail(action), "why": note})
        self.metrics.actions.labels("drain", "skipped").inc()
        self.metrics.skips.labels(reason).inc()
        log.warning("remediation: drain skipped", host=action.host, why=note)

    def _fail(self, action: Action, kind: str, now: float, error: str) -> None:
        with self.state.transaction():
            action = replace_state(action, st.FAILED, now, note=f"{kind} failed: {error}")
            self.state.save(action)
            self.state.record(
                now, f"{kind}_failed", action.host, self.collector_id, {**_detail(action), "error": error}
            )
        self.metrics.actions.labels(kind, "failed").inc()
        log.error(f"remediation: {kind} failed", host=action.host, node=action.node, error=error)

    async def _healthy(self, action: Action, now: float) -> None:
        if action.state in (st.PENDING, st.APPROVED):
            with self.state.transaction():
                self.state.save(replace_state(action, st.EXPIRED, now, note="the alert resolved before approval"))
                self.state.record(now, "expired", action.host, self.collector_id, _detail(action))
            return
        if action.healthy_since is None:
            self.state.update(action, healthy_since=now, updated_at=now)
            return
        if now - action.healthy_since < self.config.hold:
            return
        if action.state == st.WATCHING:
            with self.state.transaction():
                self.state.save(replace_state(action, st.RELEASED, now, note="healthy; the drain was not ours"))
                self.state.record(now, "released", action.host, self.collector_id, _detail(action))
            return
        if action.state == st.DRY_RUN:
            with self.state.transaction():
                self.state.save(replace_state(action, st.RESUMED, now, note="dry-run: would resume"))
                self.state.record(now, "would_resume", action.host, self.collector_id, _detail(action))
            self.metrics.actions.labels("resume", "dry_run").inc()
            log.warning("remediation: would resume", host=action.host, node=action.node, action=action.id)
            await self._command("resume", action, None, dry_run=True)
            return
        await self._resume(action, now)

    async def _resume(self, action: Action, now: float) -> None:
        if self.slurm is not None:
            try:
                node = await self.slurm.state(action.node)
                if node.drained and action.id not in node.reason:
                    # An operator (or another tool) drained it for its own reason since: theirs now.
                    with self.state.transaction():
                        self.state.save(
                            replace_state(action, st.RELEASED, now, note=f"drain reason now {node.reason!r}")
                        )
                        self.state.record(
                            now,
                            "resume_skipped",
                            action.host,
                            self.collector_id,
                            {**_detail(action), "why": f"reason is {node.reason!r}"},
                        )
                    self.metrics.actions.labels("resume", "skipped").inc()
                    self.metrics.skips.labels("operator_drain").inc()
                    log.warning(
                        "remediation: not resuming, the drain is no longer ours", host=action.host, reason=node.reason
                    )
                    return
                if node.drained:
                    await self.slurm.resume(action.node)
            except SlurmError as exc:
                self._fail(action, "resume", now, str(exc))
                return
        result = await self._command("resume", action, None, dry_run=False)
        if result is not None and not result.ok:
            self._fail(action, "resume", now, f"command {result.describe()}")
            return
        with self.state.transaction():
            self.state.save(replace_state(action, st.RESUMED, now, note="resumed"))
            self.state.record(now, "resumed", action.host, self.collector_id, _detail(action))
        self.metrics.actions.labels("resume", "taken").inc()
        log.warning("remediation: resumed", host=action.host, node=action.node)

    async def _command(self, event: str, action: Action, alert: Alert | None, *, dry_run: bool) -> Any:
        if self.config.command is None:
            return None
        payload = {
            "event": event,
            "dry_run": dry_run,
            "collector_id": self.collector_id,
            "action": action.to_dict(),
            "alert": alert.to_dict() if alert is not None else None,
        }
        result = await run_command(self.config.command, payload)
        self.state.record(
            self.clock(),
            f"command_{event}",
            action.host,
            self.collector_id,
            {
                "action": action.id,
                "dry_run": dry_run,
                "exit_status": result.exit_status,
                "timed_out": result.timed_out,
                "stdout": result.stdout,
                "stderr": result.stderr,
            },
        )
        return result

    def _refresh_gauges(self) -> None:
        self.metrics.breaker_tripped.set(1 if self.state.breaker() else 0)
        counts: dict[str, int] = defaultdict(int)
        for action in self.state.open_actions():
            counts[action.state] += 1
        for name in ("pending", "approved", "dry_run", "drained", "watching"):
            self.metrics.open_actions.labels(name).set(counts.get(name, 0))

    # -- the loop -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.enabled:
            self._task = asyncio.create_task(self._run(), name="remediation")

    async def _run(self) -> None:
        while not self._stopped:
            try:
                await self.step(self.clock())
            except Exception:  # keep going; what was done is in the database
                log.exception("remediation step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.tick)
            self._wake.clear()

    async def shutdown(self) -> None:
        """Stop the loop and close the database. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=60)
        self.state.close()


def replace_state(action: Action, state: str, now: float, **changes: Any) -> Action:
    return replace(action, state=state, updated_at=now, **changes)


def _detail(action: Action) -> dict[str, Any]:
    return {
        "action": action.id,
        "node": action.node,
        "alert": action.alertname,
        "gpu": action.gpu,
        "reason": action.reason,
        "state": action.state,
    }
