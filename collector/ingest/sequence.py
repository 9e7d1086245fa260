"""Which sequence numbers of a stream have been processed: a contiguous watermark plus a sparse set.

Records can arrive out of order (events are resent first after a reconnect), so the watermark only
advances over a contiguous run; anything at or below it, or in the set, is a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable


class SequenceTracker:
    def __init__(self, watermark: int = 0, above: Iterable[int] = ()) -> None:
        self.watermark = watermark
        self._above: set[int] = {s for s in above if s > watermark}
        self._advance()

    def seen(self, seq: int) -> bool:
        return seq <= self.watermark or seq in self._above

    def mark(self, seq: int) -> None:
        """Record ``seq`` as processed and advance the watermark over any contiguous run."""
        if seq <= self.watermark:
            return
        self._above.add(seq)
        self._advance()

    def mark_range(self, first: int, last: int) -> int:
        """Mark ``first..last`` processed; returns how many of them were not processed before."""
        first = max(first, self.watermark + 1)
        if last < first:
            return 0
        already = sum(1 for s in self._above if first <= s <= last)
        if first == self.watermark + 1:
            self._above = {s for s in self._above if s > last}
            self.watermark = last
        else:
            self._above.update(range(first, last + 1))
        self._advance()
        return last - first + 1 - already

    def _advance(self) -> None:
        while self.watermark + 1 in self._above:
            self.watermark += 1
            self._above.discard(self.watermark)

    @property
    def above(self) -> frozenset[int]:
        """Processed numbers above the watermark (waiting for an earlier one)."""
        return frozenset(self._above)

    @property
    def gaps(self) -> int:
        """How many records above the watermark are processed while an earlier one is still missing."""
        return len(self._above)
