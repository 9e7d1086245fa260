"""The dedup stage (notification log) and the mute stage, and the outbox rows they produce."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.alert import Alert, AlertState
from collector.alerting.dispatch import GroupFlush
from collector.alerting.metrics import AlertingMetrics
from collector.alerting.notify import Notifier, plan, unmuted
from collector.alerting.ratelimit import RateLimit
from collector.alerting.routing import Route, Timing
from collector.alerting.state import AlertingState, NflogEntry

from .helpers import alert


def fps(alerts: Sequence[Alert]) -> set[str]:
    return {a.fingerprint for a in alerts}


class Recorder:
    def __init__(self, name: str, per_alert: bool, resend_interval: float | None = None) -> None:
        self.name = name
        self.per_alert = per_alert
        self.resend_interval = resend_interval
        self.rate_limit: RateLimit | None = None
        self.rate_key = name

    async def notify(self, alerts: Sequence[Alert], group_key: str) -> None:
        pass


class MuteHost:
    def __init__(self, host: str) -> None:
        self.host = host

    def mutes(self, labels: Mapping[str, str]) -> bool:
        return labels.get("host") == self.host


def test_first_notification_sends_everything_firing() -> None:
    a, b = alert(host="h", gpu="0"), alert(host="h", gpu="1")
    decided = plan(None, [a, b], [a, b], now=10, repeat_interval=3600, per_alert=True)
    assert decided is not None
    assert {x.fingerprint for x in decided.send} == {a.fingerprint, b.fingerprint}
    assert decided.entry.firing == {a.fingerprint, b.fingerprint}


def test_nothing_new_means_no_notification_until_repeat_interval() -> None:
    a = alert(host="h")
    entry = NflogEntry(frozenset({a.fingerprint}), 1, 10)
    assert plan(entry, [a], [a], now=100, repeat_interval=3600, per_alert=True) is None
    again = plan(entry, [a], [a], now=3610, repeat_interval=3600, per_alert=True)
    assert again is not None and again.send == (a,)


def test_only_the_new_alert_goes_to_a_per_alert_receiver() -> None:
    a, b = alert(host="h", gpu="0"), alert(host="h", gpu="1")
    entry = NflogEntry(frozenset({a.fingerprint}), 1, 10)
    decided = plan(entry, [a, b], [a, b], now=20, repeat_interval=3600, per_alert=True)
    assert decided is not None and decided.send == (b,)
    grouped = plan(entry, [a, b], [a, b], now=20, repeat_interval=3600, per_alert=False)
    assert grouped is not None and fps(grouped.send) == fps([a, b])  # a group receiver gets the whole group


def test_resolve_is_sent_only_for_what_was_sent_firing() -> None:
    sent, never = alert(host="h", gpu="0"), alert(host="h", gpu="1")
    entry = NflogEntry(frozenset({sent.fingerprint}), 1, 10)
    resolved = [sent.resolved(50), never.resolved(50)]
    decided = plan(entry, resolved, resolved, now=60, repeat_interval=3600, per_alert=True)
    assert decided is not None
    assert [a.fingerprint for a in decided.send] == [sent.fingerprint]
    assert decided.entry.firing == frozenset()


def test_severity_rise_pages_again() -> None:
    warn = alert(severity="warning", host="h", gpu="0")
    crit = alert(severity="critical", host="h", gpu="1")
    entry = NflogEntry(frozenset({warn.fingerprint, crit.fingerprint}), 1, 10)
    # Both were sent, but the critical one was muted at the time; now it shows and the group escalates.
    decided = plan(entry, [warn, crit], [warn, crit], now=20, repeat_interval=3600, per_alert=True)
    assert decided is not None and fps(decided.send) == fps([warn, crit])
    assert decided.entry.max_severity == 2


def test_unmuted_keeps_resolves_and_counts_by_muter() -> None:
    firing = alert(host="bad")
    resolved = alert(host="bad", gpu="1").resolved(5)
    ok = alert(host="good")
    kept, muted = unmuted([firing, resolved, ok], {"silence": MuteHost("bad")})
    assert kept == (resolved, ok)
    assert muted == {"silence": 1}


def test_notifier_writes_outbox_and_log_together_and_coalesces(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    metrics = AlertingMetrics(CollectorRegistry())
    pd, hook = Recorder("pd", per_alert=True), Recorder("hook", per_alert=False)
    notifier = Notifier(state, {"pd": pd, "hook": hook}, {}, metrics)
    a, b = alert(host="h", gpu="0"), alert(host="h", gpu="1")
    route = Route("pd", timing=Timing(0, 1, 3600))
    assert notifier.process(GroupFlush(route, "g", (a, b)), now=1) == 2  # one row per alert
    assert notifier.process(GroupFlush(route, "g", (a, b)), now=2) == 0  # nothing changed: deduplicated
    assert state.nflog_get("pd", "g") == NflogEntry(frozenset({a.fingerprint, b.fingerprint}), 1, 1)
    # The resolve of a not-yet-delivered trigger replaces it: newer state wins, nothing piles up.
    assert notifier.process(GroupFlush(route, "g", (a.resolved(3), b)), now=3) == 1
    rows = {item.coalesce_key: item for item in state.due(10)}
    assert rows[a.fingerprint].alerts[0].state is AlertState.RESOLVED
    assert metrics.coalesced.labels("pd")._value.get() == 1
    assert notifier.process(GroupFlush(Route("hook"), "g2", (a, b)), now=4) == 1  # one row per group
    assert state.outbox_depth() == {"pd": 2, "hook": 1}


def test_route_to_an_unknown_receiver_is_logged_not_fatal(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    notifier = Notifier(state, {}, {}, AlertingMetrics(CollectorRegistry()))
    assert notifier.process(GroupFlush(Route("gone"), "g", (alert(),)), now=1) == 0


async def test_log_receiver_writes_one_line_per_change(tmp_path: Path) -> None:
    import structlog

    from collector.alerting.receivers.log import LogConfig, LogReceiver

    state = AlertingState(tmp_path / "a.db")
    metrics = AlertingMetrics(CollectorRegistry())
    receiver = LogReceiver(LogConfig("log"))
    notifier = Notifier(state, {"log": receiver}, {}, metrics)
    a, b = alert(host="h", gpu="0"), alert(host="h", gpu="1")
    route = Route("log", timing=Timing(0, 1, 3600))
    notifier.process(GroupFlush(route, "g", (a,)), now=1)
    notifier.process(GroupFlush(route, "g", (a, b)), now=2)
    notifier.process(GroupFlush(route, "g", (a.resolved(3), b)), now=3)
    with structlog.testing.capture_logs() as logged:
        for item in state.due(now=10):
            await receiver.notify(item.alerts, item.group_key)
    lines = sorted((e["event"], e["gpu"]) for e in logged)
    assert lines == [("ALERT FIRING", "1"), ("ALERT RESOLVED", "0")]  # a's trigger was replaced by its resolve
