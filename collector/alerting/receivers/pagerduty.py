"""PagerDuty Events API v2: one incident per alert fingerprint, triggered then resolved.

https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ — summary at most 1024 characters,
the whole event under 512 KB, 202 accepted, 400 invalid (dropped), 429 and 5xx retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from collector.alert import Alert, AlertState
from collector.alerting import context
from collector.alerting.ratelimit import RateLimit
from collector.alerting.receivers.base import iso8601, post_json
from runtime.configfile import Section

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_SUMMARY = 1024
MAX_EVENT_BYTES = 512 * 1024
PD_SEVERITIES = ("critical", "error", "warning", "info")
DEFAULT_SEVERITY_MAP = {"critical": "critical", "warning": "warning", "info": "info"}


@dataclass(frozen=True, slots=True)
class PagerDutyConfig:
    name: str
    routing_key: str = field(repr=False)
    url: str = EVENTS_URL
    timeout: float = 10.0
    events_per_minute: int = 120
    severity_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_MAP))
    client: str = "gpulse"

    @classmethod
    def from_section(cls, name: str, section: Section, env: Mapping[str, str] | None) -> PagerDutyConfig:
        routing_key = section.secret("routing_key", env)
        if len(routing_key) != 32:
            raise section.error("routing_key", "a PagerDuty integration (routing) key is 32 characters")
        mapping = section.section("severity_map")
        severity_map = {}
        for ours in DEFAULT_SEVERITY_MAP:
            theirs = mapping.get(ours, str, DEFAULT_SEVERITY_MAP[ours])
            if theirs not in PD_SEVERITIES:
                raise mapping.error(ours, f"must be one of {', '.join(PD_SEVERITIES)}; got {theirs!r}")
            severity_map[ours] = theirs
        mapping.finish()
        config = cls(
            name=name,
            routing_key=routing_key,
            url=section.get("url", str, EVENTS_URL),
            timeout=section.positive("timeout", 10.0),
            events_per_minute=int(section.positive("events_per_minute", 120)),
            severity_map=severity_map,
            client=section.get("client", str, "gpulse"),
        )
        return config


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(alert: Alert) -> str:
    labels = alert.labels
    text = alert.annotations.get("summary") or " ".join(
        filter(
            None,
            [
                alert.name,
                f"on {labels['host']}" if "host" in labels else "",
                f"GPU {labels['gpu']}" if "gpu" in labels else "",
            ],
        )
    )
    return _truncate(text, MAX_SUMMARY)


def custom_details(alert: Alert) -> dict[str, Any]:
    """Host, GPU identity, job, evidence and dashboard, as the on-call wants them in the incident."""
    notes = alert.annotations
    gpu = {
        "index": alert.labels.get("gpu", ""),
        "uuid": notes.get(context.GPU_UUID, alert.labels.get("uuid", "")),
        "model": notes.get(context.GPU_MODEL, ""),
        "pci_bus_id": notes.get(context.GPU_PCI_BUS_ID, ""),
    }
    evidence = {
        k: v
        for k, v in notes.items()
        if k not in context.CONTEXT_KEYS and k not in ("summary", "description", "suggested_action")
    }
    return {
        "host": alert.labels.get("host", ""),
        "gpu": gpu,
        "job": notes.get(context.JOB, ""),
        "suggested_action": notes.get("suggested_action", ""),
        "evidence": evidence,
        "description": notes.get("description", ""),
        "dashboard": notes.get(context.DASHBOARD, ""),
        "labels": dict(alert.labels),
        "started": iso8601(alert.starts_at),
    }


def event(alert: Alert, config: PagerDutyConfig) -> dict[str, Any]:
    """The Events v2 body for an alert: a resolve when it has resolved, else a trigger."""
    if alert.state is AlertState.RESOLVED:
        return {"routing_key": config.routing_key, "event_action": "resolve", "dedup_key": alert.fingerprint}
    body: dict[str, Any] = {
        "routing_key": config.routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "client": config.client,
        "payload": {
            "summary": summary(alert),
            "source": alert.labels.get("host") or "gpulse",
            "severity": config.severity_map.get(alert.severity.name.lower(), "error"),
            "timestamp": iso8601(alert.starts_at),
            "component": f"gpu {alert.labels['gpu']}" if "gpu" in alert.labels else "host",
            "class": alert.name,
            "custom_details": custom_details(alert),
        },
    }
    dashboard = alert.annotations.get(context.DASHBOARD)
    if dashboard:
        body["client_url"] = dashboard
        body["links"] = [{"href": dashboard, "text": "Grafana dashboard"}]
    return _fit(body)


def _fit(body: dict[str, Any]) -> dict[str, Any]:
    """Keep the event under 512 KB by trimming evidence, never by dropping the page."""
    if len(json.dumps(body).encode()) < MAX_EVENT_BYTES:
        return body
    details = body["payload"]["custom_details"]
    details["evidence"] = {k: _truncate(v, 1000) for k, v in details["evidence"].items()}
    details["description"] = _truncate(details["description"], 4000)
    if len(json.dumps(body).encode()) >= MAX_EVENT_BYTES:
        details["evidence"] = {"truncated": "evidence too large for PagerDuty; see the dashboard"}
        details["labels"] = {k: _truncate(v, 200) for k, v in details["labels"].items()}
    return body


class PagerDutyReceiver:
    per_alert = True
    resend_interval = None

    def __init__(self, config: PagerDutyConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.name = config.name
        self.rate_limit = RateLimit(config.events_per_minute, 60.0)
        self.rate_key = f"pagerduty:{config.routing_key}"  # one budget per key, shared by receivers using it
        self._session = session

    async def notify(self, alerts: Sequence[Alert], group_key: str) -> None:
        for alert in alerts:
            await post_json(
                self._session,
                self.config.url,
                event(alert, self.config),
                time_limit=self.config.timeout,
                what="PagerDuty",
            )
