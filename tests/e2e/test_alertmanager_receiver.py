"""Our alerts reach a real Alertmanager through its API v2, checked through Alertmanager's own API."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.alertmanager_kit import Alertmanager, start_alertmanager
from tests.kit import Collector, Pki, Service, collector_config, metric_value, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def alertmanager(tmp: Path) -> Iterator[Alertmanager]:
    am = start_alertmanager(tmp / "alertmanager")
    yield am
    am.stop()


def start_collector_to(tmp: Path, kit: Pki, am: Alertmanager, services: list[Service]) -> Collector:
    config, grpc_port, http_port = collector_config(tmp, kit)
    with config.open("a") as fh:  # nested tables: written by hand
        fh.write(
            f"""
[alerting]
tick_interval = 0.2

[alerting.route]
receiver = "am"
group_wait = 0
group_interval = 1

[[alerting.receivers]]
name = "am"
type = "alertmanager"
url = "{am.url}"
resend_interval = 1
"""
        )
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], grpc_port=grpc_port, http_port=http_port
    )
    collector.start().wait_ready()
    services.append(collector)
    return collector


def push(collector: Collector, labels: dict[str, str], state: str) -> None:
    body = [
        {
            "labels": labels,
            "state": state,
            "starts_at": 1.7e9,
            "generator_url": "http://gpulse/rules#GpuXid",
            "annotations": {"summary": "XID 79 on GPU 2"},
        }
    ]
    request = urllib.request.Request(
        collector.url("/api/v1/alerts"), json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=5).close()


def ends_at(alert: dict[str, str]) -> datetime:
    return datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))


def test_alerts_reach_alertmanager_are_resent_while_firing_and_resolve(
    tmp: Path, test_pki: Pki, services: list[Service], alertmanager: Alertmanager
) -> None:
    collector = start_collector_to(tmp, test_pki, alertmanager, services)
    labels = {"alertname": "GpuXid", "severity": "critical", "host": "node-9", "gpu": "2", "xid": "79"}
    push(collector, labels, "firing")
    [first] = wait_for(lambda: alertmanager.alerts(filter='alertname="GpuXid"'), what="the alert in Alertmanager")
    assert first["labels"] == labels
    assert first["annotations"]["summary"] == "XID 79 on GPU 2"
    assert first["generatorURL"] == "http://gpulse/rules#GpuXid"
    assert first["startsAt"].startswith("2023-11-14T22:13:20")
    assert first["status"]["state"] == "active"
    # Re-sent while firing: each send pushes endsAt further out, so Alertmanager never times it out.
    wait_for(lambda: ends_at(alertmanager.alerts()[0]) > ends_at(first), what="a re-send with a later endsAt")
    push(collector, labels, "resolved")
    wait_for(lambda: alertmanager.alerts() == [], what="Alertmanager to see the resolve")
    sent = metric_value(collector.metrics(), "gpulse_alerting_notifications_sent_total", receiver="am")
    assert sent is not None and sent >= 3
