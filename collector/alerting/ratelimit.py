"""At most ``events`` per ``per_seconds`` per key (a PagerDuty routing key), over a sliding window.

A sliding log rather than a token bucket: a full bucket plus its refill would allow nearly twice the
limit in the first window, and PagerDuty counts events per rolling minute.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    events: int
    per_seconds: float


class RateLimiter:
    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    def _window(self, key: str, limit: RateLimit, now: float) -> deque[float]:
        sent = self._sent.setdefault(key, deque())
        while sent and sent[0] <= now - limit.per_seconds:
            sent.popleft()
        return sent

    def try_take(self, key: str, limit: RateLimit, now: float, count: int = 1) -> bool:
        """Record ``count`` events if the window has room for them; False records nothing."""
        sent = self._window(key, limit, now)
        if len(sent) + count > limit.events:
            return False
        sent.extend([now] * count)
        return True

    def next_free(self, key: str, limit: RateLimit, now: float, count: int = 1) -> float:
        """The earliest time the window will have room for ``count`` events."""
        sent = self._window(key, limit, now)
        excess = len(sent) + count - limit.events
        if excess <= 0:
            return now
        if excess > len(sent):
            return now + limit.per_seconds  # larger than the whole limit: wait for an empty window
        return sent[excess - 1] + limit.per_seconds
