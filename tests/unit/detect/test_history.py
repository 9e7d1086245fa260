from __future__ import annotations

import numpy as np
import pytest

from collector.detect.history import HistoryByDepth, SignalHistory, forward_fill


def _history(rows: list[list[float]]) -> SignalHistory:
    history = SignalHistory([0], depth=10, rows=len(rows[0]))
    for t, values in enumerate(rows):
        history.push(float(t), np.array(values)[:, None])
    return history


def test_increase_counts_resets_and_bridges_missing_reads() -> None:
    history = _history([[10.0, 5.0], [12.0, np.nan], [3.0, np.nan], [5.0, 9.0]])
    # column 0: +2, reset to 3 (counts 3), +2, then +1 now = 8; column 1: 5 -> 9 across the gap = 4
    assert history.increase(0, now=4.0, seconds=10.0, current=np.array([6.0, 9.0])).tolist() == [8.0, 4.0]
    # over the last 2s only: from the snapshot at t=2 (3.0) to 6.0
    assert history.increase(0, now=4.0, seconds=2.0, current=np.array([6.0, 9.0]))[0] == 3.0


def test_increase_of_a_series_never_read_is_nan() -> None:
    history = _history([[np.nan, 1.0]])
    out = history.increase(0, now=1.0, seconds=5.0, current=np.array([np.nan, 2.0]))
    assert np.isnan(out[0]) and out[1] == 1.0


def test_forward_fill_keeps_leading_gaps() -> None:
    series = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan]])
    filled = forward_fill(series)
    assert np.isnan(filled[0, 0])
    assert filled[1:, 0].tolist() == [2.0, 2.0] and filled[:, 1].tolist() == [1.0, 1.0, 1.0]


def test_window_picks_the_edge_sample_and_wraps_the_ring() -> None:
    history = SignalHistory([1], depth=4, rows=2)
    for t in range(6):
        history.push(float(t), np.array([[0.0, t], [0.0, 10.0 * t]]))
    got = history.window(1, now=5.0, seconds=2.0, rows=2)
    assert got is not None
    times, values = got
    assert times.tolist() == [3.0, 4.0, 5.0]
    assert values[:, 1].tolist() == [30.0, 40.0, 50.0]
    assert history.window(1, now=5.0, seconds=10.0, rows=2, whole=True) is None  # only 3s kept
    assert history.window(1, now=5.0, seconds=10.0, rows=2) is not None


def test_rows_grow_and_forgotten_rows_lose_their_past() -> None:
    history = SignalHistory([0], depth=3, rows=1)
    history.push(0.0, np.array([[1.0]]))
    history.push(1.0, np.array([[2.0], [5.0], [6.0]]))
    history.forget_rows(np.array([0]))
    got = history.window(0, now=1.0, seconds=1.0, rows=3)
    assert got is not None
    assert np.isnan(got[1][:, 0]).all()
    assert got[1][-1, 1:].tolist() == [5.0, 6.0]


def test_totals_kept_every_n_ticks_give_the_increase_from_the_snapshot_before_the_window() -> None:
    every = SignalHistory([0], depth=40, rows=1, values=False)
    sparse = SignalHistory([0], depth=10, rows=1, values=False, stride=5)
    for t in range(30):  # a counter growing by 1 a tick, reset to 0 at t=20
        value = np.array([[float(t if t < 20 else t - 20)]])
        every.push(float(t), value)
        sparse.push(float(t), value)
    now, current = np.float64(30.0), np.array([10.0])
    exact = every.increase(0, now=now, seconds=10.0, current=current)[0]
    assert exact == 10.0
    # Snapshots at 0, 5, ..., 25: the window (20, 30] starts from the one at 20, as the exact one does.
    assert sparse.increase(0, now=now, seconds=10.0, current=current)[0] == exact
    # A window starting between snapshots starts from the one before it: never less than the exact.
    assert sparse.increase(0, now=now, seconds=8.0, current=current)[0] == exact
    assert every.increase(0, now=now, seconds=8.0, current=current)[0] == 8.0
    with pytest.raises(ValueError, match="window functions"):
        SignalHistory([0], depth=10, rows=1, stride=5)  # raw snapshots are read one by one


def test_each_column_is_kept_as_deep_as_its_longest_window_and_only_in_the_form_read() -> None:
    depths = {(3, "totals"): ((123, 5),), (3, "values"): ((63, 1),), (7, "values"): ((33, 1),)}
    history = HistoryByDepth(depths, rows=1000)
    matrix = np.zeros((1000, 8))
    for t in range(200):
        matrix[:, 3] = t
        matrix[:, 7] = -t
        history.push(float(t), matrix)
    assert history.increase(3, now=200.0, seconds=600.0, current=np.full(1000, 200.0))[0] == 200.0
    got = history.window(7, now=199.0, seconds=30.0, rows=1000)
    assert got is not None and got[1][-1, 0] == -199.0 and len(got[0]) == 31
    # 1,000 rows: 123 totals + 63 + 33 snapshots of one column each, 8 bytes a value.
    assert history.nbytes == (123 + 63 + 33) * 1000 * 8


def test_a_short_window_reads_the_fine_ring_and_a_long_one_the_strided_ring() -> None:
    history = HistoryByDepth({(0, "totals"): ((33, 1), (123, 30))}, rows=1)
    for t in range(200):
        history.push(float(t), np.array([[float(t)]]))  # 1 a tick
    now, current = 200.0, np.array([200.0])
    assert history.increase(0, now, 30.0, current)[0] == 30.0  # every tick: exact
    assert history.increase_start(0, now, 30.0) == 170.0
    # Kept every 30 ticks (at 0, 30, ..., 180): 100 s back starts at 90, and the rate divides by 110.
    assert history.increase(0, now, 100.0, current)[0] == 110.0
    assert history.increase_start(0, now, 100.0) == 90.0
    assert history.nbytes == (33 + 123) * 8
