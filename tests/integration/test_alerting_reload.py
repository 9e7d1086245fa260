"""SIGHUP reloads ``[alerting]`` in a real collector process with an agent streaming to it: a route
moved from receiver A to receiver B takes new alerts to B, the alert A paged is neither paged again nor
handed to B and its resolve still reaches A, a bad section is refused and counted while B stays in use,
and the agent's stream stays up throughout."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.alert import fingerprint
from tests.fakes.pagerduty import FakePagerDuty
from tests.kit import (
    Collector,
    Pki,
    Service,
    alert_labels,
    collector_config,
    metric_value,
    push_alerts,
    start_agent,
    wait_for,
)

KEY_A = "a" * 32
KEY_B = "b" * 32


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


def alerting(pagerduty: FakePagerDuty, receiver: str) -> str:
    """Two PagerDuty services (routing keys A and B) and a root route to ``receiver``."""
    return f"""
[alerting]
tick_interval = 0.2

[alerting.route]
receiver = "{receiver}"
group_by = ["alertname", "host", "gpu"]
group_wait = 0
group_interval = 1

[[alerting.receivers]]
name = "pd-a"
type = "pagerduty"
url = "{pagerduty.url}"
routing_key_env = "PD_KEY_A"

[[alerting.receivers]]
name = "pd-b"
type = "pagerduty"
url = "{pagerduty.url}"
routing_key_env = "PD_KEY_B"
"""


def keys(events: list[dict[str, str]]) -> list[str]:
    return [e["routing_key"] for e in events]


def reloads(collector: Collector, result: str) -> float:
    return metric_value(collector.metrics(), "gpulse_collector_config_reloads_total", result=result) or 0.0


def test_sighup_moves_a_route_without_paging_twice_or_dropping_the_stream(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    config, grpc_port, http_port = collector_config(tmp, test_pki)
    base = config.read_text()  # written by hand below: the kit's TOML writer has no nested tables
    config.write_text(base + alerting(pagerduty, "pd-a"))
    collector = Collector(
        "collector",
        config,
        tmp / "collector.log",
        ["collector"],
        env={"PD_KEY_A": KEY_A, "PD_KEY_B": KEY_B},
        grpc_port=grpc_port,
        http_port=http_port,
    )
    services.append(collector.start().wait_ready())
    services.append(start_agent(tmp, test_pki, "gpu-rl", [collector.target]))

    def streaming() -> bool:
        text = collector.metrics()
        return (
            metric_value(text, "gpulse_collector_connected_agents") == 1
            and metric_value(text, "gpulse_host_up", host="gpu-rl") == 1
        )

    wait_for(streaming, what="the agent streaming")

    x = alert_labels("GpuXid", "node-1", "3")
    push_alerts(collector, x)
    wait_for(lambda: pagerduty.triggers(fingerprint(x)), what="x paged through A")
    assert keys(pagerduty.triggers(fingerprint(x))) == [KEY_A]

    # Route everything to B and reload.
    config.write_text(base + alerting(pagerduty, "pd-b"))
    collector.signal(signal.SIGHUP)
    wait_for(lambda: reloads(collector, "success") == 1, what="the reload")
    assert streaming()
    push_alerts(collector, x)  # detection re-sends what still fires
    y = alert_labels("GpuXid", "node-2", "0")
    push_alerts(collector, y)
    wait_for(lambda: pagerduty.triggers(fingerprint(y)), what="y paged through B")
    assert keys(pagerduty.triggers(fingerprint(y))) == [KEY_B]
    time.sleep(2.5)  # a few group_intervals: time enough for any second page of x to go out
    assert keys(pagerduty.triggers(fingerprint(x))) == [KEY_A], "the reload alone must not page x again"

    # A bad section: refused as a whole, with file, key and problem; counted; B stays in use.
    config.write_text(base + alerting(pagerduty, "pd-c"))
    collector.signal(signal.SIGHUP)
    wait_for(lambda: reloads(collector, "failure") == 1, what="the refused reload")
    refusal = f"{config}: alerting.route.receiver: no receiver named 'pd-c'"
    wait_for(lambda: refusal in collector.log(), what="the refusal in the log")
    assert collector.running and streaming()
    z = alert_labels("GpuHot", "node-3", "1")
    push_alerts(collector, z)
    wait_for(lambda: pagerduty.triggers(fingerprint(z)), what="z paged through B, still in use")
    assert keys(pagerduty.triggers(fingerprint(z))) == [KEY_B]

    # x resolves: the resolve reaches A, which opened the incident, so it closes.
    push_alerts(collector, x, state="resolved")
    wait_for(lambda: pagerduty.resolves(fingerprint(x)), what="x's resolve")
    assert keys(pagerduty.resolves(fingerprint(x))) == [KEY_A]
    assert (pagerduty.incidents[fingerprint(x)].opened, pagerduty.incidents[fingerprint(x)].open) == (1, False)
    assert pagerduty.rejected == []

    assert streaming()
    assert collector.log().count('"agent connected"') == 1, "a reload must not drop the agent's stream"
    assert reloads(collector, "success") == 1
