"""Notification as a chain of small stages: inhibit → silence → per-receiver dedup → outbox.

Retry and record happen in ``outbox.Deliverer``. The notification log entry is written in the same
transaction as the outbox row, so "already sent" and "will be sent" can never disagree after a crash:
the outbox row is the durable promise that the receiver will be told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from collector.alert import Alert, AlertState
from collector.alerting.dispatch import GroupFlush
from collector.alerting.metrics import AlertingMetrics
from collector.alerting.mute import Muter
from collector.alerting.receivers.base import Receiver
from collector.alerting.state import AlertingState, NflogEntry

log = structlog.get_logger("gpulse.alerting")


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send to one receiver for one group, and what the log will then say was sent."""

    send: tuple[Alert, ...]
    entry: NflogEntry


def unmuted(alerts: Sequence[Alert], muters: Mapping[str, Muter]) -> tuple[tuple[Alert, ...], dict[str, int]]:
    """Drop firing alerts a muter mutes (in order, first wins), counting by muter.

    Resolved alerts always pass: a page once sent always gets its resolve.
    """
    kept: list[Alert] = []
    muted: dict[str, int] = {}
    for alert in alerts:
        by = None
        if alert.state is AlertState.FIRING:
            by = next((name for name, muter in muters.items() if muter.mutes(alert.labels)), None)
        if by is None:
            kept.append(alert)
        else:
            muted[by] = muted.get(by, 0) + 1
    return tuple(kept), muted


def plan(
    entry: NflogEntry | None,
    alerts: Sequence[Alert],
    visible: Sequence[Alert],
    *,
    now: float,
    repeat_interval: float,
    per_alert: bool,
) -> Plan | None:
    """The dedup stage: notify on a new firing alert, a resolve of one sent, a severity rise, or a repeat."""
    sent = entry.firing if entry else frozenset()
    firing = [a for a in visible if a.state is AlertState.FIRING]
    resolving = [a for a in visible if a.state is AlertState.RESOLVED and a.fingerprint in sent]
    new = [a for a in firing if a.fingerprint not in sent]
    top = max((int(a.severity) for a in firing), default=-1)
    rose = entry is not None and top > entry.max_severity
    repeat = entry is not None and bool(firing) and now - entry.last_notify_at >= repeat_interval
    if not (new or resolving or rose or repeat):
        return None
    present = {a.fingerprint for a in alerts}
    keep = (sent & present) - {a.fingerprint for a in resolving} | {a.fingerprint for a in new}
    send = [*new, *resolving] if per_alert and not (rose or repeat) else [*firing, *resolving]
    return Plan(tuple(send), NflogEntry(frozenset(keep), top, now))


class Notifier:
    """Turns group flushes into durable outbox rows, one receiver at a time."""

    def __init__(
        self,
        state: AlertingState,
        receivers: Mapping[str, Receiver],
        muters: Mapping[str, Muter],
        metrics: AlertingMetrics,
    ) -> None:
        self._state = state
        self._receivers = receivers
        self._muters = muters
        self._metrics = metrics

    def process(self, flush: GroupFlush, now: float) -> int:
        """Run one flush through the stages; returns the outbox rows written."""
        receiver = self._receivers.get(flush.route.receiver)
        if receiver is None:
            log.error("route names an unknown receiver", receiver=flush.route.receiver)
            return 0
        visible, muted = unmuted(flush.alerts, self._muters)
        for by, count in muted.items():
            self._metrics.muted.labels(by).inc(count)
        repeat_interval = flush.route.timing.repeat_interval
        if receiver.resend_interval is not None:
            repeat_interval = min(repeat_interval, receiver.resend_interval)
        entry = self._state.nflog_get(receiver.name, flush.group_key)
        decided = plan(
            entry, flush.alerts, visible, now=now, repeat_interval=repeat_interval, per_alert=receiver.per_alert
        )
        if decided is None:
            return 0
        batches = (
            [(a.fingerprint, [a]) for a in decided.send]
            if receiver.per_alert
            else [(flush.group_key, list(decided.send))]
        )
        written = 0
        with self._state.transaction():
            for coalesce_key, batch in batches:
                if self._state.enqueue(receiver.name, coalesce_key, flush.group_key, batch, now):
                    self._metrics.coalesced.labels(receiver.name).inc()
                written += 1
            self._state.nflog_put(receiver.name, flush.group_key, decided.entry)
        return written
