"""The collector's own health metrics, in a registry of its own (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connected_agents = Gauge("gpulse_collector_connected_agents", "Agent streams open now.", registry=r)
        self.shard = Gauge(
            "gpulse_collector_shard_info",
            "Always 1: names the collector (shard) whose hosts this endpoint exports.",
            ["collector_id"],
            registry=r,
        )
        self.streams_refused = Counter(
            "gpulse_collector_streams_refused", "Agent streams refused, by reason.", ["reason"], registry=r
        )
        self.config_reloads = Counter(
            "gpulse_collector_config_reloads",
            "Config file reloads (SIGHUP), by result; a failure left the running config in use.",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)  # both series exist from the start, so rate() sees the first
        self.frames_applied = Counter(
            "gpulse_collector_frames_applied", "Frames applied to the fleet store.", registry=r
        )
        self.frames_rejected = Counter(
            "gpulse_collector_frames_rejected", "Frames refused, by reason.", ["reason"], registry=r
        )
        self.values_rejected = Counter(
            "gpulse_collector_values_rejected",
            "Single values refused inside applied frames, by reason.",
            ["reason"],
            registry=r,
        )
        self.audit_records = Counter(
            "gpulse_collector_audit_records",
            "Records appended to the audit log, by action.",
            ["action"],
            registry=r,
        )
        self.text_cleaned = Counter(
            "gpulse_collector_agent_text_cleaned",
            "Strings from agents cut to their limit or stripped of control characters before use.",
            registry=r,
        )
        self.duplicates = Counter(
            "gpulse_collector_duplicate_records", "Records already processed and ignored (replays).", registry=r
        )
        self.events = Counter("gpulse_collector_events", "Agent events processed, by kind.", ["kind"], registry=r)
        self.events_rejected = Counter(
            "gpulse_collector_events_rejected", "Agent events refused, by reason.", ["reason"], registry=r
        )
        # Certificate lifecycle: alert well before these dates (e.g. < 14 days away).
        self.agent_certificate_expiry = Gauge(
            "gpulse_collector_agent_certificate_expiry_timestamp_seconds",
            "When the client certificate each agent last connected with expires (Unix time).",
            ["host"],
            registry=r,
        )
        self.certificate_expiry = Gauge(
            "gpulse_collector_certificate_expiry_timestamp_seconds",
            "When the server certificate this collector serves expires (Unix time).",
            registry=r,
        )
        self.ingest_seconds = Gauge(
            "gpulse_collector_last_scrape_render_seconds", "Time the last /metrics render took.", registry=r
        )
