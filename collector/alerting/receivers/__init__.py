"""Receivers, one module each, and the one function that turns their config into instances."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from collector.alerting.receivers.alertmanager import AlertmanagerConfig, AlertmanagerReceiver
from collector.alerting.receivers.base import PermanentError, Receiver, ReceiverError, RetryableError
from collector.alerting.receivers.log import LogConfig, LogReceiver
from collector.alerting.receivers.pagerduty import PagerDutyConfig, PagerDutyReceiver
from collector.alerting.receivers.webhook import WebhookConfig, WebhookReceiver
from runtime.configfile import Section

ReceiverConfig = PagerDutyConfig | AlertmanagerConfig | WebhookConfig | LogConfig

CONFIG_TYPES: dict[str, Any] = {
    "pagerduty": PagerDutyConfig,
    "alertmanager": AlertmanagerConfig,
    "webhook": WebhookConfig,
    "log": LogConfig,
}


def parse_receiver(section: Section, env: Mapping[str, str] | None = None) -> ReceiverConfig:
    """One ``[[alerting.receivers]]`` table: ``name``, ``type`` and that type's keys."""
    name = section.require("name", str)
    if not name:
        raise section.error("name", "must not be empty")
    kind = section.choice("type", tuple(CONFIG_TYPES), "log")
    config: ReceiverConfig = CONFIG_TYPES[kind].from_section(name, section, env)
    section.finish()
    return config


def build_receivers(
    configs: tuple[ReceiverConfig, ...], session: aiohttp.ClientSession, clock: Callable[[], float]
) -> dict[str, Receiver]:
    """Instances for each configured receiver, keyed by name."""
    out: dict[str, Receiver] = {}
    for config in configs:
        receiver: Receiver
        if isinstance(config, PagerDutyConfig):
            receiver = PagerDutyReceiver(config, session)
        elif isinstance(config, AlertmanagerConfig):
            receiver = AlertmanagerReceiver(config, session, clock)
        elif isinstance(config, WebhookConfig):
            receiver = WebhookReceiver(config, session)
        else:
            receiver = LogReceiver(config)
        out[config.name] = receiver
    return out


__all__ = [
    "AlertmanagerConfig",
    "LogConfig",
    "PagerDutyConfig",
    "PermanentError",
    "Receiver",
    "ReceiverConfig",
    "ReceiverError",
    "RetryableError",
    "WebhookConfig",
    "build_receivers",
    "parse_receiver",
]
