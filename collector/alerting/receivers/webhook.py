"""A generic JSON webhook, shaped like Alertmanager's webhook (version 4) so existing handlers can read it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from collector.alert import Alert, AlertState
from collector.alerting.receivers.base import iso8601, post_json
from runtime.configfile import Section


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    name: str
    url: str
    timeout: float = 10.0
    bearer_token: str = field(default="", repr=False)

    @classmethod
    def from_section(cls, name: str, section: Section, env: Mapping[str, str] | None) -> WebhookConfig:
        url = section.require("url", str)
        if not url.startswith(("http://", "https://")):
            raise section.error("url", f"expected an http(s) URL, got {url!r}")
        return cls(name, url, section.positive("timeout", 10.0), section.secret("bearer_token", env))


def body(receiver: str, group_key: str, alerts: Sequence[Alert]) -> dict[str, Any]:
    firing = any(a.state is AlertState.FIRING for a in alerts)
    return {
        "version": "4",
        "receiver": receiver,
        "groupKey": group_key,
        "status": "firing" if firing else "resolved",
        "alerts": [
            {
                "status": "firing" if a.state is AlertState.FIRING else "resolved",
                "fingerprint": a.fingerprint,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": iso8601(a.starts_at),
                "endsAt": iso8601(a.ends_at) if a.ends_at is not None else "0001-01-01T00:00:00Z",
                "generatorURL": a.generator_url,
            }
            for a in alerts
        ],
    }


class WebhookReceiver:
    per_alert = False
    resend_interval = None
    rate_limit = None

    def __init__(self, config: WebhookConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.name = config.name
        self.rate_key = config.url
        self._session = session

    async def notify(self, alerts: Sequence[Alert], group_key: str) -> None:
        headers = {"Authorization": f"Bearer {self.config.bearer_token}"} if self.config.bearer_token else {}
        await post_json(
            self._session,
            self.config.url,
            body(self.name, group_key, alerts),
            time_limit=self.config.timeout,
            what=f"webhook {self.name}",
            headers=headers,
        )
