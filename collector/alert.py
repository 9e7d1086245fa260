"""The Alert value type shared by detection and alerting: labels, state, fingerprint, and the sink.

Detection makes alerts and hands them to an AlertSink; alerting implements the sink. Neither imports the
other: both import this module, which imports nothing else of ours. An alert's identity is its label
set: the fingerprint is a hash of the sorted labels, so two collectors that see the same fault compute
the same fingerprint (and hence the same PagerDuty dedup_key).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol


class AlertState(enum.Enum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(enum.IntEnum):
    """Ordered, so a group can tell when it escalates."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @classmethod
    def parse(cls, value: str) -> Severity:
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {value!r}; expected info, warning or critical") from None


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable 16-hex-digit identity of a label set."""
    digest = hashlib.sha256()
    for key in sorted(labels):
        digest.update(key.encode())
        digest.update(b"\xff")
        digest.update(labels[key].encode())
        digest.update(b"\xfe")
    return digest.hexdigest()[:16]


def _freeze(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as detection reports it. ``labels`` must include ``alertname`` and ``severity``."""

    labels: Mapping[str, str]
    state: AlertState
    starts_at: float  # when the condition first held (unix seconds)
    annotations: Mapping[str, str] = field(default_factory=dict)
    ends_at: float | None = None  # set once resolved
    active_at: float | None = None  # when it became pending
    generator_url: str = ""
    _fingerprint: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("alertname", "severity"):
            if not self.labels.get(key):
                raise ValueError(f"alert label {key!r} is required; labels were {dict(self.labels)}")
        Severity.parse(self.labels["severity"])
        object.__setattr__(self, "labels", _freeze(self.labels))
        object.__setattr__(self, "annotations", _freeze(self.annotations))
        object.__setattr__(self, "_fingerprint", fingerprint(self.labels))  # asked for often; labels never change

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def severity(self) -> Severity:
        return Severity.parse(self.labels["severity"])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def resolved(self, at: float) -> Alert:
        return Alert(
            self.labels, AlertState.RESOLVED, self.starts_at, self.annotations, at, self.active_at, self.generator_url
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form, for the state database and the outbox."""
        return {
            "labels": dict(self.labels),
            "state": self.state.value,
            "starts_at": self.starts_at,
            "annotations": dict(self.annotations),
            "ends_at": self.ends_at,
            "active_at": self.active_at,
            "generator_url": self.generator_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Alert:
        """The inverse of ``to_dict``; raises ValueError (naming the field) on a malformed record."""
        try:
            labels = data["labels"]
            annotations = data.get("annotations") or {}
            if not isinstance(labels, Mapping) or not isinstance(annotations, Mapping):
                raise ValueError("labels and annotations must be objects")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in (*labels.items(), *annotations.items())):
                raise ValueError("label and annotation names and values must be strings")
            ends_at = data.get("ends_at")
            active_at = data.get("active_at")
            return cls(
                labels=labels,
                state=AlertState(data.get("state", "firing")),
                starts_at=_number(data["starts_at"], "starts_at"),
                annotations=annotations,
                ends_at=None if ends_at is None else _number(ends_at, "ends_at"),
                active_at=None if active_at is None else _number(active_at, "active_at"),
                generator_url=str(data.get("generator_url") or ""),
            )
        except KeyError as exc:
            raise ValueError(f"alert field {exc.args[0]!r} is required") from None


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"alert field {name!r} must be a number, got {value!r}")
    return float(value)


class AlertSink(Protocol):
    def push(self, alerts: Sequence[Alert], now: float) -> None:
        """Take alerts from detection.

        Detection pushes every pending and firing alert on each evaluation (as Prometheus re-sends to
        Alertmanager), and an alert in state RESOLVED once when its condition clears. Hard faults push
        at once, between evaluations.
        """
        ...
