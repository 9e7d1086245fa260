"""The dispatcher: one group per (route, group-by labels), each with its own timers.

A new group waits ``group_wait`` to gather its siblings (critical alerts need not wait); after its
first notification it is looked at every ``group_interval``; an alert that raises the group's
severity makes it notify at once. Whether a flush actually notifies is the notification log's call.

A reload swaps the routing tree without forgetting who was told what: see ``Dispatcher.reload``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from collector.alert import Alert, AlertState, Severity
from collector.alerting.routing import Route

# A group is one receiver's view of one group key: after a reload that moves a route to another
# receiver, the old receiver's group (holding what it paged) and the new one's share a key.
GroupId = tuple[str, str]  # (receiver, group key)

# What a receiver was told is firing in a group (the notification log), asked of at reload.
Told = Callable[[str, str], frozenset[str]]


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
        self._groups: dict[GroupId, _Group] = {}
        self._resend_every = dict(resend_every or {})
        # Alerts a group keeps from before a reload although the new tree routes them elsewhere: their
        # resolve must still reach that group's receiver, which paged them.
        self._pinned: dict[str, set[GroupId]] = {}

    def _interval(self, route: Route) -> float:
        return min(route.timing.group_interval, self._resend_every.get(route.receiver, route.timing.group_interval))

    def _targets(self, alert: Alert) -> dict[GroupId, Route]:
        return {(route.receiver, route.group_key(alert.labels)): route for route in self.root.match(alert.labels)}

    def insert(self, alert: Alert, now: float) -> None:
        """Put a firing or resolved alert into the group of every route it matches.

        A resolve also goes to every group that kept the alert through a reload.
        """
        targets = self._targets(alert)
        if alert.state is AlertState.RESOLVED:
            for gid in self._pinned.get(alert.fingerprint, ()):
                if gid in self._groups:
                    targets.setdefault(gid, self._groups[gid].route)
        for gid, route in targets.items():
            group = self._groups.get(gid)
            critical_now = (
                alert.state is AlertState.FIRING
                and alert.severity is Severity.CRITICAL
                and route.timing.critical_bypasses_group_wait
            )
            if group is None:
                group = _Group(route, gid[1], now if critical_now else now + route.timing.group_wait)
                self._groups[gid] = group
            elif not group.flushed and critical_now:
                group.next_flush = min(group.next_flush, now)
            elif group.flushed and alert.state is AlertState.FIRING and int(alert.severity) > group.flushed_severity:
                group.next_flush = min(group.next_flush, now)  # escalation pages now, not at group_interval
            group.alerts[alert.fingerprint] = alert

    def tick(self, now: float) -> list[GroupFlush]:
        """The groups whose timer has fired; resolved alerts leave their group once flushed."""
        flushes = []
        for gid, group in list(self._groups.items()):
            if group.next_flush > now:
                continue
            flushes.append(GroupFlush(group.route, group.key, tuple(group.alerts.values())))
            group.flushed = True
            group.flushed_severity = group.top_severity()
            for fp, a in list(group.alerts.items()):
                if a.state is AlertState.RESOLVED:
                    del group.alerts[fp]
                    self._unpin(fp, gid)
            group.next_flush = now + self._interval(group.route)
            if not group.alerts:
                del self._groups[gid]
        return flushes

    def reload(self, root: Route, resend_every: Mapping[str, float], told: Told, now: float) -> None:
        """Switch to a new routing tree without paging anyone twice for the switch itself.

        An alert a receiver was told fires (``told``: the notification log) stays in that receiver's
        group until it resolves, so its resolve (and repeats) reach the receiver that paged it, and the
        new tree's receiver is not paged for it again. An alert nobody was told of yet (waiting out
        ``group_wait``, muted so far, or a resolve nobody needs) is routed afresh. A group whose route is
        still there (same path, receiver and ``group_by``) keeps its timers and takes the new timings.
        """
        old = self._groups
        sent = {gid: told(*gid) for gid in old}
        notified = frozenset().union(*sent.values())
        self.root = root
        self._resend_every = dict(resend_every)
        self._groups = {}
        self._pinned = {}
        current = {(r.path, r.receiver, r.group_by): r for r in root.walk()}
        loose: dict[str, Alert] = {}
        for gid, group in old.items():
            same = current.get((group.route.path, group.route.receiver, group.route.group_by))
            kept: dict[str, Alert] = {}
            for fp, a in group.alerts.items():
                if fp in sent[gid] or (fp in notified and same is not None):
                    # Told here; or told elsewhere and still on its way here by a route that is unchanged.
                    kept[fp] = a
                elif fp not in notified:
                    loose[fp] = a
            if not kept and same is None:
                continue
            group.route = same or group.route
            group.alerts = kept
            self._groups[gid] = group
            for fp, a in kept.items():
                if gid not in self._targets(a):
                    self._pinned.setdefault(fp, set()).add(gid)
        for alert in loose.values():
            self.insert(alert, now)
        for gid in [gid for gid, group in self._groups.items() if not group.alerts]:
            del self._groups[gid]

    def _unpin(self, fingerprint: str, gid: GroupId) -> None:
        pins = self._pinned.get(fingerprint)
        if pins is not None:
            pins.discard(gid)
            if not pins:
                del self._pinned[fingerprint]

    def holds(self, fingerprint: str) -> bool:
        return any(fingerprint in g.alerts for g in self._groups.values())

    def group_count(self) -> int:
        return len(self._groups)

    def receivers(self) -> set[str]:
        """The receivers some group will notify (after a reload, possibly ones no longer configured)."""
        return {receiver for receiver, _ in self._groups}
