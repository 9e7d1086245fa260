"""State is owner-only whatever the umask, and no secret reaches a log line or an API answer."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit import (
    Collector,
    Pki,
    Service,
    collector_config,
    http_get,
    metric_value,
    push_alerts,
    start_agent,
    wait_for,
)

TOKEN = "tok-3f9a1c77e2"  # in the webhook's path, as Slack-style hooks carry it
BEARER = "bearer-5be01d"


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the children inherit it: what an operator's shell gives outside systemd
    try:
        yield
    finally:
        os.umask(old)


def loose_entries(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


def test_state_is_private_and_secrets_stay_out_of_logs_and_answers(
    tmp: Path, test_pki: Pki, services: list[Service], loose_umask: None
) -> None:
    config, grpc_port, http_port = collector_config(tmp, test_pki)
    with config.open("a") as fh:  # by hand: the kit's TOML writer has no nested tables
        fh.write(
            f"""
[alerting]
tick_interval = 0.2

[alerting.route]
receiver = "hook"
group_wait = 0
group_interval = 1

[[alerting.receivers]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hooks/{TOKEN}"
bearer_token = "{BEARER}"
"""
        )
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], grpc_port=grpc_port, http_port=http_port
    )
    collector.start().wait_ready()
    services.append(collector)
    agent = start_agent(tmp, test_pki, "node-private", [collector.target])
    services.append(agent)
    wait_for(
        lambda: (metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0) > 0,
        what="frames from the agent",
    )
    push_alerts(collector, {"alertname": "GpuLost", "severity": "critical", "host": "node-private"})
    wait_for(lambda: "notification failed, will retry" in collector.log(), what="a failed delivery logged")
    wait_for(lambda: (tmp / "agent-node-private" / "status.json").exists(), what="the agent's status file")
    for root in (tmp / "collector-state", tmp / "agent-node-private"):
        assert loose_entries(root) == []
    answers = "".join(http_get(collector.url(p)) for p in ("/api/v1/alerts", "/api/v1/silences", "/metrics"))
    for secret in (TOKEN, BEARER):
        assert secret not in collector.log()
        assert secret not in agent.log()
        assert secret not in answers
    assert "http://127.0.0.1:9/..." in collector.log()
