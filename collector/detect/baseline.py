"""Per-series baselines: where each series usually sits, learned robustly, and how far it is now.

A Huber-clipped EWMA of the level and of the absolute deviation, per series, all series at once.
Outliers move the baseline only a little (clipped residuals, and a tenth of the learning rate
while the series is anomalous), so a fault does not teach the baseline that it is normal. A series
whose load band changes (a job starting or stopping) settles before it is scored again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BaselineSignal:
    name: str
    floor: float  # smallest scale, in the signal's unit: below it, differences are noise


DEFAULT_BASELINE_SIGNALS = (
    BaselineSignal("peer_deviation_temperature", 1.0),
    BaselineSignal("peer_deviation_power_usage", 10.0),
    BaselineSignal("peer_deviation_sm_clock", 30e6),
)


class BaselineDetector:
    """Produces ``baseline_score_<signal>``: distance from the series' own baseline in robust units."""

    def __init__(
        self,
        signals: tuple[BaselineSignal, ...] = DEFAULT_BASELINE_SIGNALS,
        *,
        half_life: float = 600.0,
        warmup: float = 120.0,
        settle: float = 90.0,
        clip: float = 3.0,
        anomalous: float = 4.0,
    ) -> None:
        self.signals = signals
        self.half_life = half_life
        self.warmup = warmup
        self.settle = settle
        self.clip = clip
        self.anomalous = anomalous
        self.outputs = tuple(f"baseline_score_{s.name}" for s in signals)
        n = len(signals)
        self.mean: Array = np.full((0, n), np.nan)
        self.scale: Array = np.full((0, n), np.nan)
        self.learned: Array = np.zeros((0, n))  # seconds of data learned from
        self.band: IntArray = np.full(0, -2, dtype=np.int64)
        self.settled_at: Array = np.zeros(0)
        self.last: float | None = None

    def _fit(self, rows: int) -> None:
        if rows <= len(self.mean):
            return
        extra = rows - len(self.mean)
        n = len(self.signals)
        self.mean = np.concatenate([self.mean, np.full((extra, n), np.nan)])
        self.scale = np.concatenate([self.scale, np.full((extra, n), np.nan)])
        self.learned = np.concatenate([self.learned, np.zeros((extra, n))])
        self.band = np.concatenate([self.band, np.full(extra, -2, dtype=np.int64)])
        self.settled_at = np.concatenate([self.settled_at, np.zeros(extra)])

    def forget(self, rows: IntArray) -> None:
        rows = rows[rows < len(self.mean)]
        self.mean[rows] = np.nan
        self.scale[rows] = np.nan
        self.learned[rows] = 0.0
        self.band[rows] = -2

    def score(self, read: dict[str, Array], band: IntArray, now: float) -> dict[str, Array]:
        rows = len(band)
        self._fit(rows)
        dt = 1.0 if self.last is None else max(0.0, now - self.last)
        self.last = now
        alpha = 1.0 - 0.5 ** (dt / self.half_life)
        changed = band != self.band[:rows]
        self.band[:rows] = band
        self.settled_at[:rows][changed] = now + self.settle
        settled = now >= self.settled_at[:rows]
        out: dict[str, Array] = {}
        for j, sig in enumerate(self.signals):
            x = read[sig.name]
            mean = self.mean[:rows, j]
            scale = self.scale[:rows, j]
            fresh = np.isnan(mean) & np.isfinite(x) & settled
            mean[fresh] = x[fresh]
            scale[fresh] = sig.floor
            s = np.maximum(np.nan_to_num(scale, nan=sig.floor), sig.floor)
            resid = x - mean
            z = resid / (1.25 * s)  # mean absolute deviation is 0.8 sigma for normal noise
            ready = settled & (self.learned[:rows, j] >= self.warmup) & np.isfinite(z)
            out[f"baseline_score_{sig.name}"] = np.where(ready, z, np.nan)
            learn = settled & np.isfinite(x) & ~fresh
            rate = np.where(np.abs(np.nan_to_num(z)) > self.anomalous, alpha / 10.0, alpha)
            clipped = np.clip(np.nan_to_num(resid), -self.clip * s, self.clip * s)
            mean[learn] += (rate * clipped)[learn]
            scale[learn] += (rate * (np.minimum(np.abs(np.nan_to_num(resid)), self.clip * s) - s))[learn]
            self.learned[:rows, j] += np.where(learn | fresh, dt, 0.0)
        return out
