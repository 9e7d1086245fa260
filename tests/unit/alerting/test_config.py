from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector.alerting.config import parse
from collector.alerting.receivers import AlertmanagerConfig, LogConfig, PagerDutyConfig
from runtime.configfile import ConfigError, Section

KEY = "a" * 32


def load(data: dict[str, Any], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse(Section(Path("collector.toml"), "alerting", data), env or {})


def test_defaults_log_every_alert() -> None:
    config = load({})
    assert config.receivers == (LogConfig("log"),)
    assert config.route.receiver == "log"
    assert len(config.inhibit_rules) == 2


def test_full_config_with_routing_key_from_environment() -> None:
    config = load(
        {
            "resolve_timeout": 120,
            "dashboard_url": "https://grafana/d/gpu?var-host={host}",
            "receivers": [
                {"name": "pd-infra", "type": "pagerduty", "routing_key_env": "PD_INFRA"},
                {"name": "am", "type": "alertmanager", "url": "http://am:9093/"},
            ],
            "route": {
                "receiver": "am",
                "group_wait": 2,
                "routes": [{"matchers": ["severity=critical"], "receiver": "pd-infra", "continue": True}],
            },
            "inhibit_rules": [
                {"source_matchers": ["alertname=Maint"], "target_matchers": ["host=~.+"], "equal": ["host"]}
            ],
        },
        {"PD_INFRA": KEY},
    )
    pd, am = config.receivers
    assert isinstance(pd, PagerDutyConfig) and pd.routing_key == KEY
    assert isinstance(am, AlertmanagerConfig) and am.url == "http://am:9093"
    [child] = config.route.routes
    assert child.receiver == "pd-infra" and child.continue_ and child.timing.group_wait == 2  # inherited
    assert len(config.inhibit_rules) == 1
    assert KEY not in repr(pd)  # the secret stays out of logs


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        (
            {"receivers": [{"name": "p", "type": "pagerduty", "routing_key_env": "NOPE"}]},
            "alerting.receivers[0].routing_key_env",
            "NOPE is not set",
        ),
        (
            {"receivers": [{"name": "p", "type": "pagerduty", "routing_key": "short"}]},
            "alerting.receivers[0].routing_key",
            "32 characters",
        ),
        ({"receivers": [{"name": "x", "type": "sms"}]}, "alerting.receivers[0].type", "must be one of"),
        ({"receivers": [{"name": "x", "type": "log", "colour": "red"}]}, "alerting.receivers[0].colour", "unknown key"),
        ({"route": {"receiver": "nobody"}}, "alerting.route.receiver", "no receiver named 'nobody'"),
        (
            {"route": {"receiver": "log", "routes": [{"matchers": ["host"]}]}},
            "alerting.route.routes[0].matchers",
            "no operator",
        ),
        ({"route": {"receiver": "log", "group_wait": -1}}, "alerting.route.group_wait", "negative"),
        (
            {"receivers": [{"name": "a", "type": "log"}, {"name": "a", "type": "log"}]},
            "alerting.receivers",
            "more than once",
        ),
        (
            {"receivers": [{"name": "a", "type": "alertmanager", "url": "am:9093"}]},
            "alerting.receivers[0].url",
            "http(s) URL",
        ),
    ],
)
def test_bad_config_names_key_and_problem(data: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(data)
    assert err.value.key == key
    assert problem in err.value.problem
