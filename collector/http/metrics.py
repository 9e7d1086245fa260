"""Counters of the HTTP port's refusals and web config reloads; every reason exists from the start at 0."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from collector.http.access import REFUSAL_REASONS
from runtime.listener import DROP_REASONS


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "gpulse_collector_http_refused",
            "HTTP requests and connections refused, by reason (credentials, role, listener limits).",
            ["reason"],
            registry=registry,
        )
        for reason in (*REFUSAL_REASONS, *DROP_REASONS):
            self.refused.labels(reason)
        self.web_config_reloads = Counter(
            "gpulse_collector_web_config_reloads",
            "Re-reads of the web config file after it changed, by result; a failure kept the previous one.",
            ["result"],
            registry=registry,
        )
        for result in ("success", "failure"):
            self.web_config_reloads.labels(result)

    def refuse(self, reason: str) -> None:
        self.refused.labels(reason).inc()
