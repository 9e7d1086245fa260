"""Alerting in a real collector process: restarts (SIGKILL), silences through `gpulse silence`, inhibition.

Alerts go in through the collector's HTTP API (the same lifecycle detection pushes into) and out to a
PagerDuty fake that checks the Events v2 contract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.alert import fingerprint
from tests.fakes.pagerduty import FakePagerDuty
from tests.kit import (
    ROOT,
    Collector,
    Pki,
    Service,
    alert_labels,
    collector_config,
    http_get,
    metric_value,
    push_alerts,
    wait_for,
)

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


def start(
    tmp: Path,
    kit: Pki,
    pagerduty: FakePagerDuty,
    services: list[Service],
    resolve_timeout: float = 300,
    name: str = "collector",
) -> Collector:
    config, grpc_port, http_port = collector_config(tmp, kit, name=name)
    with config.open("a") as fh:  # written by hand: the kit's TOML writer has no nested tables
        fh.write(
            f"""
[alerting]
tick_interval = 0.2
resolve_timeout = {resolve_timeout}

[alerting.route]
receiver = "pd"
group_by = ["alertname", "host", "gpu"]
group_wait = 0
group_interval = 1

[[alerting.receivers]]
name = "pd"
type = "pagerduty"
url = "{pagerduty.url}"
routing_key_env = "PD_KEY"
"""
        )
    collector = Collector(
        name,
        config,
        tmp / f"{name}.log",
        ["collector"],
        env={"PD_KEY": KEY},
        grpc_port=grpc_port,
        http_port=http_port,
    )
    collector.start().wait_ready()
    services.append(collector)
    return collector


def restart(collector: Collector) -> Collector:
    collector.start().wait_ready()  # same config, ports and state directory
    return collector


def test_killed_between_trigger_and_resolve_pages_once_and_resolves(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    collector = start(tmp, test_pki, pagerduty, services)
    xid = alert_labels("GpuXid", "node-1", "3")
    push_alerts(collector, xid)
    wait_for(lambda: pagerduty.triggers(fingerprint(xid)), what="the trigger")
    collector.kill()
    restart(collector)
    push_alerts(collector, xid)  # detection re-sends what still fires
    push_alerts(collector, xid, state="resolved")
    wait_for(lambda: pagerduty.resolves(fingerprint(xid)), what="the resolve after restart")
    incident = pagerduty.incidents[fingerprint(xid)]
    assert (incident.opened, incident.triggers, incident.open) == (1, 1, False)
    assert pagerduty.rejected == []


def test_resolve_is_not_forgotten_when_the_condition_cleared_while_down(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    collector = start(tmp, test_pki, pagerduty, services, resolve_timeout=4)
    lost = alert_labels("GpuLost", "node-2", "0")
    push_alerts(collector, lost)
    wait_for(lambda: pagerduty.triggers(fingerprint(lost)), what="the trigger")
    collector.kill()
    assert pagerduty.resolves() == []
    restart(collector)  # nobody re-sends the alert: it went away while the collector was down
    wait_for(lambda: pagerduty.resolves(fingerprint(lost)), timeout=30, what="the resolve after resolve_timeout")
    assert pagerduty.incidents[fingerprint(lost)].opened == 1


def test_pending_notification_survives_a_restart_and_is_sent(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    pagerduty.fail_next(503, times=10_000)
    collector = start(tmp, test_pki, pagerduty, services)
    dbe = alert_labels("GpuDbe", "node-3", "1")
    push_alerts(collector, dbe)
    wait_for(
        lambda: metric_value(collector.metrics(), "gpulse_alerting_notifications_retried_total", receiver="pd"),
        what="a failed, retried delivery",
    )
    assert metric_value(collector.metrics(), "gpulse_alerting_outbox_depth", receiver="pd") == 1
    collector.kill()
    pagerduty.clear_failures()
    restart(collector)
    wait_for(lambda: pagerduty.triggers(fingerprint(dbe)), timeout=30, what="the trigger sent after restart")
    wait_for(lambda: metric_value(collector.metrics(), "gpulse_alerting_outbox_depth", receiver="pd") == 0)
    assert pagerduty.incidents[fingerprint(dbe)].opened == 1


def gpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpulse.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        env={**os.environ},
        check=False,
    )


def test_silence_through_the_command_line(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    collector = start(tmp, test_pki, pagerduty, services)
    url = collector.url("")
    added = gpulse(
        "silence",
        "add",
        "--url",
        url,
        "host=node-s",
        "alertname=~Gpu.*",
        "--duration",
        "1h",
        "--author",
        "ana",
        "--comment",
        "swapping the GPU",
    )
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.strip()
    listed = gpulse("silence", "list", "--url", url)
    assert silence_id in listed.stdout and "ana" in listed.stdout and "swapping the GPU" in listed.stdout
    silenced, other = alert_labels("GpuHot", "node-s", "0"), alert_labels("GpuHot", "node-t", "0")
    push_alerts(collector, silenced, other)
    wait_for(lambda: pagerduty.triggers(fingerprint(other)), what="the unsilenced alert's page")
    wait_for(lambda: metric_value(collector.metrics(), "gpulse_alerting_alerts_muted_total", by="silence"))
    assert pagerduty.triggers(fingerprint(silenced)) == []
    [shown] = [
        a for a in json.loads(http_get(collector.url("/api/v1/alerts")))["alerts"] if a["labels"]["host"] == "node-s"
    ]
    assert shown["silenced_by"] == silence_id
    expired = gpulse("silence", "expire", silence_id, "--url", url)
    assert expired.returncode == 0, expired.stderr
    wait_for(lambda: pagerduty.triggers(fingerprint(silenced)), what="the page once the silence expired")
    bad = gpulse("silence", "add", "host", "--comment", "x", "--url", url)
    assert bad.returncode == 2 and "no operator" in bad.stderr


def test_host_down_and_gpu_lost_inhibit_what_they_explain(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    collector = start(tmp, test_pki, pagerduty, services)
    down, hot_on_down_host = alert_labels("HostDown", "h1"), alert_labels("GpuHot", "h1", "0")
    lost, xid_on_lost_gpu, hot_elsewhere = (
        alert_labels("GpuLost", "h2", "1"),
        alert_labels("GpuXid", "h2", "1"),
        alert_labels("GpuHot", "h2", "2"),
    )
    push_alerts(collector, down, lost)
    wait_for(lambda: len(pagerduty.triggers()) == 2, what="the HostDown and GpuLost pages")
    push_alerts(collector, hot_on_down_host, xid_on_lost_gpu, hot_elsewhere)
    wait_for(lambda: pagerduty.triggers(fingerprint(hot_elsewhere)), what="the uninhibited alert's page")
    wait_for(
        lambda: (metric_value(collector.metrics(), "gpulse_alerting_alerts_muted_total", by="inhibition") or 0) >= 2
    )
    paged = {e["dedup_key"] for e in pagerduty.triggers()}
    assert paged == {fingerprint(down), fingerprint(lost), fingerprint(hot_elsewhere)}
    text = collector.metrics()
    assert metric_value(text, "gpulse_alerts", state="firing", severity="critical") == 5


def test_two_collectors_seeing_the_same_fault_open_one_incident(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    a = start(tmp, test_pki, pagerduty, services, name="collector-a")
    b = start(tmp, test_pki, pagerduty, services, name="collector-b")
    xid = alert_labels("GpuXid", "node-ha", "4")
    push_alerts(a, xid)
    push_alerts(b, xid)
    wait_for(lambda: len(pagerduty.triggers()) == 2, what="a trigger from each collector")
    assert {e["dedup_key"] for e in pagerduty.triggers()} == {fingerprint(xid)}
    push_alerts(a, xid, state="resolved")
    wait_for(lambda: pagerduty.resolves(fingerprint(xid)), what="the resolve")
    incident = pagerduty.incidents[fingerprint(xid)]
    assert (incident.opened, incident.open) == (1, False)
