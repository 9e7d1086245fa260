"""A receiver that writes each notification to the log: for the demo, and as a safe default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from collector.alert import Alert, AlertState
from collector.alerting import context
from runtime.configfile import Section


@dataclass(frozen=True, slots=True)
class LogConfig:
    name: str

    @classmethod
    def from_section(cls, name: str, section: Section, env: Mapping[str, str] | None) -> LogConfig:
        return cls(name)


class LogReceiver:
    per_alert = True  # a log line per change, not the whole group again each time it grows
    resend_interval = None
    rate_limit = None

    def __init__(self, config: LogConfig, logger: structlog.typing.FilteringBoundLogger | None = None) -> None:
        self.name = config.name
        self.rate_key = config.name
        self._log = logger or structlog.get_logger("gpulse.alerts")

    async def notify(self, alerts: Sequence[Alert], group_key: str) -> None:
        for alert in alerts:
            status = "ALERT FIRING" if alert.state is AlertState.FIRING else "ALERT RESOLVED"
            # Warning level, so the demo (which logs warnings and up) shows every page.
            self._log.warning(
                status,
                alertname=alert.name,
                severity=alert.labels["severity"],
                host=alert.labels.get("host", ""),
                gpu=alert.labels.get("gpu", ""),
                summary=alert.annotations.get("summary", ""),
                job=alert.annotations.get(context.JOB, ""),
                suggested_action=alert.annotations.get("suggested_action", ""),
                fingerprint=alert.fingerprint,
                receiver=self.name,
            )
