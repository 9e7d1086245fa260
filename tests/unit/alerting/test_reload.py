"""Reloading ``[alerting]``: the dispatcher's switch of routing tree (pure), and the service's swap of
receivers, timings and inhibit rules over the same state, outbox and silences."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.alert import Alert, AlertState
from collector.alerting.config import AlertingConfig
from collector.alerting.dispatch import Dispatcher
from collector.alerting.inhibit import InhibitRule
from collector.alerting.matchers import parse_all
from collector.alerting.outbox import RetryPolicy
from collector.alerting.ratelimit import RateLimit
from collector.alerting.receivers import LogConfig, RetryableError
from collector.alerting.routing import Route, Timing
from collector.alerting.service import AlertingService
from collector.config import ConfigError
from collector.config import parse as parse_collector

from .helpers import alert

TIMING = Timing(group_wait=0, group_interval=10, repeat_interval=3600)


def route(receiver: str, *children: Route, timing: Timing = TIMING) -> Route:
    return Route(receiver, group_by=("alertname", "host"), timing=timing, routes=children)


def nobody_told(receiver: str, group_key: str) -> frozenset[str]:
    return frozenset()


def told(*pairs: tuple[str, Alert]) -> Any:
    """A notification log in which ``receiver`` was told of these alerts, in whatever group holds them."""
    sent = {(receiver, a.fingerprint) for receiver, a in pairs}

    def lookup(receiver: str, group_key: str) -> frozenset[str]:
        return frozenset(fp for r, fp in sent if r == receiver)

    return lookup


# -- the dispatcher ---------------------------------------------------------------------------------


def test_unchanged_tree_keeps_groups_and_their_timers() -> None:
    d = Dispatcher(route("a"))
    x = alert(host="h")
    d.insert(x, now=0)
    [first] = d.tick(0)
    d.reload(route("a"), {}, told(("a", x)), now=1)
    assert d.tick(5) == []  # still waiting out group_interval: the reload did not restart the group
    [again] = d.tick(10)
    assert again.group_key == first.group_key and again.route.receiver == "a"


def test_a_paged_alert_stays_with_its_receiver_and_its_resolve_goes_there() -> None:
    d = Dispatcher(route("a"))
    x = alert(host="h")
    d.insert(x, now=0)
    d.tick(0)
    d.reload(route("b"), {}, told(("a", x)), now=1)
    assert d.receivers() == {"a"}  # b is not handed x: it would page it a second time
    new = alert(host="other")
    d.insert(new, now=2)
    flushes = {f.route.receiver: f for f in d.tick(2)}
    assert [a.fingerprint for a in flushes["b"].alerts] == [new.fingerprint]
    d.insert(x.resolved(20), now=20)
    resolves = [f for f in d.tick(20) if any(a.state is AlertState.RESOLVED for a in f.alerts)]
    assert {f.route.receiver for f in resolves} == {"a", "b"}  # b's group will find it never told b
    [to_a] = [f for f in resolves if f.route.receiver == "a"]
    assert to_a.alerts == (x.resolved(20),)
    assert not d.holds(x.fingerprint)
    assert d.receivers() == {"b"}


def test_an_alert_nobody_was_told_of_yet_follows_the_new_tree() -> None:
    d = Dispatcher(route("a", timing=Timing(30, 60, 3600, critical_bypasses_group_wait=False)))
    waiting = alert(host="h")
    d.insert(waiting, now=0)
    d.reload(route("b"), {}, nobody_told, now=1)
    [flush] = d.tick(1)
    assert flush.route.receiver == "b" and flush.alerts == (waiting,)


def test_a_child_route_changing_receiver_leaves_its_siblings_alone() -> None:
    warn = Route("slack", parse_all(["severity=warning"]), ("alertname", "host"), TIMING, path="root.0")
    d = Dispatcher(Route("pd", group_by=("alertname", "host"), timing=TIMING, routes=(warn,)))
    crit, low = alert(severity="critical", host="h"), alert(host="h2")
    d.insert(crit, now=0)
    d.insert(low, now=0)
    assert {f.route.receiver for f in d.tick(0)} == {"pd", "slack"}
    moved = Route("mail", warn.matchers, warn.group_by, TIMING, path="root.0")
    d.reload(
        Route("pd", group_by=("alertname", "host"), timing=TIMING, routes=(moved,)),
        {},
        told(("pd", crit), ("slack", low)),
        now=1,
    )
    assert d.receivers() == {"pd", "slack"}  # slack keeps the warning it was told of; mail hears of new ones
    assert d.tick(5) == []


def test_an_alert_paged_by_one_route_and_waiting_on_another_is_not_handed_to_a_third() -> None:
    def tree(first: str) -> Route:
        slow = Timing(30, 60, 3600, critical_bypasses_group_wait=False)
        return route(
            "a",
            Route(first, parse_all(["host=h"]), ("host",), TIMING, continue_=True, path="root.0"),
            Route("c", parse_all(["host=h"]), ("host",), slow, path="root.1"),
        )

    d = Dispatcher(tree("a"))
    x = alert(host="h")
    d.insert(x, now=0)
    assert [f.route.receiver for f in d.tick(0)] == ["a"]  # c's group is still waiting
    d.reload(tree("b"), {}, told(("a", x)), now=1)
    flushed = {f.route.receiver for f in d.tick(30)}
    assert "c" in flushed and "b" not in flushed  # c still hears of x; b never does
    assert d.receivers() == {"a", "c"}


# -- the service ------------------------------------------------------------------------------------


class Recorder:
    """A receiver that keeps what it was sent; ``down`` makes it fail like an outage."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.per_alert = True
        self.resend_interval: float | None = None
        self.rate_limit: RateLimit | None = None
        self.rate_key = name
        self.down = False
        self.sent: list[tuple[str, str]] = []  # (state, alertname)

    async def notify(self, alerts: Sequence[Alert], group_key: str) -> None:
        if self.down:
            raise RetryableError(f"{self.name} is down")
        self.sent.extend((a.state.value, a.name) for a in alerts)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def config(receiver: str, *others: str, rules: tuple[InhibitRule, ...] = ()) -> AlertingConfig:
    names = (receiver, *others)
    return AlertingConfig(
        receivers=tuple(LogConfig(n) for n in names), route=route(receiver), inhibit_rules=rules, resolve_timeout=86400
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[AlertingService]:
    svc = AlertingService(
        config("a", "b"),
        tmp_path,
        CollectorRegistry(),
        clock=Clock(),
        retry=RetryPolicy(initial=1, max=1, jitter=0),
        receivers={"a": Recorder("a"), "b": Recorder("b")},
    )
    await svc.start(background=False)
    yield svc
    await svc.shutdown()


async def run(svc: AlertingService, seconds: float = 2.0) -> None:
    clock = svc.clock
    assert isinstance(clock, Clock)
    end = clock.now + seconds
    while clock.now < end:
        await svc.step(clock.now)
        clock.now += 0.5


def sent(svc: AlertingService, name: str) -> list[tuple[str, str]]:
    receiver = svc.receivers[name]
    assert isinstance(receiver, Recorder)
    return receiver.sent


def fire(svc: AlertingService, a: Alert) -> None:
    svc.push([a], svc.clock())


async def test_reload_routes_new_alerts_anew_and_pages_nothing_twice(service: AlertingService) -> None:
    a, b = service.receivers["a"], service.receivers["b"]
    x = alert("GpuXid", "critical", host="h1")
    fire(service, x)
    await run(service)
    assert sent(service, "a") == [("firing", "GpuXid")]
    service.reload(config("b", "a"), receivers={"a": a, "b": b})
    fire(service, x)  # detection re-sends what still fires
    await run(service, 3700)  # past repeat_interval: a's own reminder, never a page to b
    assert sent(service, "a") == [("firing", "GpuXid")] * 2
    assert sent(service, "b") == []
    y = alert("GpuHot", "critical", host="h2")
    fire(service, y)
    await run(service)
    assert sent(service, "b") == [("firing", "GpuHot")]
    fire(service, x.resolved(service.clock()))
    await run(service, 12)  # a resolve goes out at the group's next look, group_interval
    assert sent(service, "a")[-1] == ("resolved", "GpuXid")  # the resolve reaches the receiver that paged
    assert ("resolved", "GpuXid") not in sent(service, "b")


async def test_removed_receiver_still_delivers_what_is_queued_then_goes(service: AlertingService) -> None:
    a = service.receivers["a"]
    assert isinstance(a, Recorder)
    a.down = True
    x = alert("GpuXid", "critical", host="h1")
    fire(service, x)
    await run(service)
    assert service.state.outbox_depth() == {"a": 1}
    b = Recorder("b")
    service.reload(config("b"), receivers={"b": b})
    assert service.retired == {"a"} and "a" in service.receivers  # it owes a page and its resolve
    a.down = False
    await run(service)
    assert a.sent == [("firing", "GpuXid")] and service.state.outbox_depth() == {}
    fire(service, x.resolved(service.clock()))
    await run(service, 20)
    assert a.sent[-1] == ("resolved", "GpuXid") and b.sent == []
    assert service.retired == set() and "a" not in service.receivers


async def test_silences_and_firing_state_survive_and_new_inhibit_rules_apply(service: AlertingService) -> None:
    silence = service.silencer.add(["host=quiet"], ends_at=service.clock() + 3600, created_by="ana", comment="swap")
    fire(service, alert("GpuHot", "critical", host="quiet"))
    await run(service)
    rule = InhibitRule(parse_all(["alertname=HostDown"]), parse_all(["alertname=GpuHot"]), ("host",))
    service.reload(config("a", "b", rules=(rule,)), receivers=dict(service.receivers))
    assert [s.id for s in service.silencer.list()] == [silence.id]
    assert service.lifecycle.counts() == {("firing", "critical"): 1}
    fire(service, alert("HostDown", "critical", host="h3"))
    fire(service, alert("GpuHot", "critical", host="h3"))
    fire(service, alert("GpuHot", "critical", host="quiet", gpu="1"))
    await run(service)
    assert sent(service, "a") == [("firing", "HostDown")]  # one inhibited by the new rule, one silenced


async def test_a_route_to_an_unknown_receiver_is_refused_and_the_running_config_stays(
    service: AlertingService,
) -> None:
    running = service.config
    bad = AlertingConfig(receivers=(LogConfig("a"),), route=route("a", Route("nope", path="root.0")))
    with pytest.raises(ValueError, match="'nope'"):
        service.reload(bad)
    assert service.config is running and set(service.receivers) == {"a", "b"}
    fire(service, alert("GpuXid", "critical", host="h1"))
    await run(service)
    assert sent(service, "a") == [("firing", "GpuXid")]


# -- the config file --------------------------------------------------------------------------------

BASE: dict[str, Any] = {"tls": {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}}
RECEIVERS = [{"name": "a", "type": "log"}, {"name": "b", "type": "webhook", "url": "http://127.0.0.1:1/hook"}]


@pytest.mark.parametrize(
    ("alerting", "key", "problem"),
    [
        ({"receivers": RECEIVERS, "route": {"receiver": "c"}}, "alerting.route.receiver", "no receiver named 'c'"),
        (
            {"receivers": RECEIVERS, "route": {"receiver": "a", "group_wait": -1}},
            "alerting.route.group_wait",
            "must not be negative",
        ),
        (
            {
                "receivers": [RECEIVERS[0], {"name": "b", "type": "webhook", "url": "ftp://x"}],
                "route": {"receiver": "a"},
            },
            "url",
            "expected an http(s) URL",
        ),
    ],
)
def test_a_bad_alerting_section_names_file_key_and_problem(alerting: dict[str, Any], key: str, problem: str) -> None:
    path = Path("/etc/gpulse/collector.toml")
    with pytest.raises(ConfigError) as caught:
        parse_collector(path, {**BASE, "alerting": alerting})
    assert caught.value.path == str(path) and caught.value.key.endswith(key) and problem in caught.value.problem
