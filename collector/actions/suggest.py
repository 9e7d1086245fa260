"""What to do about an alert: none, restart the application, reset the GPU, reboot the host, inspect
the hardware.

A pure table. XIDs follow the immediate-action buckets of NVIDIA's Xid catalogue
(https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html: RESTART_APP, RESET_GPU,
RESTART_BM, CONTACT_SUPPORT, IGNORE); rules name theirs with an ``action`` label (the default pack
does) or a ``suggested_action`` annotation, which wins.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from collector.alert import Alert

ANNOTATION = "suggested_action"


class SuggestedAction(enum.StrEnum):
    """Ordered from the least to the most disruptive; escalation only ever moves right."""

    NONE = "none"
    RESTART_APPLICATION = "restart_application"
    RESET_GPU = "reset_gpu"
    REBOOT_HOST = "reboot_host"
    INSPECT_HARDWARE = "inspect_hardware"

    @classmethod
    def parse(cls, value: str) -> SuggestedAction:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(a.value for a in cls)
            raise ValueError(f"unknown suggested action {value!r}; expected one of {names}") from None

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    SuggestedAction.NONE: "no action needed",
    SuggestedAction.RESTART_APPLICATION: "restart the application",
    SuggestedAction.RESET_GPU: "reset the GPU",
    SuggestedAction.REBOOT_HOST: "reboot the host",
    SuggestedAction.INSPECT_HARDWARE: "inspect the hardware",
}

# The catalogue's immediate action for the XIDs seen on A100/H100/B100 fleets. CONTACT_SUPPORT
# is "inspect the hardware"; IGNORE is "none".
XID_ACTIONS: Mapping[int, SuggestedAction] = {
    8: SuggestedAction.RESTART_APPLICATION,
    13: SuggestedAction.RESTART_APPLICATION,
    31: SuggestedAction.RESTART_APPLICATION,
    32: SuggestedAction.RESTART_APPLICATION,
    38: SuggestedAction.RESET_GPU,
    43: SuggestedAction.RESTART_APPLICATION,
    45: SuggestedAction.NONE,
    48: SuggestedAction.RESET_GPU,
    56: SuggestedAction.INSPECT_HARDWARE,
    57: SuggestedAction.INSPECT_HARDWARE,
    61: SuggestedAction.RESET_GPU,
    62: SuggestedAction.RESET_GPU,
    63: SuggestedAction.RESET_GPU,
    64: SuggestedAction.RESET_GPU,
    68: SuggestedAction.RESTART_APPLICATION,
    69: SuggestedAction.RESET_GPU,
    74: SuggestedAction.RESET_GPU,
    79: SuggestedAction.REBOOT_HOST,
    92: SuggestedAction.NONE,
    94: SuggestedAction.RESTART_APPLICATION,
    95: SuggestedAction.RESET_GPU,
    109: SuggestedAction.RESET_GPU,
    119: SuggestedAction.RESET_GPU,
    120: SuggestedAction.RESET_GPU,
    140: SuggestedAction.RESET_GPU,
    144: SuggestedAction.RESET_GPU,
    145: SuggestedAction.RESET_GPU,
    146: SuggestedAction.RESET_GPU,
    147: SuggestedAction.RESET_GPU,
    148: SuggestedAction.RESET_GPU,
    149: SuggestedAction.RESET_GPU,
    150: SuggestedAction.RESET_GPU,
    154: SuggestedAction.REBOOT_HOST,
}

# The default pack's ``action`` labels. "drain" (an application-XID storm across restarts) and
# "replace_gpu" point at the GPU itself.
RULE_ACTIONS: Mapping[str, SuggestedAction] = {
    "none": SuggestedAction.NONE,
    "restart_app": SuggestedAction.RESTART_APPLICATION,
    "restart_application": SuggestedAction.RESTART_APPLICATION,
    "reset_gpu": SuggestedAction.RESET_GPU,
    "reset_gpu_when_idle": SuggestedAction.RESET_GPU,
    "reboot_node": SuggestedAction.REBOOT_HOST,
    "reboot_host": SuggestedAction.REBOOT_HOST,
    "drain": SuggestedAction.INSPECT_HARDWARE,
    "replace_gpu": SuggestedAction.INSPECT_HARDWARE,
    "inspect_hardware": SuggestedAction.INSPECT_HARDWARE,
}


def for_xid(code: int) -> SuggestedAction:
    """The catalogue's action for one XID; an XID it does not list is for a human to look at."""
    return XID_ACTIONS.get(code, SuggestedAction.INSPECT_HARDWARE)


def for_rule(labels: Mapping[str, str], annotations: Mapping[str, str]) -> SuggestedAction:
    """A rule's action: its ``suggested_action`` annotation, else its ``action`` label, else an
    ``xid`` label looked up in the catalogue, else none. Raises ValueError on an unknown name."""
    if annotations.get(ANNOTATION):
        return SuggestedAction.parse(annotations[ANNOTATION])
    if labels.get("action"):
        action = RULE_ACTIONS.get(labels["action"])
        if action is None:
            raise ValueError(f"unknown action label {labels['action']!r}; expected one of {', '.join(RULE_ACTIONS)}")
        return action
    if labels.get("xid", "").isdigit():
        return for_xid(int(labels["xid"]))
    return SuggestedAction.NONE


def suggest(alert: Alert) -> SuggestedAction:
    """The action for an alert; an alert whose action cannot be read gets inspect-the-hardware."""
    try:
        return for_rule(alert.labels, alert.annotations)
    except ValueError:
        return SuggestedAction.INSPECT_HARDWARE
