"""Per-GPU metering over store rows: what each GPU did between its last two samples, as arrays.

Pure and vectorised: the service hands in the rows whose host sent a new frame, with the values
read from the store, and gets back each row's energy, busy and idle seconds for that interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Step:
    """One interval per row: from the row's previous sample to this one."""

    rows: IntArray
    dt: FloatArray  # seconds since the previous sample; 0 for a row's first sample
    energy_j: FloatArray
    estimated_j: FloatArray  # the part of energy_j integrated from power because the counter was missing
    busy_s: FloatArray  # activity x seconds
    idle_s: FloatArray  # seconds that became idle (low for longer than idle_after) in this step
    gap: BoolArray  # longer than max_gap: busy and idle unknown, energy still from the counter
    reset: BoolArray  # the energy counter went backwards (driver reload, reboot)
    power_w: FloatArray
    sm: BoolArray  # activity came from SM activity rather than utilisation
    implausible: BoolArray  # the counter moved faster than any GPU draws: not believed, power used


class GpuMeter:
    """Remembers each row's last sample time, energy counter and current low-activity run."""

    def __init__(
        self,
        *,
        idle_threshold: float,
        idle_after: float,
        max_gap: float,
        max_watts: float = 5000.0,
        capacity: int = 512,
    ) -> None:
        self.idle_threshold = idle_threshold
        self.max_watts = max_watts
        self.idle_after = idle_after
        self.max_gap = max_gap
        self.last_ns = np.zeros(capacity, dtype=np.int64)
        self.last_energy = np.full(capacity, np.nan)
        self.low_run = np.zeros(capacity)
        self.idle = np.zeros(capacity, dtype=bool)

    def ensure(self, capacity: int) -> None:
        if capacity <= len(self.last_ns):
            return
        extra = capacity - len(self.last_ns)
        self.last_ns = np.concatenate((self.last_ns, np.zeros(extra, dtype=np.int64)))
        self.last_energy = np.concatenate((self.last_energy, np.full(extra, np.nan)))
        self.low_run = np.concatenate((self.low_run, np.zeros(extra)))
        self.idle = np.concatenate((self.idle, np.zeros(extra, dtype=bool)))

    def forget(self, rows: IntArray) -> None:
        """A row now holds another GPU (or none): start it afresh."""
        self.last_ns[rows] = 0
        self.last_energy[rows] = np.nan
        self.restart_runs(rows)

    def restart_runs(self, rows: IntArray) -> None:
        """A new owner on these rows: an idle run belongs to one job, so it starts again."""
        self.low_run[rows] = 0.0
        self.idle[rows] = False

    def restore(self, row: int, last_ns: int, energy_j: float) -> None:
        """Where a GPU's counter stood when the collector last stopped, so the restart is a marked gap."""
        self.last_ns[row] = last_ns
        self.last_energy[row] = energy_j

    def step(
        self,
        rows: IntArray,
        t_ns: IntArray,
        energy: FloatArray,
        power: FloatArray,
        sm_activity: FloatArray,
        utilization: FloatArray,
    ) -> Step:
        last = self.last_ns[rows]
        first = last == 0
        dt = np.where(first, 0.0, (t_ns - last) / 1e9)
        dt = np.maximum(dt, 0.0)
        gap = dt > self.max_gap
        prev_e = self.last_energy[rows]
        counted = np.isfinite(energy) & np.isfinite(prev_e) & ~first
        reset = counted & (energy < prev_e)
        # After a reset the counter restarted within this interval, so its value is all this interval's.
        from_counter = np.where(reset, energy, energy - prev_e)
        # A counter that jumps further than any GPU could draw in the interval is a bad reading, not
        # energy: it would swamp every figure it lands in. Power stands in for it, as for no counter.
        implausible = counted & (from_counter > self.max_watts * np.maximum(dt, 1.0))
        counted &= ~implausible
        # No counter (unsupported, or missing at either end): power over the interval, never over a gap.
        can_estimate = ~counted & ~first & ~gap & np.isfinite(power)
        estimated = np.where(can_estimate, np.nan_to_num(power) * dt, 0.0)
        energy_j = np.where(counted, np.nan_to_num(from_counter), estimated)

        sm = np.isfinite(sm_activity)
        activity = np.where(sm, sm_activity, utilization)
        known = np.isfinite(activity) & ~gap & ~first
        busy = np.where(known, np.clip(np.nan_to_num(activity), 0.0, 1.0) * dt, 0.0)
        low = known & (activity < self.idle_threshold)
        high = known & ~low
        run = np.where(gap | first | high, 0.0, self.low_run[rows])
        was_idle = self.idle[rows] & ~(gap | first | high)
        run = np.where(low, run + dt, run)
        now_idle = was_idle | (low & (run > self.idle_after))
        # The whole run counts once it has lasted idle_after; after that, each low interval adds itself.
        idle_s = np.where(low & was_idle, dt, np.where(low & now_idle, run, 0.0))

        self.low_run[rows] = run
        self.idle[rows] = now_idle
        self.last_ns[rows] = t_ns
        self.last_energy[rows] = energy
        return Step(
            rows=rows,
            dt=dt,
            energy_j=energy_j,
            estimated_j=estimated,
            busy_s=busy,
            idle_s=idle_s,
            gap=gap,
            reset=reset,
            power_w=power,
            sm=sm & known,
            implausible=implausible,
        )
