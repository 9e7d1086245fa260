"""Peer comparison: how far each GPU sits from GPUs like it, under comparable load.

Peers are the GPUs of the same model on the same host running the same job in the same load band;
where fewer than ``min_peers`` such GPUs exist the comparison widens to the same job fleet-wide,
then (for GPUs with no known job) to the same model fleet-wide. The score is the distance from the peer median in robust
units (1.4826 x MAD), with a floor per signal so that a perfectly uniform group does not turn a
rounding step into an alarm. Everything is computed for all GPUs at once with sorts and scatters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Utilization bands that count as comparable load: idle, light, medium, busy.
LOAD_BANDS = np.array([0.05, 0.5, 0.85])


def load_band(utilization: Array) -> IntArray:
    """0 idle, 1 light, 2 medium, 3 busy; -1 where utilization was not read."""
    band = np.digitize(np.nan_to_num(utilization, nan=-1.0), LOAD_BANDS).astype(np.int64)
    return np.where(np.isfinite(utilization), band, -1)


def group_median(values: Array, groups: IntArray) -> tuple[Array, Array, IntArray]:
    """Per row: the median and MAD of its group's finite values, and how many there were.

    ``groups`` holds a group id per row, -1 for rows that belong to none.
    """
    n = len(values)
    median = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    count = np.zeros(n, dtype=np.int64)
    member = (groups >= 0) & np.isfinite(values)
    if not member.any():
        return median, mad, count
    ids, inverse = np.unique(groups[member], return_inverse=True)
    vals = values[member]
    med_g, counts = _median_by_group(vals, inverse, len(ids))
    dev = np.abs(vals - med_g[inverse])
    mad_g, _ = _median_by_group(dev, inverse, len(ids))
    # Rows outside a group (or with a NaN value) still get their group's figures if it has one.
    pos = np.searchsorted(ids, groups)
    pos = np.clip(pos, 0, len(ids) - 1)
    has = (groups >= 0) & (ids[pos] == groups)
    median[has] = med_g[pos[has]]
    mad[has] = mad_g[pos[has]]
    count[has] = counts[pos[has]]
    return median, mad, count


def _median_by_group(values: Array, group: IntArray, n_groups: int) -> tuple[Array, IntArray]:
    order = np.lexsort((values, group))
    sorted_vals = values[order]
    counts = np.bincount(group, minlength=n_groups).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    lo = sorted_vals[starts + (counts - 1) // 2]
    hi = sorted_vals[starts + counts // 2]
    return (lo + hi) / 2.0, counts


def combine(*keys: IntArray) -> IntArray:
    """One group id per row from several integer keys; -1 in any key gives -1."""
    stacked = np.stack(keys, axis=1)
    bad = (stacked < 0).any(axis=1)
    if len(stacked) == 0:
        return np.zeros(0, dtype=np.int64)
    _, ids = np.unique(stacked, axis=0, return_inverse=True)
    return np.where(bad, -1, ids.reshape(-1)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class PeerSignal:
    """A signal compared with peers; the score's floor is ``floor`` plus ``relative`` x the reference."""

    name: str
    floor: float = 0.0
    relative: float = 0.0
    reference: str = ""  # a signal giving the scale, e.g. sm_clock_max for sm_clock


DEFAULT_PEER_SIGNALS = (
    PeerSignal("sm_clock", relative=0.02, reference="sm_clock_max"),
    PeerSignal("power_usage", relative=0.04, reference="power_limit"),
    PeerSignal("temperature", floor=1.5),
    PeerSignal("utilization", floor=0.05),
)


class PeerDetector:
    """Scores every GPU against its peers; produces ``peer_score_<signal>`` and ``peer_deviation_<signal>``."""

    def __init__(self, signals: tuple[PeerSignal, ...] = DEFAULT_PEER_SIGNALS, *, min_peers: int = 3) -> None:
        self.signals = signals
        self.min_peers = min_peers
        self.outputs = tuple(name for s in signals for name in (f"peer_score_{s.name}", f"peer_deviation_{s.name}"))

    def score(
        self,
        read: dict[str, Array],
        *,
        host_slot: IntArray,
        model: IntArray,
        job: IntArray,
        valid: npt.NDArray[np.bool_],
    ) -> dict[str, Array]:
        """``read`` maps signal names to current values over GPU rows."""
        band = load_band(read["utilization"])
        band = np.where(valid, band, -1)
        levels = (
            combine(host_slot, model, job, band),
            combine(model, job, band),
            # Only GPUs with no known job fall back to any GPU of their model: a job's GPUs are
            # not compared with another job's, whose work may differ.
            np.where(job == 0, combine(model, band), -1),
        )
        out: dict[str, Array] = {}
        for sig in self.signals:
            values = read[sig.name]
            median = np.full(len(values), np.nan)
            mad = np.full(len(values), np.nan)
            for groups in levels:
                med, m, count = group_median(values, groups)
                take = np.isnan(median) & (count >= self.min_peers)
                median[take] = med[take]
                mad[take] = m[take]
            floor = np.full(len(values), sig.floor)
            if sig.reference:
                floor = floor + sig.relative * np.nan_to_num(read[sig.reference], nan=0.0)
            scale = np.maximum(1.4826 * mad, floor)
            deviation = values - median
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"peer_score_{sig.name}"] = np.where(scale > 0, deviation / scale, np.nan)
            out[f"peer_deviation_{sig.name}"] = deviation
        return out
