"""Remediation in a real collector process: the suggested action reaches PagerDuty's custom_details,
an action waits for `gpulse remediation approve`, runs the configured command, and is counted; bad
requests are refused with a reason."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.alert import fingerprint
from tests.fakes.pagerduty import FakePagerDuty
from tests.kit import ROOT, Collector, Pki, Service, collector_config, http_get, metric_value, push_alerts, wait_for


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


def gpulse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpulse.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_approve_runs_the_command_and_every_step_is_logged(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    calls = tmp / "calls.jsonl"
    script = tmp / "cordon.sh"
    script.write_text(f"#!/bin/sh\ncat >> {calls}\necho >> {calls}\necho cordoned\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    config, grpc_port, http_port = collector_config(tmp, test_pki)
    with config.open("a") as fh:
        fh.write(
            f"""
[alerting]
tick_interval = 0.2

[alerting.route]
receiver = "pd"
group_wait = 0

[[alerting.receivers]]
name = "pd"
type = "pagerduty"
url = "{pagerduty.url}"
routing_key = "0123456789abcdef0123456789abcdef"

[remediation]
mode = "approve"
tick_seconds = 0.2

[remediation.command]
path = "{script}"
timeout_seconds = 10
"""
        )
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], grpc_port=grpc_port, http_port=http_port
    )
    collector.start().wait_ready()
    services.append(collector)
    url = f"http://127.0.0.1:{collector.http_port}"
    labels = {
        "alertname": "GpuXidRebootRequired",
        "severity": "critical",
        "host": "node-1",
        "gpu": "3",
        "xid": "79",
        "action": "reboot_node",
    }
    push_alerts(collector, labels)

    trigger = wait_for(lambda: pagerduty.triggers(fingerprint(labels)), what="the page")[0]
    assert trigger["payload"]["custom_details"]["suggested_action"] == "reboot_host"
    alerts = json.loads(http_get(f"{url}/api/v1/alerts"))["alerts"]  # what webhook and Alertmanager get
    assert alerts[0]["annotations"]["suggested_action"] == "reboot_host"

    pending = wait_for(lambda: json.loads(http_get(f"{url}/api/v1/remediation"))["pending"], what="a pending action")
    assert pending[0]["host"] == "node-1" and not calls.exists()
    listed = gpulse("remediation", "list", "--url", url)
    assert pending[0]["id"] in listed.stdout and "pending" in listed.stdout

    refused = gpulse("remediation", "approve", "nosuch", "--url", url)
    assert refused.returncode == 2 and "404 no remediation action with id 'nosuch'" in refused.stderr
    approved = gpulse("remediation", "approve", pending[0]["id"], "--by", "alice", "--url", url)
    assert approved.returncode == 0, approved.stderr
    again = gpulse("remediation", "approve", pending[0]["id"], "--url", url)
    assert again.returncode == 2 and "409" in again.stderr

    wait_for(lambda: calls.exists() and calls.read_text().strip(), what="the command to run")
    call = json.loads(calls.read_text().splitlines()[0])
    assert (call["event"], call["dry_run"], call["alert"]["labels"]["host"]) == ("drain", False, "node-1")
    metrics = collector.metrics()
    assert metric_value(metrics, "gpulse_remediation_actions_total", action="drain", outcome="taken") == 1
    assert metric_value(metrics, "gpulse_remediation_approvals_total") == 1
    snap = json.loads(http_get(f"{url}/api/v1/remediation"))
    events = [(r["event"], r["actor"]) for r in snap["log"]]
    assert ("approved", "alice") in events and ("drained", "collector") in events
    command = next(r for r in snap["log"] if r["event"] == "command_drain")
    assert command["detail"]["exit_status"] == 0 and command["detail"]["stdout"] == "cordoned\n"

    assert metric_value(metrics, "gpulse_remediation_requests_refused_total", reason="unknown_action") == 1
    assert metric_value(metrics, "gpulse_remediation_requests_refused_total", reason="not_pending") == 1
    bad = urllib.request.Request(f"{url}/api/v1/remediation/reset", data=b"{nope", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused_body:
        urllib.request.urlopen(bad, timeout=10)
    assert refused_body.value.code == 400 and "body is not JSON" in refused_body.value.read().decode()
    assert metric_value(collector.metrics(), "gpulse_remediation_requests_refused_total", reason="bad_body") == 1

    reset = gpulse("remediation", "reset", "--url", url)
    assert reset.returncode == 0 and "was not tripped" in reset.stdout
