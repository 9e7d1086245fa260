"""The suggested action on every alert, escalated to inspect-the-hardware when the same fault comes
back on the same GPU after N resets or reboots.

An ``Enricher`` for the alert lifecycle: it runs once per incident, when an alert starts firing.
Each incident of a fault whose action is a reset or a reboot counts as one reset or reboot done;
the counts are kept in SQLite, so a collector restart does not forget them.
"""

from __future__ import annotations

from dataclasses import replace

from collector.actions.state import RemediationState
from collector.actions.suggest import ANNOTATION, SuggestedAction, suggest
from collector.alert import Alert

ESCALATED = "suggested_action_escalated"
_COUNTED = (SuggestedAction.RESET_GPU, SuggestedAction.REBOOT_HOST)


def fault_key(alert: Alert) -> str:
    """The same fault on the same GPU: rule, host and GPU (its uuid when known, so a swapped GPU starts afresh)."""
    labels = alert.labels
    gpu = labels.get("uuid") or labels.get("gpu", "")
    return f"{alert.name}|{labels.get('host', '')}|{gpu}"


class Escalator:
    """Writes ``suggested_action`` into every firing alert's annotations."""

    def __init__(self, state: RemediationState, *, after: int = 2, window: float = 30 * 86400.0) -> None:
        self._state = state
        self.after = after  # resets or reboots after which the same fault means the hardware
        self.window = window  # seconds; an older incident no longer counts

    def __call__(self, alert: Alert) -> Alert:
        action = suggest(alert)
        notes = {ANNOTATION: action.value}
        if action in _COUNTED:
            key = fault_key(alert)
            count, last_at = self._state.recurrence(key)
            if last_at and alert.starts_at - last_at > self.window:
                count = 0
            if count >= self.after:
                notes[ANNOTATION] = SuggestedAction.INSPECT_HARDWARE.value
                notes[ESCALATED] = f"{alert.name} came back after {count} x {action.text}; was {action.value}"
            self._state.set_recurrence(key, count + 1, alert.starts_at)
        return replace(alert, annotations={**alert.annotations, **notes})
