"""Alerting's metrics, registered into the collector's own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.alert import AlertState, Severity

STATES = tuple(s.value for s in AlertState)
SEVERITIES = tuple(s.name.lower() for s in Severity)


class _LiveGauges(Collector):
    """Alert counts and outbox depth, read at scrape time so they can never drift from the truth."""

    def __init__(
        self, counts: Callable[[], Mapping[tuple[str, str], int]], depth: Callable[[], Mapping[str, int]]
    ) -> None:
        self._counts = counts
        self._depth = depth
        self.receivers: tuple[str, ...] = ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        alerts = GaugeMetricFamily(
            "gpulse_alerts", "Alerts the collector holds, by state and severity.", labels=["state", "severity"]
        )
        counts = self._counts()
        for state in STATES:
            for severity in SEVERITIES:
                alerts.add_metric([state, severity], counts.get((state, severity), 0))
        yield alerts
        depth = GaugeMetricFamily(
            "gpulse_alerting_outbox_depth",
            "Notifications waiting in the durable outbox, by receiver.",
            labels=["receiver"],
        )
        current = self._depth()
        for receiver in sorted({*self.receivers, *current}):
            depth.add_metric([receiver], current.get(receiver, 0))
        yield depth


class AlertingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.sent = Counter(
            "gpulse_alerting_notifications_sent", "Notifications a receiver accepted.", ["receiver"], registry=r
        )
        self.failed = Counter(
            "gpulse_alerting_notifications_failed",
            "Notifications given up on, by receiver and reason (rejected, expired, unknown_receiver, malformed).",
            ["receiver", "reason"],
            registry=r,
        )
        self.retried = Counter(
            "gpulse_alerting_notifications_retried",
            "Notification attempts that failed and will be retried, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.rate_limited = Counter(
            "gpulse_alerting_notifications_rate_limited",
            "Times a notification waited for its receiver's rate limit, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.coalesced = Counter(
            "gpulse_alerting_notifications_coalesced",
            "Notifications merged into a newer one before they were sent, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.alerts_rejected = Counter(
            "gpulse_alerting_alerts_rejected", "Alerts refused on the way in, by reason.", ["reason"], registry=r
        )
        self.muted = Counter(
            "gpulse_alerting_alerts_muted",
            "Firing alerts kept out of a notification, by what muted them (silence, inhibition).",
            ["by"],
            registry=r,
        )
        self._live: _LiveGauges | None = None

    def watch(
        self,
        counts: Callable[[], Mapping[tuple[str, str], int]],
        depth: Callable[[], Mapping[str, int]],
        receivers: tuple[str, ...],
    ) -> None:
        """Start exporting the live gauges from these readers."""
        self._live = _LiveGauges(counts, depth)
        self._live.receivers = receivers
        self.registry.register(self._live)

    def follow_receivers(self, receivers: tuple[str, ...]) -> None:
        """After a reload: the receivers whose outbox depth is exported even when zero."""
        if self._live is not None:
            self._live.receivers = receivers

    def unwatch(self) -> None:
        if self._live is not None:
            self.registry.unregister(self._live)
            self._live = None
