"""An agent's clock offset from the collector's, kept current from the send stamps on its messages."""

from __future__ import annotations

from collections import deque


class ClockSkew:
    """Agent clock minus collector clock, in seconds.

    A send stamp read on arrival is the offset minus that message's delay in transit and in queues,
    which is never negative, so each reading errs low by its delay. The highest of the last
    ``window`` readings is the least delayed one: it follows the offset to within the fastest
    transit (well under a millisecond on a LAN), and neither a backlog being sent nor a busy
    collector drags it down. A clock that jumps ahead shows at once; one that falls back shows once
    ``window`` messages (about half a minute at 1 Hz) have passed.
    """

    def __init__(self, window: int = 32) -> None:
        self._readings: deque[int] = deque(maxlen=window)

    def observe(self, sent_ns: int, received_ns: int) -> float:
        """Take one message's send stamp and arrival time (Unix ns); returns the current estimate."""
        self._readings.append(sent_ns - received_ns)
        return max(self._readings) / 1e9
