"""Local GPU health checks modelled on DCGM's health watches: a pure core over successive samples.

Each tick the checker looks at one GPU's row (and the XIDs and losses seen since) and says OK, WARN
or FAIL with a reason per failing check. Counter checks look at growth over a sliding window, so a
burst raises a warning and the warning clears once the counter stops growing; state checks (a
pending remap, a link down) hold as long as the state does. ``HealthTracker`` turns a change of
status or reasons into a HealthChangeEvent, which the agent sends at once.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

from agent.records import GpuInfo, Row
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG

__all__ = ["CRITICAL_XIDS", "GpuHealth", "HealthChecker", "HealthThresholds", "HealthTracker", "Reason"]

OK, WARN, FAIL = pb.HEALTH_OK, pb.HEALTH_WARN, pb.HEALTH_FAIL

# XIDs that say the GPU itself is in trouble (NVIDIA's XID catalogue); application faults such as
# 13, 31, 43 and 45 are the job's problem and are only counted, never a health reason.
CRITICAL_XIDS: dict[int, pb.HealthStatus] = {
    48: FAIL,  # double-bit ECC error
    61: WARN,  # internal micro-controller breakpoint/warning
    62: FAIL,  # internal micro-controller halt
    63: WARN,  # ECC page retirement or row remap recorded: reset soon
    64: FAIL,  # ECC page retirement or row remap failed
    74: FAIL,  # NVLink error
    79: FAIL,  # fallen off the bus
    92: WARN,  # high single-bit ECC error rate
    94: WARN,  # contained ECC error: the application was killed
    95: FAIL,  # uncontained ECC error: reset required
    119: FAIL,  # GSP RPC timeout
    120: FAIL,  # GSP error
    140: FAIL,  # unrecovered ECC error
}


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When a check warns or fails. Counts are growth within ``window_s`` unless named otherwise."""

    window_s: float = 60.0
    pcie_replays: float = 8.0  # DCGM's PCIe watch: more than 8 replays a minute
    nvlink_crc_errors: float = 100.0
    retired_pages_total: float = 60.0  # retired pages (SBE + DBE) at which the GPU should be replaced
    remapped_uncorrectable: float = 8.0  # rows remapped for uncorrectable errors, lifetime
    xid_hold_s: float = 600.0  # a critical XID keeps its reason this long after its last occurrence
    busy_utilization: float = 0.1  # below this, a lower PCIe generation is power saving, not a fault


@dataclass(frozen=True, slots=True)
class Reason:
    check: str
    status: pb.HealthStatus
    message: str


@dataclass(frozen=True, slots=True)
class GpuHealth:
    status: pb.HealthStatus
    reasons: tuple[Reason, ...]

    @property
    def key(self) -> tuple[int, tuple[tuple[str, int], ...]]:
        """What counts as a change: the status and which checks fire at which level, not the wording."""
        return self.status, tuple(sorted((r.check, r.status) for r in self.reasons))


class _CounterWindow:
    """One counter's readings within the window, in flat arrays: 16 bytes a reading rather than the
    ~110 of a (time, value) tuple, which over GPUs x counters x window/interval adds up in the agent."""

    __slots__ = ("start", "times", "values")

    def __init__(self) -> None:
        self.times = array("d")
        self.values = array("d")
        self.start = 0  # readings before this index have left the window

    def add(self, t: float, value: float) -> None:
        if self.start < len(self.values) and value < self.values[-1]:
            self.clear()  # the driver reloaded and the counter restarted
        self.times.append(t)
        self.values.append(value)

    def clear(self) -> None:
        del self.times[:], self.values[:]
        self.start = 0

    def expire(self, before: float) -> None:
        """Drop readings older than ``before``; the arrays are compacted once half of them is dropped."""
        while self.start < len(self.times) and self.times[self.start] < before:
            self.start += 1
        if self.start and 2 * self.start >= len(self.times):
            del self.times[: self.start], self.values[: self.start]
            self.start = 0

    def growth(self) -> float:
        if len(self.values) - self.start < 2:
            # A lone reading after the window emptied: compare against nothing, not against zero.
            return 0.0
        return self.values[-1] - self.values[self.start]


@dataclass
class _GpuMemory:
    history: dict[str, _CounterWindow] = field(default_factory=dict)
    xids: dict[int, float] = field(default_factory=dict)  # xid -> time last seen
    lost: str = ""


_COUNTERS = (
    "pcie_replay",
    "nvlink_crc_errors",
    "nvlink_replay_errors",
    "nvlink_recovery_errors",
    "thermal_violation",
    "power_violation",
)


class HealthChecker:
    """DCGM-style checks for every GPU of one host; feed it each tick's row, XIDs and losses."""

    def __init__(self, field_ids: tuple[int, ...], thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self._col = {CATALOG[fid].name: i for i, fid in enumerate(field_ids)}
        self._gpus: dict[int, _GpuMemory] = {}

    def _mem(self, gpu: int) -> _GpuMemory:
        return self._gpus.setdefault(gpu, _GpuMemory())

    def observe_xid(self, gpu: int, xid: int, t: float) -> None:
        if xid in CRITICAL_XIDS:
            self._mem(gpu).xids[xid] = t

    def mark_lost(self, gpu: int, reason: str) -> None:
        self._mem(gpu).lost = reason or "GPU lost"

    def mark_back(self, gpu: int) -> None:
        """The GPU answers again (after a reset or driver reload); its other checks speak for it."""
        self._mem(gpu).lost = ""

    def evaluate(self, info: GpuInfo, t: float, row: Row) -> GpuHealth:
        """This GPU's health from its latest row (NaN: not read, so that check says nothing)."""
        mem = self._mem(info.index)
        th = self.thresholds
        if mem.lost:
            return GpuHealth(FAIL, (Reason("gpu_lost", FAIL, mem.lost),))

        def v(name: str) -> float:
            col = self._col.get(name)
            return math.nan if col is None else float(row[col])

        growth = {name: self._growth(mem, name, t, v(name)) for name in _COUNTERS}
        reasons: list[Reason] = []

        def check(cond: bool, name: str, status: pb.HealthStatus, message: str) -> None:
            if cond:
                reasons.append(Reason(name, status, message))

        window = f"in the last {th.window_s:g}s"
        # PCIe
        replays = growth["pcie_replay"]
        check(replays > th.pcie_replays, "pcie_replay_rate", WARN, f"{replays:g} PCIe replays {window}")
        gen, width = v("pcie_link_generation"), v("pcie_link_width")
        busy = v("utilization") >= th.busy_utilization or v("pstate") == 0
        check(
            info.pcie_max_generation > 0 and gen < info.pcie_max_generation and busy,
            "pcie_link_generation",
            WARN,
            f"PCIe link at gen {gen:g} under load, GPU supports gen {info.pcie_max_generation}",
        )
        check(
            info.pcie_max_width > 0 and width < info.pcie_max_width,
            "pcie_link_width",
            WARN,
            f"PCIe link x{width:g}, GPU supports x{info.pcie_max_width}",
        )
        # Memory
        dbe = v("ecc_uncorrected_volatile")
        check(dbe > 0, "memory_dbe", FAIL, f"{dbe:g} uncorrectable (double-bit) ECC errors since the driver loaded")
        check(v("remapped_rows_failure") >= 1, "memory_remap_failure", FAIL, "a row remap failed: replace the GPU")
        check(v("remapped_rows_pending") >= 1, "memory_remap_pending", WARN, "a row remap is pending: reset the GPU")
        check(v("retired_pages_pending") >= 1, "memory_retire_pending", WARN, "a page retirement is pending: reset")
        retired = v("retired_pages_sbe") + v("retired_pages_dbe")
        check(
            retired >= th.retired_pages_total,
            "memory_retired_pages",
            FAIL,
            f"{retired:g} retired pages (limit {th.retired_pages_total:g})",
        )
        remapped = v("remapped_rows_uncorrectable")
        check(
            remapped >= th.remapped_uncorrectable,
            "memory_remapped_rows",
            WARN,
            f"{remapped:g} rows remapped for uncorrectable errors (limit {th.remapped_uncorrectable:g})",
        )
        # Thermal and power
        thermal, power = growth["thermal_violation"], growth["power_violation"]
        check(thermal > 0, "thermal_violation", WARN, f"clocks held down by thermal limits for {thermal:.1f}s {window}")
        check(power > 0, "power_violation", WARN, f"clocks held down by the power limit for {power:.1f}s {window}")
        # NVLink
        down = v("nvlink_links_down")
        check(down > 0, "nvlink_down", FAIL, f"{down:g} of {info.nvlink_count} NVLink links down")
        crc = growth["nvlink_crc_errors"]
        check(crc > th.nvlink_crc_errors, "nvlink_crc_rate", WARN, f"{crc:g} NVLink CRC errors {window}")
        replay = growth["nvlink_replay_errors"]
        check(replay > 0, "nvlink_replay", WARN, f"{replay:g} NVLink replay errors {window}")
        recovery = growth["nvlink_recovery_errors"]
        check(recovery > 0, "nvlink_recovery", WARN, f"{recovery:g} NVLink recovery errors {window}")
        # XIDs
        for xid, seen in sorted(mem.xids.items()):
            if t - seen > th.xid_hold_s:
                del mem.xids[xid]
                continue
            reasons.append(Reason(f"xid_{xid}", CRITICAL_XIDS[xid], f"critical XID {xid} {t - seen:.0f}s ago"))
        status = max((r.status for r in reasons), default=OK)
        return GpuHealth(status, tuple(reasons))

    def _growth(self, mem: _GpuMemory, name: str, t: float, value: float) -> float:
        """How much a counter grew within the window; NaN readings are skipped, a reset starts afresh."""
        window = mem.history.get(name)
        if window is None:
            window = mem.history[name] = _CounterWindow()
        if not math.isnan(value):
            window.add(t, value)
        window.expire(t - self.thresholds.window_s)
        return window.growth()


class HealthTracker:
    """Remembers each GPU's last health and says when it changed, as the event to send."""

    def __init__(self) -> None:
        self._last: dict[int, GpuHealth] = {}

    def update(self, gpu: int, health: GpuHealth, unix_ns: int) -> pb.Event | None:
        previous = self._last.get(gpu)
        if previous is not None and previous.key == health.key:
            return None
        self._last[gpu] = health
        return pb.Event(
            unix_ns=unix_ns,
            health=pb.HealthChangeEvent(
                gpu_index=gpu,
                status=health.status,
                previous=previous.status if previous else pb.HEALTH_UNKNOWN,
                reasons=[pb.HealthReason(check=r.check, status=r.status, message=r.message) for r in health.reasons],
            ),
        )

    def current(self, gpu: int) -> GpuHealth | None:
        return self._last.get(gpu)
