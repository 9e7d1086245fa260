"""How detection hands alerts to the alert lifecycle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from collector.alerting.alert import Alert


class AlertSink(Protocol):
    def push(self, alerts: Sequence[Alert], now: float) -> None:
        """Take alerts from detection.

        Detection pushes every pending and firing alert on each evaluation (as Prometheus re-sends to
        Alertmanager), and an alert in state RESOLVED once when its condition clears. Hard faults push
        at once, between evaluations.
        """
        ...
