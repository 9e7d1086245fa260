"""A thermal model per GPU: how hot it should be for the power it has drawn, and how far off it is.

A GPU's temperature follows its power through its heat sink with a lag: to first order
T = ambient + R x P_lagged, where P_lagged is power through a low-pass filter with the sink's time
constant. Each GPU learns its own ambient and thermal resistance R by exponentially weighted
regression (so diurnal swings and slow ageing are followed), ridged toward a typical R where its
load has not varied enough to tell. The residual — measured minus expected — stays near zero
through job starts, stops and bursts, and grows when cooling degrades or heat runs away. Updates
are Huber-clipped and slowed while the GPU is anomalous, so a fault is not learned as normal.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class ThermalModelDetector:
    """Produces ``thermal_residual`` (celsius above expected) and ``thermal_score`` (robust sigmas)."""

    outputs = ("thermal_residual", "thermal_score")

    def __init__(
        self,
        *,
        time_constant: float = 60.0,
        half_life: float = 1800.0,
        warmup: float = 180.0,
        prior_resistance: float = 0.07,  # celsius per watt, typical of SXM parts under liquid or air
        prior_watts: float = 40.0,  # ridge strength, as a spread of power the prior is worth
        floor: float = 0.7,  # smallest residual scale, celsius: sensors read whole degrees
        clip: float = 3.0,
        anomalous: float = 4.0,
    ) -> None:
        self.time_constant = time_constant
        self.half_life = half_life
        self.warmup = warmup
        self.prior_resistance = prior_resistance
        self.ridge = prior_watts**2
        self.floor = floor
        self.clip = clip
        self.anomalous = anomalous
        self.lagged: Array = np.zeros(0)
        self.mean_p: Array = np.zeros(0)
        self.mean_t: Array = np.zeros(0)
        self.cov: Array = np.zeros(0)
        self.var: Array = np.zeros(0)
        self.scale: Array = np.zeros(0)
        self.learned: Array = np.zeros(0)
        self.last: float | None = None

    def _fit(self, rows: int) -> None:
        if rows <= len(self.lagged):
            return
        extra = rows - len(self.lagged)
        for name in ("lagged", "mean_p", "mean_t", "cov", "var", "scale"):
            setattr(self, name, np.concatenate([getattr(self, name), np.full(extra, np.nan)]))
        self.learned = np.concatenate([self.learned, np.zeros(extra)])

    def forget(self, rows: IntArray) -> None:
        rows = rows[rows < len(self.lagged)]
        for name in ("lagged", "mean_p", "mean_t", "cov", "var", "scale"):
            getattr(self, name)[rows] = np.nan
        self.learned[rows] = 0.0

    def score(self, temperature: Array, power: Array, now: float) -> dict[str, Array]:
        rows = len(temperature)
        self._fit(rows)
        dt = 1.0 if self.last is None else max(0.0, now - self.last)
        self.last = now
        ok = np.isfinite(temperature) & np.isfinite(power)
        lagged = self.lagged[:rows]
        fresh = ok & np.isnan(lagged)
        lagged[fresh] = power[fresh]
        step = ok & ~fresh
        lagged[step] += (1.0 - np.exp(-dt / self.time_constant)) * (power[step] - lagged[step])
        mean_p, mean_t, cov, var, scale = (
            self.mean_p[:rows],
            self.mean_t[:rows],
            self.cov[:rows],
            self.var[:rows],
            self.scale[:rows],
        )
        new = ok & np.isnan(mean_p)
        mean_p[new], mean_t[new], cov[new], var[new], scale[new] = lagged[new], temperature[new], 0.0, 0.0, self.floor
        resistance = (cov + self.ridge * self.prior_resistance) / (var + self.ridge)
        expected = mean_t + resistance * (lagged - mean_p)
        residual = np.where(ok, temperature - expected, np.nan)
        s = np.maximum(np.nan_to_num(scale, nan=self.floor), self.floor)
        z = residual / (1.25 * s)
        ready = ok & (self.learned[:rows] >= self.warmup)
        learn = ok & ~new
        alpha = 1.0 - 0.5 ** (dt / self.half_life)
        rate = np.where(np.abs(np.nan_to_num(z)) > self.anomalous, alpha / 10.0, alpha)[learn]
        # Learn from the temperature the model would accept: the expected one plus a clipped residual.
        bounded = np.clip(np.nan_to_num(residual), -self.clip * s, self.clip * s)
        t_seen = (expected + bounded)[learn]
        p_seen = lagged[learn]
        dp = p_seen - mean_p[learn]
        dtmp = t_seen - mean_t[learn]
        mean_p[learn] += rate * dp
        mean_t[learn] += rate * dtmp
        cov[learn] = (1 - rate) * (cov[learn] + rate * dp * dtmp)
        var[learn] = (1 - rate) * (var[learn] + rate * dp * dp)
        scale[learn] += rate * (np.abs(bounded[learn]) - s[learn])
        self.learned[:rows] += np.where(ok, dt, 0.0)
        return {
            "thermal_residual": np.where(ready, residual, np.nan),
            "thermal_score": np.where(ready, z, np.nan),
        }
