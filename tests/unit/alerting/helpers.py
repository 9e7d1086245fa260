"""Small builders shared by the alerting unit tests."""

from __future__ import annotations

from collector.alert import Alert, AlertState


def alert(
    name: str = "GpuHot",
    severity: str = "warning",
    state: AlertState = AlertState.FIRING,
    at: float = 0.0,
    **labels: str,
) -> Alert:
    return Alert({"alertname": name, "severity": severity, **labels}, state, at)
