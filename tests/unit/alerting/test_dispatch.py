from __future__ import annotations

from collector.alert import AlertState
from collector.alerting.dispatch import Dispatcher
from collector.alerting.routing import Route, Timing

from .helpers import alert

TIMING = Timing(group_wait=10, group_interval=60, repeat_interval=3600)


def dispatcher(bypass: bool = True) -> Dispatcher:
    return Dispatcher(Route("r", timing=Timing(10, 60, 3600, bypass)))


def test_group_waits_then_flushes_siblings_together() -> None:
    d = dispatcher()
    d.insert(alert(host="h", gpu="0"), now=0)
    d.insert(alert(host="h", gpu="1"), now=5)
    assert d.tick(9.9) == []
    [flush] = d.tick(10)
    assert {a.labels["gpu"] for a in flush.alerts} == {"0", "1"}
    assert d.tick(30) == []  # next look only after group_interval
    assert len(d.tick(70)) == 1


def test_critical_bypasses_group_wait() -> None:
    d = dispatcher()
    d.insert(alert(severity="critical", host="h"), now=0)
    assert len(d.tick(0)) == 1


def test_critical_waits_when_bypass_is_off() -> None:
    d = dispatcher(bypass=False)
    d.insert(alert(severity="critical", host="h"), now=0)
    assert d.tick(0) == []
    assert len(d.tick(10)) == 1


def test_severity_rise_flushes_at_once_instead_of_at_group_interval() -> None:
    d = dispatcher()
    d.insert(alert(name="Xid", severity="warning", host="h", gpu="0"), now=0)
    d.tick(10)
    d.insert(alert(name="Xid", severity="warning", host="h", gpu="1"), now=20)
    assert d.tick(20) == []  # same severity: waits for group_interval
    d.insert(alert(name="Xid", severity="critical", host="h", gpu="2"), now=21)
    [flush] = d.tick(21)
    assert {a.labels["severity"] for a in flush.alerts} == {"warning", "critical"}


def test_resolved_alerts_leave_after_their_flush_and_empty_groups_go() -> None:
    d = dispatcher()
    firing = alert(host="h")
    d.insert(firing, now=0)
    d.tick(10)
    d.insert(firing.resolved(50), now=50)
    assert d.holds(firing.fingerprint)
    [flush] = d.tick(70)
    assert flush.alerts[0].state is AlertState.RESOLVED
    assert not d.holds(firing.fingerprint)
    assert d.group_count() == 0


def test_one_group_per_group_by_key() -> None:
    d = dispatcher()
    d.insert(alert(host="a"), now=0)
    d.insert(alert(host="b"), now=0)
    assert d.group_count() == 2


def test_a_receiver_that_needs_resends_is_flushed_at_its_pace() -> None:
    d = Dispatcher(Route("am", timing=Timing(0, 300, 3600)), resend_every={"am": 60})
    d.insert(alert(host="h"), now=0)
    d.tick(0)
    assert d.tick(59) == []
    assert len(d.tick(60)) == 1  # not 300: Alertmanager would time the alert out first
