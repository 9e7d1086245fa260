"""Rings of past evaluation snapshots for the signals that rules read over a window.

Only the columns some rule needs a window of are kept, each only as deep as its longest window,
so a ten-minute window over a thousand GPUs stays a few tens of megabytes. Window functions are
array arithmetic over a ring. Next to each raw snapshot a ring keeps a reset-corrected running
total, so a counter's increase over any window is one subtraction per series however long the
window is.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class SignalHistory:
    """Snapshots of selected columns of one scope's signal matrix, one per evaluation tick."""

    def __init__(
        self,
        columns: list[int],
        depth: int,
        rows: int,
        *,
        values: bool = True,
        totals: bool = True,
        stride: int = 1,
    ) -> None:
        """``values`` keeps the raw snapshots (window functions), ``totals`` the running totals
        (increase and rate); a ring that is not kept takes no memory. With ``stride`` n, a snapshot
        is kept every n pushes (the running totals still see every one): an increase over a long
        window then starts at most n - 1 ticks before the window does, for a ring n times shorter."""
        if stride > 1 and values:
            raise ValueError("only running totals can be kept every n ticks: window functions read every snapshot")
        self.stride = max(1, stride)
        self._pushes = 0
        self.columns = list(columns)
        self._slot = {c: i for i, c in enumerate(self.columns)}
        self.depth = max(2, depth)
        self.keeps_values, self.keeps_totals = values, totals
        shape = (self.depth, max(rows, 1), len(self.columns))
        self.values: Array = np.full(shape if values else (self.depth, max(rows, 1), 0), np.nan)
        self.totals: Array = np.full(shape if totals else (self.depth, max(rows, 1), 0), np.nan)
        self._last: Array = np.full((max(rows, 1), len(self.columns)), np.nan)  # last value read
        self._total: Array = np.full_like(self._last, np.nan)  # running increase, resets counted
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
            size = max(rows, 2 * self.rows)
            self.values = _grow(self.values, size, axis=1)
            self.totals = _grow(self.totals, size, axis=1)
            self._last = _grow(self._last, size, axis=0)
            self._total = _grow(self._total, size, axis=0)
        raw = matrix[:, self.columns] if self.columns else None
        if raw is not None and self.keeps_totals:
            self._total[:rows] = self.total_now(raw)
            self._last[:rows] = np.where(np.isfinite(raw), raw, self._last[:rows])
        kept = self._pushes % self.stride == 0
        self._pushes += 1
        if not kept:
            return
        snapshot = self.values[self.head]
        snapshot[:] = np.nan
        totals = self.totals[self.head]
        totals[:] = np.nan
        if raw is not None:
            if self.keeps_values:
                snapshot[:rows] = raw
            if self.keeps_totals:
                totals[:rows] = self._total[:rows]
        self.times[self.head] = now
        self.head = (self.head + 1) % self.depth
        self.count = min(self.count + 1, self.depth)

    def forget_rows(self, rows: npt.NDArray[np.int64]) -> None:
        """A row now belongs to another GPU or host: its past is not this one's."""
        rows = rows[rows < self.rows]
        self.values[:, rows] = np.nan
        self.totals[:, rows] = np.nan
        self._last[rows] = np.nan
        self._total[rows] = np.nan

    def total_now(self, raw: Array) -> Array:
        """The running totals if ``raw`` (rows x kept columns) were read now: a drop is a counter reset."""
        rows = raw.shape[0]
        last, total = self._last[:rows], self._total[:rows]
        with np.errstate(invalid="ignore"):
            step = np.where(raw >= last, raw - last, raw)  # after a reset the counter restarted from 0
        step = np.where(np.isfinite(raw) & np.isfinite(last), step, 0.0)
        started = np.where(np.isnan(total) & np.isfinite(raw), 0.0, total)
        return started + step

    def increase(self, column: int, now: float, seconds: float, current: Array) -> Array:
        """A counter's increase over the window up to ``current`` (one value per row), resets included.

        A series younger than the window counts from its first reading; NaN until it has one.
        """
        rows = len(current)
        kept = self._slot[column]
        raw = np.full((rows, len(self.columns)), np.nan)
        raw[:, kept] = current
        now_total = self.total_now(raw)[:, kept]
        if self.count == 0:
            return np.where(np.isfinite(now_total), 0.0, np.nan)
        start = self.totals[self._start_slot(now, seconds), :rows, kept]
        if start.shape[0] < rows:
            start = np.concatenate([start, np.full(rows - start.shape[0], np.nan)])
        return now_total - np.where(np.isnan(start), 0.0, start)

    def increase_start(self, now: float, seconds: float) -> float:
        """When the snapshot an increase over ``seconds`` up to ``now`` starts from was taken: the
        last at or before the window's start (up to ``stride`` - 1 ticks before it), else the
        oldest; ``now`` when there is none. A rate divides the increase by the time since then."""
        return now if self.count == 0 else float(self.times[self._start_slot(now, seconds)])

    def _start_slot(self, now: float, seconds: float) -> int:
        order = self._ordered()
        first = max(int(np.searchsorted(self.times[order], now - seconds + 1e-9, side="right")) - 1, 0)
        return int(order[first])

    def _ordered(self) -> npt.NDArray[np.int64]:
        return (self.head - self.count + np.arange(self.count)) % self.depth

    def oldest(self) -> float:
        """Time of the oldest snapshot kept (inf when there is none)."""
        return float(self.times[self._ordered()[0]]) if self.count else float("inf")

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


class HistoryByDepth:
    """The windowed columns of one scope, each held only as far back as the longest window a rule
    reads it over, and only in the form it is read: running totals for increase and rate, raw
    snapshots for the other window functions. Totals read over long windows are kept every few
    ticks, in a ring of their own, so that a short window over the same counter still reads every
    tick. One SignalHistory per (depth, stride, form). (At 2,000 hosts x 8 GPUs, one ring of all 10
    windowed columns of the default pack, 30 minutes deep at 1 s in both forms, was 4.4 GB.)"""

    def __init__(
        self, depths: dict[tuple[int, str], tuple[tuple[int, int], ...]], rows: int, *, interval: float = 1.0
    ) -> None:
        """``depths``: (column, "totals" or "values") -> its rings, as (snapshots kept, ticks between
        them), finest first; ``interval``: seconds between ticks."""
        groups: dict[tuple[int, int, str], list[int]] = {}
        for (column, form), rings in depths.items():
            if form not in ("totals", "values"):
                raise ValueError(f"history form must be 'totals' or 'values', got {form!r}")
            for depth, stride in rings:
                groups.setdefault((max(2, depth), stride, form), []).append(column)
        self.depths = dict(depths)
        self.interval = interval
        built: dict[tuple[int, int, str], SignalHistory] = {}
        for (depth, stride, form), columns in sorted(groups.items()):
            built[depth, stride, form] = SignalHistory(
                sorted(columns), depth, rows, values=form == "values", totals=form == "totals", stride=stride
            )
        self._histories = list(built.values())
        # (column, form) -> [(ticks the ring covers, ring)], finest first
        self._of: dict[tuple[int, str], list[tuple[int, SignalHistory]]] = {
            (column, form): sorted(
                ((max(2, depth) - 3) * stride, built[max(2, depth), stride, form]) for depth, stride in rings
            )
            for (column, form), rings in depths.items()
        }
        self._rows = max(rows, 1)

    def _ring(self, column: int, form: str, seconds: float) -> SignalHistory:
        """The finest ring of the column that covers ``seconds``, else its deepest."""
        rings = self._of[column, form]
        ticks = seconds / self.interval - 1e-9
        return next((ring for covers, ring in rings if covers >= ticks), rings[-1][1])

    @property
    def rows(self) -> int:
        return max((h.rows for h in self._histories), default=self._rows)

    @property
    def nbytes(self) -> int:
        return sum(h.values.nbytes + h.totals.nbytes for h in self._histories)

    def push(self, now: float, matrix: Array) -> None:
        for history in self._histories:
            history.push(now, matrix)

    def forget_rows(self, rows: npt.NDArray[np.int64]) -> None:
        for history in self._histories:
            history.forget_rows(rows)

    def increase(self, column: int, now: float, seconds: float, current: Array) -> Array:
        return self._ring(column, "totals", seconds).increase(column, now, seconds, current)

    def increase_start(self, column: int, now: float, seconds: float) -> float:
        return self._ring(column, "totals", seconds).increase_start(now, seconds)

    def window(
        self, column: int, now: float, seconds: float, rows: int, *, whole: bool = False
    ) -> tuple[Array, Array] | None:
        return self._ring(column, "values", seconds).window(column, now, seconds, rows, whole=whole)


def _grow(array: Array, size: int, axis: int) -> Array:
    shape = list(array.shape)
    shape[axis] = size
    grown = np.full(shape, np.nan)
    index = [slice(None)] * array.ndim
    index[axis] = slice(0, array.shape[axis])
    grown[tuple(index)] = array
    return grown


def forward_fill(series: Array) -> Array:
    """Carry each column's last known value over NaN gaps (a missed read is not a reset)."""
    missing = np.isnan(series)
    gappy = missing.any(axis=0) & ~missing.all(axis=0)  # all-NaN columns stay NaN as they are
    if not gappy.any():
        return series
    sub = series[:, gappy]
    known = ~missing[:, gappy]
    index = np.where(known, np.arange(sub.shape[0])[:, None], 0)
    np.maximum.accumulate(index, axis=0, out=index)
    filled = sub[index, np.arange(sub.shape[1])[None, :]]
    # Leading NaNs stay NaN: index 0 was picked for them, and row 0 may itself be NaN.
    out = series.copy()
    out[:, gappy] = np.where(np.maximum.accumulate(known, axis=0), filled, np.nan)
    return out
