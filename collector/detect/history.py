"""A ring of past evaluation snapshots for the signals that rules read over a window.

Only the columns some rule needs a window of are kept, so a ten-minute window over a thousand
GPUs stays a few tens of megabytes. Window functions are array arithmetic over the ring.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class SignalHistory:
    """Snapshots of selected columns of one scope's signal matrix, one per evaluation tick."""

    def __init__(self, columns: list[int], depth: int, rows: int) -> None:
        self.columns = list(columns)
        self._slot = {c: i for i, c in enumerate(self.columns)}
        self.depth = max(2, depth)
        self.values: Array = np.full((self.depth, max(rows, 1), len(self.columns)), np.nan)
        self.times: Array = np.full(self.depth, np.nan)
        self.count = 0
        self.head = 0  # where the next snapshot goes

    @property
    def rows(self) -> int:
        return int(self.values.shape[1])

    def has(self, column: int) -> bool:
        return column in self._slot

    def push(self, now: float, matrix: Array) -> None:
        """Record the current values of the kept columns (matrix: rows x all columns of the scope)."""
        rows = matrix.shape[0]
        if rows > self.rows:
            grown = np.full((self.depth, max(rows, 2 * self.rows), len(self.columns)), np.nan)
            grown[:, : self.rows] = self.values
            self.values = grown
        snapshot = self.values[self.head]
        snapshot[:] = np.nan
        if self.columns:
            snapshot[:rows] = matrix[:, self.columns]
        self.times[self.head] = now
        self.head = (self.head + 1) % self.depth
        self.count = min(self.count + 1, self.depth)

    def forget_rows(self, rows: npt.NDArray[np.int64]) -> None:
        """A row now belongs to another GPU or host: its past is not this one's."""
        rows = rows[rows < self.rows]
        self.values[:, rows] = np.nan

    def _ordered(self) -> npt.NDArray[np.int64]:
        return (self.head - self.count + np.arange(self.count)) % self.depth

    def span(self) -> float:
        if self.count == 0:
            return 0.0
        order = self._ordered()
        return float(self.times[order[-1]] - self.times[order[0]])

    def window(
        self, column: int, now: float, seconds: float, rows: int, *, whole: bool = False
    ) -> tuple[Array, Array] | None:
        """Snapshots (k x rows) of one column from the last one at or before ``now - seconds`` onwards.

        A shorter history gives what there is (a counter's increase since start is still an
        increase), unless ``whole``: then None, for judgements like "absent for the whole window"
        that must not be made on less data than they ask for.
        """
        if self.count == 0:
            return None
        order = self._ordered()
        times = self.times[order]
        start = now - seconds
        if whole and times[0] > start + 1e-9:
            return None
        first = int(np.searchsorted(times, start + 1e-9, side="right")) - 1
        picked = order[max(first, 0) :]
        values = self.values[picked, :rows, self._slot[column]]
        if values.shape[1] < rows:
            values = np.concatenate([values, np.full((len(picked), rows - values.shape[1]), np.nan)], axis=1)
        return self.times[picked], values


def increase(times: Array, values: Array, current: Array) -> Array:
    """Counter increase over the snapshots and the current value, counting a drop as a reset."""
    series = forward_fill(np.concatenate([values, current[None, :]], axis=0))
    with np.errstate(invalid="ignore"):
        diffs = np.diff(series, axis=0)
        steps = np.where(diffs >= 0, diffs, series[1:])  # after a reset the counter restarted from 0
    total = np.nansum(steps, axis=0)
    known = np.isfinite(series).sum(axis=0) >= 2
    return np.where(known, total, np.nan)


def forward_fill(series: Array) -> Array:
    """Carry each column's last known value over NaN gaps (a missed read is not a reset)."""
    known = np.isfinite(series)
    index = np.where(known, np.arange(series.shape[0])[:, None], 0)
    np.maximum.accumulate(index, axis=0, out=index)
    filled = series[index, np.arange(series.shape[1])[None, :]]
    # Leading NaNs stay NaN: index 0 was picked for them, and row 0 may itself be NaN.
    return np.where(np.maximum.accumulate(known, axis=0), filled, np.nan)
