"""The remediation's own metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RemediationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "gpulse_remediation_actions",
            "Remediation actions by kind (drain, resume) and outcome (taken, dry_run, pending, skipped, "
            "failed, blocked).",
            ["action", "outcome"],
            registry=registry,
        )
        self.skips = Counter(
            "gpulse_remediation_skips",
            "Actions not taken, by reason (opt_out, cooldown, silenced, already_drained, operator_drain).",
            ["reason"],
            registry=registry,
        )
        self.approvals = Counter(
            "gpulse_remediation_approvals", "Pending actions approved by an operator.", registry=registry
        )
        self.refused = Counter(
            "gpulse_remediation_requests_refused",
            "Remediation API requests refused, by reason (bad_body, unknown_action, not_pending).",
            ["reason"],
            registry=registry,
        )
        self.breaker_tripped = Gauge(
            "gpulse_remediation_breaker_tripped",
            "1 while the circuit breaker stops all automatic actions (until `gpulse remediation reset`).",
            registry=registry,
        )
        self.open_actions = Gauge(
            "gpulse_remediation_open_actions",
            "Hosts held by an open action, by state (pending, approved, dry_run, drained, watching).",
            ["state"],
            registry=registry,
        )
        for reason in ("bad_body", "unknown_action", "not_pending"):
            self.refused.labels(reason)
        for state in ("pending", "approved", "dry_run", "drained", "watching"):
            self.open_actions.labels(state).set(0)
        for action, outcome in [
            ("drain", o) for o in ("taken", "dry_run", "pending", "skipped", "failed", "blocked")
        ] + [("resume", o) for o in ("taken", "dry_run", "skipped", "failed")]:
            self.actions.labels(action, outcome)
