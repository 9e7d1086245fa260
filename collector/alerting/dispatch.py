"""The dispatcher: one group per (route, group-by labels), each with its own timers.

A new group waits ``group_wait`` to gather its siblings (critical alerts need not wait); after its
first notification it is looked at every ``group_interval``; an alert that raises the group's
severity makes it notify at once. Whether a flush actually notifies is the notification log's call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.alerting.alert import Alert, AlertState, Severity
from collector.alerting.routing import Route


@dataclass(frozen=True, slots=True)
class GroupFlush:
    """A group's alerts at the moment its timer fired."""

    route: Route
    group_key: str
    alerts: tuple[Alert, ...]


@dataclass
class _Group:
    route: Route
    key: str
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)
    flushed: bool = False
    flushed_severity: int = -1

    def top_severity(self) -> int:
        return max((int(a.severity) for a in self.alerts.values() if a.state is AlertState.FIRING), default=-1)


class Dispatcher:
    def __init__(self, root: Route, resend_every: Mapping[str, float] | None = None) -> None:
        """``resend_every``: receivers that must hear of firing alerts at least this often (Alertmanager)."""
        self.root = root
        self._groups: dict[str, _Group] = {}
        self._resend_every = dict(resend_every or {})

    def _interval(self, route: Route) -> float:
        return min(route.timing.group_interval, self._resend_every.get(route.receiver, route.timing.group_interval))

    def insert(self, alert: Alert, now: float) -> None:
        """Put a firing or resolved alert into the group of every route it matches."""
        for route in self.root.match(alert.labels):
            key = route.group_key(alert.labels)
            group = self._groups.get(key)
            critical_now = (
                alert.state is AlertState.FIRING
                and alert.severity is Severity.CRITICAL
                and route.timing.critical_bypasses_group_wait
            )
            if group is None:
                group = _Group(route, key, now if critical_now else now + route.timing.group_wait)
                self._groups[key] = group
            elif not group.flushed and critical_now:
                group.next_flush = min(group.next_flush, now)
            elif group.flushed and alert.state is AlertState.FIRING and int(alert.severity) > group.flushed_severity:
                group.next_flush = min(group.next_flush, now)  # escalation pages now, not at group_interval
            group.alerts[alert.fingerprint] = alert

    def tick(self, now: float) -> list[GroupFlush]:
        """The groups whose timer has fired; resolved alerts leave their group once flushed."""
        flushes = []
        for key, group in list(self._groups.items()):
            if group.next_flush > now:
                continue
            flushes.append(GroupFlush(group.route, key, tuple(group.alerts.values())))
            group.flushed = True
            group.flushed_severity = group.top_severity()
            group.alerts = {fp: a for fp, a in group.alerts.items() if a.state is not AlertState.RESOLVED}
            group.next_flush = now + self._interval(group.route)
            if not group.alerts:
                del self._groups[key]
        return flushes

    def holds(self, fingerprint: str) -> bool:
        return any(fingerprint in g.alerts for g in self._groups.values())

    def group_count(self) -> int:
        return len(self._groups)
