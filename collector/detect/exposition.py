"""Detection's own series for /metrics: every detector score, active alerts, rule health.

A prometheus_client collector read at scrape time from the engine's arrays; register it in the
collector's own registry.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.detect.engine import DetectionEngine


class DetectionCollector(Collector):
    def __init__(self, engine: DetectionEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        yield from self._scores()
        alerts = GaugeMetricFamily(
            "gpulse_detect_alert",
            "1 for each pending or firing alert, like Prometheus's ALERTS series.",
            labels=["alertname", "severity", "alertstate", "host", "gpu"],
        )
        for alert in engine.active_alerts():
            labels = alert.labels
            alerts.add_metric(
                [
                    labels["alertname"],
                    labels["severity"],
                    alert.state.value,
                    labels.get("host", ""),
                    labels.get("gpu", ""),
                ],
                1.0,
            )
        yield alerts
        stats = engine.stats
        yield GaugeMetricFamily("gpulse_detect_rules", "Rules loaded and evaluated.", value=len(engine.rules.rules))
        yield CounterMetricFamily(
            "gpulse_detect_evaluations", "Evaluation ticks run over the whole fleet.", value=stats.evaluations
        )
        yield CounterMetricFamily(
            "gpulse_detect_immediate_evaluations",
            "Evaluations run at once because an agent event (XID, GPU lost, spool drop) arrived.",
            value=stats.immediate_evaluations,
        )
        failures = CounterMetricFamily(
            "gpulse_detect_rule_evaluation_failures", "Rule evaluations that raised, by rule.", labels=["rule"]
        )
        for rule, count in sorted(stats.rule_failures.items()):
            failures.add_metric([rule], count)
        yield failures
        reloads = CounterMetricFamily("gpulse_detect_rule_reloads", "Rule file reloads, by result.", labels=["result"])
        reloads.add_metric(["success"], stats.reloads_ok)
        reloads.add_metric(["failure"], stats.reloads_failed)
        yield reloads
        yield GaugeMetricFamily(
            "gpulse_detect_last_evaluation_seconds",
            "Time the last evaluation tick took.",
            value=stats.last_evaluation_seconds,
        )
        yield CounterMetricFamily(
            "gpulse_detect_alerts_pushed", "Alert updates handed to alerting.", value=stats.alerts_pushed
        )

    def _scores(self) -> Iterator[Metric]:
        engine = self.engine
        sig = engine.signals
        store = engine.store
        rows = sig.gpu_rows
        families = {
            "peer_score": GaugeMetricFamily(
                "gpulse_detect_peer_score",
                "Distance of a GPU's signal from its peers' median (same host, model, job, load band),"
                " in robust sigmas.",
                labels=["host", "gpu", "uuid", "signal"],
            ),
            "baseline_score": GaugeMetricFamily(
                "gpulse_detect_baseline_score",
                "Distance of a GPU's signal from its own learned baseline, in robust sigmas.",
                labels=["host", "gpu", "uuid", "signal"],
            ),
            "thermal_score": GaugeMetricFamily(
                "gpulse_detect_thermal_score",
                "How much hotter a GPU runs than its learned thermal model expects for its power, in robust sigmas.",
                labels=["host", "gpu", "uuid", "signal"],
            ),
        }
        if rows:
            scores = sig.scores[:rows]
            identity = []
            for row in range(rows):
                meta = store.gpu_meta[row]
                slot = int(store.gpu_host_slot[row])
                record = store.by_slot[slot] if slot >= 0 else None
                identity.append((record.host_id, str(meta.index), meta.uuid) if meta and record else None)
            for j, name in enumerate(sig.score_names):
                kind, _, signal = name.partition("_score_")
                if name == "thermal_score":
                    kind, signal = "thermal", "temperature"
                elif not signal:
                    continue  # deviations and residuals are the scores' inputs
                family = families[f"{kind}_score"]
                column = scores[:, j]
                for row in np.nonzero(np.isfinite(column))[0].tolist():
                    ident = identity[row]
                    if ident is not None:
                        family.add_metric([*ident, signal], float(column[row]))
        yield from families.values()
