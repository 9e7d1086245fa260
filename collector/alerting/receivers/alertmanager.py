"""Alertmanager API v2: POST /api/v2/alerts, for teams that already route and page with Alertmanager.

Like Prometheus, we re-send firing alerts on a short interval with ``endsAt`` a few intervals ahead:
Alertmanager resolves an alert it stops hearing about, and a restarted Alertmanager relearns them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from collector.alert import Alert, AlertState
from collector.alerting.receivers.base import iso8601, post_json
from runtime.configfile import Section

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class AlertmanagerConfig:
    name: str
    url: str  # base URL, e.g. http://alertmanager:9093
    timeout: float = 10.0
    resend_interval: float = 60.0

    @classmethod
    def from_section(cls, name: str, section: Section, env: Mapping[str, str] | None) -> AlertmanagerConfig:
        url = section.require("url", str).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise section.error("url", f"expected an http(s) URL, got {url!r}")
        return cls(name, url, section.positive("timeout", 10.0), section.positive("resend_interval", 60.0))


def postable(alert: Alert, now: float, resend_interval: float) -> dict[str, Any]:
    """One ``PostableAlert`` of the v2 API."""
    firing = alert.state is AlertState.FIRING
    ends_at = now + 4 * resend_interval if firing else (alert.ends_at or now)
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": iso8601(alert.starts_at),
        "endsAt": iso8601(ends_at),
        "generatorURL": alert.generator_url,
    }


class AlertmanagerReceiver:
    per_alert = False
    rate_limit = None

    def __init__(self, config: AlertmanagerConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        self.config = config
        self.name = config.name
        self.resend_interval = config.resend_interval
        self.rate_key = config.url
        self._session = session
        self._clock = clock

    async def notify(self, alerts: Sequence[Alert], group_key: str) -> None:
        now = self._clock()
        body = [postable(a, now, self.config.resend_interval) for a in alerts]
        await post_json(
            self._session, f"{self.config.url}/api/v2/alerts", body, time_limit=self.config.timeout, what="Alertmanager"
        )
