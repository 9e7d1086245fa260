"""The alert lifecycle: pending → firing → resolved, deduplicated by fingerprint, persisted on every change.

This is the AlertSink detection pushes into. Detection re-sends every active alert on each evaluation;
a firing alert that stops being re-sent for ``resolve_timeout`` is resolved here, so an alert whose
condition cleared while the collector was down still gets its resolve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from collector.alert import Alert, AlertState
from collector.alerting.dispatch import Dispatcher
from collector.alerting.state import AlertingState

log = structlog.get_logger("gpulse.alerting")

Enricher = Callable[[Alert], Alert]


def _no_enrichment(alert: Alert) -> Alert:
    return alert


class AlertLifecycle:
    """Implements ``AlertSink``; hands firing and resolved alerts to the dispatcher."""

    def __init__(
        self,
        state: AlertingState,
        dispatcher: Dispatcher,
        *,
        resolve_timeout: float = 300.0,
        max_future_seconds: float = 300.0,
        enrich: Enricher | None = None,
        on_reject: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._state = state
        self._dispatcher = dispatcher
        self.resolve_timeout = resolve_timeout
        self.max_future_seconds = max_future_seconds
        self.enrich = enrich or _no_enrichment  # replaced on reload (dashboard_url)
        self._on_reject = on_reject
        self.alerts: dict[str, Alert] = {}
        self.generation = 0  # bumps on every change of an alert's state, so readers can cache
        self._last_seen: dict[str, float] = {}

    def restore(self, now: float) -> None:
        """Reload the alerts a previous run left; firing and unsent resolved ones go back to their groups."""
        for alert in self._state.load_alerts(self._malformed):
            fp = alert.fingerprint
            self.alerts[fp] = alert
            self.generation += 1
            self._last_seen[fp] = now  # detection gets a full resolve_timeout to re-send it
            if alert.state is not AlertState.PENDING:
                self._dispatcher.insert(alert, now)
        if self.alerts:
            log.info("alerts restored", count=len(self.alerts))

    def _malformed(self, fingerprint: str, problem: str) -> None:
        self._on_reject("malformed_state")
        log.error("damaged alert row dropped", fingerprint=fingerprint, problem=problem)

    def push(self, alerts: Sequence[Alert], now: float) -> None:
        # One transaction per push: a storm of new alerts costs one disk sync, not one each.
        with self._state.transaction():
            for alert in alerts:
                problem = self._problem(alert, now)
                if problem:
                    reason, message = problem
                    self._on_reject(reason)
                    log.warning("alert refused", reason=reason, problem=message, labels=dict(alert.labels))
                    continue
                self._apply(alert, now)

    def _problem(self, alert: Alert, now: float) -> tuple[str, str] | None:
        if not math.isfinite(alert.starts_at) or (alert.ends_at is not None and not math.isfinite(alert.ends_at)):
            return "bad_timestamp", f"starts_at {alert.starts_at} / ends_at {alert.ends_at} is not a finite time"
        if alert.starts_at > now + self.max_future_seconds:
            return "future_timestamp", f"starts_at is {alert.starts_at - now:.0f}s in the future"
        return None

    def _apply(self, alert: Alert, now: float) -> None:
        fp = alert.fingerprint
        known = self.alerts.get(fp)
        if alert.state is AlertState.RESOLVED:
            if known is None or known.state is AlertState.RESOLVED:
                return  # a duplicate resolve, or the resolve of something never seen: nothing to do
            if known.state is AlertState.PENDING:
                self._forget(fp)  # never fired, so nobody was told; nothing to resolve
                return
            self._resolve(known, alert.ends_at if alert.ends_at is not None else now, now)
            return
        self._last_seen[fp] = now
        if known is not None and known.state is alert.state:
            return  # the same alert re-sent by the next evaluation
        if known is not None and known.state is AlertState.FIRING and alert.state is AlertState.PENDING:
            return  # firing does not go back to pending; it resolves
        if alert.state is AlertState.FIRING:
            alert = replace(alert, ends_at=None)
            try:
                alert = self.enrich(alert)
            except Exception:  # context is a nicety: a page without it beats no page
                log.exception("could not add context to alert", fingerprint=fp)
        self.alerts[fp] = alert
        self.generation += 1
        self._state.save_alert(alert)
        if alert.state is AlertState.FIRING:
            log.info("alert firing", alertname=alert.name, fingerprint=fp, labels=dict(alert.labels))
            self._dispatcher.insert(alert, now)

    def _resolve(self, alert: Alert, ends_at: float, now: float) -> None:
        resolved = alert.resolved(ends_at)
        self.alerts[alert.fingerprint] = resolved
        self.generation += 1
        self._state.save_alert(resolved)
        log.info("alert resolved", alertname=alert.name, fingerprint=alert.fingerprint)
        self._dispatcher.insert(resolved, now)

    def expire(self, now: float) -> None:
        """Resolve firing alerts (and drop pending ones) that detection stopped re-sending."""
        stale = [
            (fp, alert)
            for fp, alert in self.alerts.items()
            if alert.state is not AlertState.RESOLVED and now - self._last_seen.get(fp, now) >= self.resolve_timeout
        ]
        if not stale:
            return
        with self._state.transaction():
            for fp, alert in stale:
                if alert.state is AlertState.PENDING:
                    self._forget(fp)
                else:
                    self._resolve(alert, now, now)

    def forget_flushed(self, fingerprints: Sequence[str]) -> None:
        """Drop resolved alerts whose resolve has been handed on, once no group holds them."""
        done = [
            fp
            for fp in fingerprints
            if (a := self.alerts.get(fp)) is not None
            and a.state is AlertState.RESOLVED
            and not self._dispatcher.holds(fp)
        ]
        if done:
            with self._state.transaction():
                for fp in done:
                    self._forget(fp)

    def _forget(self, fp: str) -> None:
        self.alerts.pop(fp, None)
        self.generation += 1
        self._last_seen.pop(fp, None)
        self._state.delete_alert(fp)

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state is AlertState.FIRING]

    def counts(self) -> dict[tuple[str, str], int]:
        """Alerts by (state, severity), for the metrics."""
        out: dict[tuple[str, str], int] = {}
        for alert in self.alerts.values():
            key = (alert.state.value, alert.severity.name.lower())
            out[key] = out.get(key, 0) + 1
        return out
