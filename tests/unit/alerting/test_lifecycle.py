from __future__ import annotations

import math
from pathlib import Path

from collector.alert import AlertState
from collector.alerting.dispatch import Dispatcher
from collector.alerting.lifecycle import AlertLifecycle
from collector.alerting.routing import Route, Timing
from collector.alerting.state import AlertingState

from .helpers import alert


def make(tmp_path: Path, rejected: list[str] | None = None) -> tuple[AlertLifecycle, Dispatcher]:
    dispatcher = Dispatcher(Route("r", timing=Timing(0, 60, 3600)))
    lifecycle = AlertLifecycle(
        AlertingState(tmp_path / "a.db"),
        dispatcher,
        resolve_timeout=30,
        on_reject=(rejected if rejected is not None else []).append,
    )
    return lifecycle, dispatcher


def test_pending_then_firing_then_resolved(tmp_path: Path) -> None:
    lifecycle, dispatcher = make(tmp_path)
    lifecycle.push([alert(state=AlertState.PENDING, host="h")], now=1)
    assert lifecycle.counts() == {("pending", "warning"): 1}
    assert dispatcher.group_count() == 0  # pending alerts notify nobody
    lifecycle.push([alert(host="h")], now=2)
    assert lifecycle.counts() == {("firing", "warning"): 1}
    lifecycle.push([alert(state=AlertState.RESOLVED, host="h")], now=3)
    [flush] = dispatcher.tick(3)
    assert [a.state for a in flush.alerts] == [AlertState.RESOLVED]
    assert flush.alerts[0].ends_at == 3


def test_repeated_pushes_are_one_alert(tmp_path: Path) -> None:
    lifecycle, _ = make(tmp_path)
    for now in range(10):
        lifecycle.push([alert(host="h", at=0)], now=now)
    assert lifecycle.counts() == {("firing", "warning"): 1}


def test_firing_alert_not_resent_is_resolved_after_resolve_timeout(tmp_path: Path) -> None:
    lifecycle, _ = make(tmp_path)
    lifecycle.push([alert(host="h")], now=0)
    lifecycle.expire(29)
    assert lifecycle.counts() == {("firing", "warning"): 1}
    lifecycle.expire(31)
    assert lifecycle.counts() == {("resolved", "warning"): 1}


def test_state_survives_a_restart_and_goes_back_into_its_group(tmp_path: Path) -> None:
    lifecycle, _ = make(tmp_path)
    lifecycle.push([alert(host="h"), alert(host="p", state=AlertState.PENDING)], now=0)
    restarted, dispatcher = make(tmp_path)
    restarted.restore(now=100)
    assert restarted.counts() == {("firing", "warning"): 1, ("pending", "warning"): 1}
    assert len(dispatcher.tick(100)) == 1
    restarted.expire(129)  # the restart gives detection a full resolve_timeout to re-send
    assert restarted.counts()[("firing", "warning")] == 1


def test_resolved_alert_is_forgotten_once_flushed(tmp_path: Path) -> None:
    lifecycle, dispatcher = make(tmp_path)
    lifecycle.push([alert(host="h")], now=0)
    dispatcher.tick(0)
    lifecycle.push([alert(host="h", state=AlertState.RESOLVED)], now=5)
    [flush] = dispatcher.tick(60)
    lifecycle.forget_flushed([a.fingerprint for a in flush.alerts])
    assert lifecycle.counts() == {}
    restarted, _ = make(tmp_path)
    restarted.restore(now=70)
    assert restarted.counts() == {}


def test_bad_timestamps_are_refused_and_counted(tmp_path: Path) -> None:
    rejected: list[str] = []
    lifecycle, _ = make(tmp_path, rejected)
    lifecycle.push([alert(host="f", at=10_000), alert(host="n", at=math.nan), alert(host="ok", at=0)], now=0)
    assert rejected == ["future_timestamp", "bad_timestamp"]
    assert lifecycle.counts() == {("firing", "warning"): 1}


def test_resolve_of_unknown_or_pending_alert_notifies_nobody(tmp_path: Path) -> None:
    lifecycle, dispatcher = make(tmp_path)
    lifecycle.push([alert(host="x", state=AlertState.RESOLVED)], now=0)
    lifecycle.push([alert(host="p", state=AlertState.PENDING)], now=0)
    lifecycle.push([alert(host="p", state=AlertState.RESOLVED)], now=1)
    assert lifecycle.counts() == {}
    assert dispatcher.tick(100) == []


def test_enricher_runs_once_when_the_alert_starts_firing(tmp_path: Path) -> None:
    calls = []

    def enrich(a):  # type: ignore[no-untyped-def]
        calls.append(a.fingerprint)
        return a

    lifecycle = AlertLifecycle(AlertingState(tmp_path / "a.db"), Dispatcher(Route("r")), enrich=enrich)
    for now in range(3):
        lifecycle.push([alert(host="h")], now=now)
    assert len(calls) == 1


def test_a_failing_enricher_does_not_lose_the_alert(tmp_path: Path) -> None:
    def broken(a):  # type: ignore[no-untyped-def]
        raise KeyError("store changed under us")

    dispatcher = Dispatcher(Route("r", timing=Timing(0, 60, 3600)))
    lifecycle = AlertLifecycle(AlertingState(tmp_path / "a.db"), dispatcher, enrich=broken)
    lifecycle.push([alert(host="h")], now=0)
    assert len(dispatcher.tick(0)) == 1
