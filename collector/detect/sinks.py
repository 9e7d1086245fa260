"""Alert sinks detection can hand alerts to while the alert lifecycle is not wired in."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from collector.alerting.alert import Alert, AlertState

log = structlog.get_logger("gpulse.collector.alerts")


class LoggingSink:
    """Logs each alert when it appears, changes state or resolves, not on every re-send."""

    def __init__(self) -> None:
        self._last: dict[str, AlertState] = {}

    def push(self, alerts: Sequence[Alert], now: float) -> None:
        for alert in alerts:
            fp = alert.fingerprint
            if alert.state is AlertState.RESOLVED:
                self._last.pop(fp, None)
            elif self._last.get(fp) is alert.state:
                continue
            else:
                self._last[fp] = alert.state
            log.warning(
                "alert",
                state=alert.state.value,
                alertname=alert.name,
                severity=alert.labels["severity"],
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                starts_at=alert.starts_at,
                at=now,
            )


class RecordingSink:
    """Keeps every push, for backtests and tests: (time pushed, alert)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[float, Alert]] = []

    def push(self, alerts: Sequence[Alert], now: float) -> None:
        self.pushes.extend((now, alert) for alert in alerts)

    def transitions(self) -> list[tuple[float, Alert]]:
        """Only the pushes where an alert first appeared in a state (pending, firing, resolved)."""
        seen: dict[str, AlertState] = {}
        out = []
        for now, alert in self.pushes:
            if seen.get(alert.fingerprint) is alert.state:
                continue
            seen[alert.fingerprint] = alert.state
            out.append((now, alert))
        return out
