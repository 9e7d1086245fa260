"""Silences: label matchers, an author, a comment and an expiry; kept in the state database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from collector.alerting.matchers import Matcher, match_all, parse_all
from collector.alerting.state import AlertingState

Clock = Callable[[], float]
log = structlog.get_logger("gpulse.alerting")


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        return cls(
            str(data["id"]),
            parse_all(data["matchers"]),
            float(data["starts_at"]),
            float(data["ends_at"]),
            str(data["created_by"]),
            str(data["comment"]),
        )


class SilenceError(ValueError):
    """A silence request that cannot be honoured; the message says why."""


class Silencer:
    """Holds the silences (persisted on every change) and mutes the alerts an active one matches."""

    # Expired silences stay listable for a while, as in Alertmanager, then go.
    RETENTION = 5 * 86400.0

    def __init__(self, state: AlertingState, clock: Clock) -> None:
        self._state = state
        self._clock = clock
        self._silences: dict[str, Silence] = {}
        for record in state.load_silences():
            try:
                silence = Silence.from_dict(record)
            except (KeyError, TypeError, ValueError) as exc:
                # Keep starting: a lost silence may page someone, a collector that cannot start pages nobody.
                log.error("damaged silence ignored", record=str(record)[:300], problem=str(exc))
                continue
            self._silences[silence.id] = silence

    def add(
        self, matchers: list[str], *, ends_at: float, created_by: str, comment: str, starts_at: float | None = None
    ) -> Silence:
        """Create a silence; refuses empty matchers, a missing author or comment, and an end in the past."""
        now = self._clock()
        try:
            parsed = parse_all(matchers)
        except ValueError as exc:
            raise SilenceError(str(exc)) from None
        if not parsed:
            raise SilenceError("a silence needs at least one matcher")
        if all(m.matches({}) for m in parsed):
            # Matches alerts that lack every named label, i.e. almost everything: refuse, as Alertmanager does.
            raise SilenceError("a silence must have at least one matcher that does not match the empty string")
        if not created_by.strip():
            raise SilenceError("a silence needs an author (created_by)")
        if not comment.strip():
            raise SilenceError("a silence needs a comment saying why")
        start = now if starts_at is None else starts_at
        if not ends_at > max(start, now):
            raise SilenceError(f"silence would end at {ends_at}, which is not after its start and now")
        silence = Silence(uuid.uuid4().hex, parsed, start, ends_at, created_by, comment)
        self._silences[silence.id] = silence
        self._state.save_silence(silence.id, silence.to_dict(), silence.ends_at)
        return silence

    def expire(self, silence_id: str) -> Silence:
        """End a silence now; raises KeyError for an unknown id."""
        now = self._clock()
        current = self._silences[silence_id]
        if current.ends_at <= now:
            return current
        ended = Silence(
            current.id, current.matchers, min(current.starts_at, now), now, current.created_by, current.comment
        )
        self._silences[silence_id] = ended
        self._state.save_silence(ended.id, ended.to_dict(), ended.ends_at)
        return ended

    def list(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: (s.ends_at, s.id))

    def gc(self) -> None:
        cutoff = self._clock() - self.RETENTION
        if self._state.delete_silences_ended_before(cutoff):
            self._silences = {k: s for k, s in self._silences.items() if s.ends_at >= cutoff}

    def silenced_by(self, labels: Mapping[str, str]) -> Silence | None:
        now = self._clock()
        for silence in self._silences.values():
            if silence.active(now) and match_all(silence.matchers, labels):
                return silence
        return None

    def mutes(self, labels: Mapping[str, str]) -> bool:
        return self.silenced_by(labels) is not None
