"""The PagerDuty receiver against a contract-checking fake over real HTTP: retries, 400s, the rate limit."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.alert import Alert, AlertState
from collector.alerting.config import AlertingConfig
from collector.alerting.matchers import parse_all
from collector.alerting.outbox import RetryPolicy
from collector.alerting.receivers import PagerDutyConfig
from collector.alerting.routing import Route, Timing
from collector.alerting.service import AlertingService
from tests.fakes.pagerduty import FakePagerDuty
from tests.kit import metric_value

KEY = "k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def gpu_alert(host: str = "node-1", gpu: str = "0", severity: str = "critical", name: str = "GpuXid") -> Alert:
    return Alert({"alertname": name, "severity": severity, "host": host, "gpu": gpu}, AlertState.FIRING, 1.7e9)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pagerduty(clock: Clock) -> Iterator[FakePagerDuty]:
    fake = FakePagerDuty(clock=clock).start()
    yield fake
    fake.stop()


@pytest.fixture
async def service(tmp_path: Path, pagerduty: FakePagerDuty, clock: Clock) -> AsyncIterator[AlertingService]:
    config = AlertingConfig(
        receivers=(PagerDutyConfig("pd", routing_key=KEY, url=pagerduty.url, timeout=5),),
        route=Route("pd", group_by=("alertname", "host", "gpu"), timing=Timing(0, 1, 3600)),
    )
    svc = AlertingService(
        config, tmp_path, CollectorRegistry(), clock=clock, retry=RetryPolicy(initial=1, max=8, jitter=0)
    )
    await svc.start(background=False)
    yield svc
    await svc.shutdown()


def metric(svc: AlertingService, name: str, **labels: str) -> float:
    from prometheus_client import generate_latest

    return metric_value(generate_latest(svc.metrics.registry).decode(), name, **labels) or 0.0


async def advance(svc: AlertingService, seconds: float, step: float = 0.5) -> None:
    clock = svc.clock
    assert isinstance(clock, Clock)
    end = clock.now + seconds
    while clock.now < end:
        await svc.step(clock.now)
        clock.now += step


async def test_trigger_then_resolve_one_incident(service: AlertingService, pagerduty: FakePagerDuty) -> None:
    a = gpu_alert()
    for _ in range(3):  # detection re-sends on every evaluation
        service.push([a], service.clock())
        await advance(service, 2)
    assert len(pagerduty.triggers(a.fingerprint)) == 1
    service.push([a.resolved(service.clock())], service.clock())
    await advance(service, 2)
    incident = pagerduty.incidents[a.fingerprint]
    assert (incident.opened, incident.open, incident.resolves) == (1, False, 1)
    assert pagerduty.rejected == []
    assert metric(service, "gpulse_alerting_notifications_sent_total", receiver="pd") == 2


async def test_429_and_5xx_are_retried_with_backoff(service: AlertingService, pagerduty: FakePagerDuty) -> None:
    pagerduty.fail_next(429)
    pagerduty.fail_next(500)
    pagerduty.fail_next(503)
    a = gpu_alert()
    service.push([a], service.clock())
    await advance(service, 0.5)
    assert pagerduty.triggers() == [] and [s for s, _ in pagerduty.rejected] == [429]
    await advance(service, 1.5)  # 1 s backoff (Retry-After also said 1)
    assert [s for s, _ in pagerduty.rejected] == [429, 500]
    await advance(service, 1.0)  # the second backoff is 2 s: not yet
    assert len(pagerduty.rejected) == 2
    await advance(service, 8)
    assert [s for s, _ in pagerduty.rejected] == [429, 500, 503]
    assert len(pagerduty.triggers(a.fingerprint)) == 1
    assert metric(service, "gpulse_alerting_notifications_retried_total", receiver="pd") == 3
    assert metric(service, "gpulse_alerting_outbox_depth", receiver="pd") == 0


async def test_400_is_logged_with_reason_and_dropped(
    service: AlertingService, pagerduty: FakePagerDuty, capsys: pytest.CaptureFixture[str]
) -> None:
    pagerduty.fail_next(400)
    service.push([gpu_alert()], service.clock())
    await advance(service, 30)
    assert pagerduty.triggers() == []
    assert metric(service, "gpulse_alerting_notifications_failed_total", receiver="pd", reason="rejected") == 1
    assert metric(service, "gpulse_alerting_outbox_depth", receiver="pd") == 0
    assert "Event object is invalid" in capsys.readouterr().out


async def test_rate_limit_120_per_minute_coalesces_and_drops_nothing(
    service: AlertingService, pagerduty: FakePagerDuty
) -> None:
    storm = [gpu_alert(host=f"node-{i}") for i in range(150)]
    service.push(storm, service.clock())
    await advance(service, 5)
    assert len(pagerduty.triggers()) == 120
    assert metric(service, "gpulse_alerting_outbox_depth", receiver="pd") == 30
    # While the 30 wait, 10 of them resolve: the resolve replaces the waiting trigger (coalesced).
    now = service.clock()
    service.push([a.resolved(now) for a in storm[140:]], now)
    await advance(service, 70)
    assert pagerduty.rate_violations == 0
    triggered = {e["dedup_key"] for e in pagerduty.triggers()}
    resolved = {e["dedup_key"] for e in pagerduty.resolves()}
    assert triggered == {a.fingerprint for a in storm[:140]}
    assert resolved == {a.fingerprint for a in storm[140:]}  # nothing dropped: every alert's last state went out
    assert metric(service, "gpulse_alerting_notifications_coalesced_total", receiver="pd") == 10
    assert metric(service, "gpulse_alerting_outbox_depth", receiver="pd") == 0


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial=1, max=10, jitter=0.2)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 8)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert all(d <= 12 for d in delays) and delays[-1] >= 8


async def test_routes_pick_routing_keys_and_each_key_has_its_own_budget(
    tmp_path: Path, pagerduty: FakePagerDuty, clock: Clock
) -> None:
    infra, ml = "i" * 32, "m" * 32
    config = AlertingConfig(
        receivers=(
            PagerDutyConfig("pd-infra", routing_key=infra, url=pagerduty.url),
            PagerDutyConfig("pd-ml", routing_key=ml, url=pagerduty.url),
        ),
        route=Route(
            "pd-infra",
            group_by=("alertname", "host", "gpu"),
            timing=Timing(0, 1, 3600),
            routes=(Route("pd-ml", parse_all(["team=ml"]), ("alertname", "host", "gpu"), Timing(0, 1, 3600)),),
        ),
    )
    svc = AlertingService(config, tmp_path, CollectorRegistry(), clock=clock)
    await svc.start(background=False)
    try:
        infra_alerts = [gpu_alert(host=f"infra-{i}") for i in range(130)]
        ml_alerts = [
            Alert({**gpu_alert(host=f"ml-{i}").labels, "team": "ml"}, AlertState.FIRING, 1.7e9) for i in range(130)
        ]
        svc.push(infra_alerts + ml_alerts, clock())
        await advance(svc, 3)
        keys = [e["routing_key"] for e in pagerduty.triggers()]
        assert keys.count(infra) == 120 and keys.count(ml) == 120
        by_key = {e["dedup_key"]: e["routing_key"] for e in pagerduty.triggers()}
        assert {by_key[a.fingerprint] for a in ml_alerts if a.fingerprint in by_key} == {ml}
        await advance(svc, 62)
        assert len(pagerduty.triggers()) == 260 and pagerduty.rate_violations == 0
    finally:
        await svc.shutdown()
