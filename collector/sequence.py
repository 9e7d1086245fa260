"""Which sequence numbers of a stream have been processed: a contiguous watermark plus a sparse set.

Records can arrive out of order (events are resent first after a reconnect), so the watermark only
advances over a contiguous run; anything at or below it, or in the set, is a duplicate.
"""

from __future__ import annotations


class SequenceTracker:
    def __init__(self, watermark: int = 0) -> None:
        self.watermark = watermark
        self._above: set[int] = set()

    def seen(self, seq: int) -> bool:
        return seq <= self.watermark or seq in self._above

    def mark(self, seq: int) -> None:
        """Record ``seq`` as processed and advance the watermark over any contiguous run."""
        if seq <= self.watermark:
            return
        self._above.add(seq)
        while self.watermark + 1 in self._above:
            self.watermark += 1
            self._above.discard(self.watermark)

    @property
    def gaps(self) -> int:
        """How many records above the watermark are processed while an earlier one is still missing."""
        return len(self._above)
