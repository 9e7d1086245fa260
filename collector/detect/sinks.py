"""An alert sink that keeps what it is given: for backtests, the evaluation harness and tests."""

from __future__ import annotations

from collections.abc import Sequence

from collector.alert import Alert, AlertState


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
