"""Simulated GPUs: seeded, believable H100/A100 behaviour, and the fault catalogue injected on schedule.

The simulator is a product feature: it drives the demo, the load generator and the detection
scenarios, so its faults look like the real ones do in NVML (counters that grow, flags that set,
clocks that fall, XIDs that arrive as events) rather than like test fixtures.
"""

from __future__ import annotations

import enum
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.records import GpuInfo, GpuProcessInfo, MigInstance, Row, Rows
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG

__all__ = ["PROFILES", "Fault", "FaultKind", "GpuProfile", "LoadPattern", "SimBackend"]


@dataclass(frozen=True, slots=True)
class GpuProfile:
    name: str
    memory_bytes: int
    tdp_watts: float
    idle_watts: float
    sm_clock_max_hz: float
    sm_clock_idle_hz: float
    memory_clock_hz: float
    nvlink_count: int
    pcie_generation: int
    vbios: str


PROFILES: dict[str, GpuProfile] = {
    "H100": GpuProfile(
        "NVIDIA H100 80GB HBM3", 80 * 2**30, 700.0, 70.0, 1980e6, 345e6, 2619e6, 18, 5, "96.00.99.00.01"
    ),
    "A100": GpuProfile(
        "NVIDIA A100-SXM4-80GB", 80 * 2**30, 400.0, 55.0, 1410e6, 210e6, 1593e6, 12, 4, "92.00.45.00.03"
    ),
}


class LoadPattern(enum.Enum):
    IDLE = "idle"
    TRAINING = "training"
    INFERENCE = "inference"
    MIXED = "mixed"  # jobs start and stop: training stretches with idle gaps
    BURSTY = "bursty"  # request-driven: utilization jumps to a new level every few tens of seconds


class FaultKind(enum.Enum):
    XID = "xid"
    GPU_LOST = "gpu_lost"
    DBE = "dbe"
    REMAP_PENDING = "remap_pending"
    REMAP_FAILURE = "remap_failure"
    THERMAL_RUNAWAY = "thermal_runaway"
    POWER_BRAKE = "power_brake"
    NVLINK_ERRORS = "nvlink_errors"
    PCIE_REPLAY_STORM = "pcie_replay_storm"
    LINK_DOWNGRADE = "link_downgrade"
    HUNG = "hung"
    STRAGGLER = "straggler"


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault on one GPU, from ``at`` seconds after start, for ``duration`` seconds (0: for good).

    ``severity`` is 0..1 and scales how bad a gray fault is; ``xid`` is the code for an XID fault.
    """

    kind: FaultKind
    gpu: int
    at: float = 0.0
    duration: float = 0.0
    severity: float = 0.5
    xid: int = 0
    count: int = 1

    def active(self, elapsed: float) -> bool:
        return elapsed >= self.at and (self.duration <= 0 or elapsed < self.at + self.duration)


_F = {f.name: i for i, f in enumerate(f for f in CATALOG.fields if f.id in CATALOG.gpu_ids)}
_GPU_IDS = CATALOG.gpu_ids
# NVML clock-event reason bits (nvmlClocksEventReason*).
_IDLE, _SW_POWER, _HW_SLOW, _SW_THERMAL, _HW_THERMAL, _POWER_BRAKE = 0x1, 0x4, 0x8, 0x20, 0x40, 0x80


@dataclass
class _GpuState:
    temp: float
    energy_j: float = 0.0
    pcie_replay: float = 0.0
    ecc_sbe: float = 0.0
    ecc_dbe: float = 0.0
    ecc_sbe_agg: float = 0.0
    ecc_dbe_agg: float = 0.0
    power_violation_s: float = 0.0
    thermal_violation_s: float = 0.0
    retired_sbe: float = 0.0
    retired_dbe: float = 0.0
    retired_pending: float = 0.0
    remap_corr: float = 0.0
    remap_uncorr: float = 0.0
    remap_pending: float = 0.0
    remap_failure: float = 0.0
    nvlink_crc: float = 0.0
    nvlink_replay: float = 0.0
    nvlink_recovery: float = 0.0
    lost: bool = False
    fired: set[int] = field(default_factory=set)  # ids of one-shot faults already applied
    # Per-link NVLink state last reported. All links up without errors is what the collector assumes
    # of a GPU it has heard nothing about, so a healthy simulated GPU sends nothing.
    links_sent: tuple[float, ...] = (0.0, 0, 0, 0)


class SimBackend:
    """A seeded simulated host of GPUs; pass the same seed and host to get the same numbers."""

    name = "sim"

    def __init__(
        self,
        host_id: str,
        *,
        count: int = 8,
        profile: str = "H100",
        pattern: LoadPattern = LoadPattern.TRAINING,
        seed: int = 0,
        faults: list[Fault] | None = None,
        start_unix_ns: int | None = None,
        driver_version: str = "550.90.07",
        fault_source: Callable[[], list[Fault]] | None = None,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown sim profile {profile!r}; known: {', '.join(PROFILES)}")
        if not 1 <= count <= 64:
            raise ValueError(f"sim GPU count must be 1..64, got {count}")
        self.host_id = host_id
        self.count = count
        self.profile = PROFILES[profile]
        self.pattern = pattern
        self.driver_version = driver_version
        self._host_seed = zlib.crc32(host_id.encode()) ^ seed
        self._rng = random.Random(self._host_seed)
        self._faults: list[Fault] = list(faults or [])
        self._fault_source = fault_source  # faults injected at run time, e.g. a FaultInbox
        self._start_ns = start_unix_ns
        self._last_ns: int | None = None
        self._events: list[pb.Event] = []
        # Per-GPU constants: small manufacturing spread in cooling and clocks, a phase for the job cycle.
        self._cooling = [1.0 + self._rng.gauss(0, 0.03) for _ in range(count)]
        self._phase = [self._rng.uniform(0, 3600) for _ in range(count)]
        self._ambient = 24.0 + self._rng.gauss(0, 1.0)
        self._state = [_GpuState(temp=self._ambient + 8.0) for _ in range(count)]
        self._pcie_gen = [float(self.profile.pcie_generation)] * count
        self._pcie_width = [16.0] * count
        self._inventory = [self._info(i) for i in range(count)]

    # -- GpuBackend --------------------------------------------------------------------------------
    @property
    def field_ids(self) -> tuple[int, ...]:
        return _GPU_IDS

    def open(self) -> list[GpuInfo]:
        return list(self._inventory)

    def close(self) -> None:
        return None

    def inject(self, fault: Fault) -> None:
        """Add a fault at run time; ``fault.at`` counts from start like scheduled ones."""
        if not 0 <= fault.gpu < self.count:
            raise ValueError(f"fault on GPU {fault.gpu}, but this host has GPUs 0..{self.count - 1}")
        self._faults.append(fault)

    def inject_now(self, fault: Fault) -> None:
        """Add a fault that starts at the next sample, whatever ``fault.at`` says."""
        elapsed = 0.0
        if self._last_ns is not None and self._start_ns is not None:
            elapsed = (self._last_ns - self._start_ns) / 1e9
        self.inject(Fault(fault.kind, fault.gpu, elapsed, fault.duration, fault.severity, fault.xid, fault.count))

    def drain_events(self) -> list[pb.Event]:
        events, self._events = self._events, []
        return events

    def mig_instances(self) -> dict[int, list[MigInstance]]:
        return {}  # no MIG here

    def processes(self) -> dict[int, list[GpuProcessInfo]]:
        out: dict[int, list[GpuProcessInfo]] = {}
        if self._last_ns is None:
            return out
        t = self._last_ns / 1e9
        for i in range(self.count):
            if self._state[i].lost or self._utilization_target(i, t) <= 0.0:
                continue
            # Training is one job across the host's GPUs (what peer comparison groups by); the other
            # patterns run a job per GPU, starting and stopping on that GPU's own cycle.
            phase = self._phase[0] if self.pattern is LoadPattern.TRAINING else self._phase[i]
            job = 4000 + int((t + phase) // 1800) % 1000
            out[i] = [
                GpuProcessInfo(
                    pid=20000 + i,
                    used_memory_bytes=int(self.profile.memory_bytes * 0.8),
                    name="python3",
                    workload_kind="slurm",
                    workload_id=str(job),
                    workload_name="train-llm",
                    user="research",
                )
            ]
        return out

    def sample(self, unix_ns: int) -> Rows:
        if self._start_ns is None:
            self._start_ns = unix_ns
        if self._fault_source is not None:
            for fault in self._fault_source():
                self.inject_now(fault)
        last = self._last_ns
        first = last is None
        dt = 1.0 if last is None else max(0.0, (unix_ns - last) / 1e9)
        self._last_ns = unix_ns
        t = unix_ns / 1e9
        elapsed = (unix_ns - self._start_ns) / 1e9
        out = [[math.nan] * len(_GPU_IDS) for _ in range(self.count)]
        for i in range(self.count):
            self._sample_one(i, t, elapsed, dt, unix_ns, out[i], first)
        return out

    # -- model -------------------------------------------------------------------------------------
    def _info(self, i: int) -> GpuInfo:
        rng = random.Random(self._host_seed + 7919 * (i + 1))
        p = self.profile
        uuid = "GPU-" + "-".join(f"{rng.randrange(16**n):0{n}x}" for n in (8, 4, 4, 4, 12))
        return GpuInfo(
            index=i,
            uuid=uuid,
            name=p.name,
            serial=f"{rng.randrange(10**12, 10**13)}",
            pci_bus_id=f"00000000:{0x18 + 0x10 * i:02X}:00.0",
            driver_version=self.driver_version,
            cuda_version="12.4",
            vbios_version=p.vbios,
            memory_total_bytes=p.memory_bytes,
            power_limit_min_watts=p.tdp_watts * 0.3,
            power_limit_max_watts=p.tdp_watts,
            power_limit_default_watts=p.tdp_watts,
            persistence_mode=True,
            mig_mode=False,
            pcie_max_generation=p.pcie_generation,
            pcie_max_width=16,
            nvlink_count=p.nvlink_count,
            unsupported_field_ids=frozenset({CATALOG.gpu("fan_speed").id}),
        )

    def _utilization_target(self, i: int, t: float) -> float:
        cycle = (t + self._phase[i]) % 1800.0  # a 30-minute job cycle
        if self.pattern is LoadPattern.IDLE:
            return 0.0
        if self.pattern is LoadPattern.TRAINING:
            # Steady compute with a short dip every 10 minutes for a checkpoint.
            return 0.35 if (cycle % 600.0) < 15.0 else 0.96
        if self.pattern is LoadPattern.INFERENCE:
            return 0.35 + 0.25 * math.sin(2 * math.pi * t / 300.0 + self._phase[i])
        if self.pattern is LoadPattern.BURSTY:
            # A pseudo-random level per 20-second slot, the same for the same seed, host and time.
            slot = int((t + self._phase[i]) // 20.0)
            level = ((slot * 2654435761 + i * 40503) % 1000) / 1000.0
            return 0.0 if level < 0.15 else 0.1 + 0.9 * level
        # MIXED: a job runs for 25 minutes, then 5 idle minutes before the next one.
        return 0.95 if cycle < 1500.0 else 0.0

    def _sample_one(self, i: int, t: float, elapsed: float, dt: float, unix_ns: int, row: Row, first: bool) -> None:
        st, p, rng = self._state[i], self.profile, self._rng
        active = [f for f in self._faults if f.gpu == i and f.active(elapsed)]
        kinds = {f.kind: f for f in active}
        self._fire_one_shots(i, active, unix_ns)
        if st.lost:
            return  # a lost GPU answers nothing: the whole row stays NaN
        util = self._utilization_target(i, t)
        if util > 0:
            util = min(1.0, max(0.0, util + rng.gauss(0, 0.02)))
        power_limit = p.tdp_watts
        clock = p.sm_clock_max_hz if util > 0.05 else p.sm_clock_idle_hz
        reasons = _IDLE if util <= 0.05 else 0
        power = p.idle_watts + (p.tdp_watts * 0.92 - p.idle_watts) * util**1.2
        if util > 0.9:
            reasons |= _SW_POWER if rng.random() < 0.3 else 0
        if (f := kinds.get(FaultKind.HUNG)) is not None:
            util, clock = 1.0, p.sm_clock_max_hz
            power = p.idle_watts * (1.1 + 0.3 * (1 - f.severity))
            reasons = 0
        if (f := kinds.get(FaultKind.STRAGGLER)) is not None:
            clock *= 1.0 - 0.1 - 0.3 * f.severity
            power *= 1.0 - 0.15 - 0.25 * f.severity
            reasons |= _HW_SLOW
        if (f := kinds.get(FaultKind.POWER_BRAKE)) is not None:
            clock = p.sm_clock_idle_hz + (clock - p.sm_clock_idle_hz) * (0.5 - 0.4 * f.severity)
            power = p.idle_watts + (power - p.idle_watts) * 0.4
            reasons |= _POWER_BRAKE | _HW_SLOW
            st.power_violation_s += dt
        power = max(p.idle_watts * 0.9, power + rng.gauss(0, p.tdp_watts * 0.005))
        # Temperature relaxes toward a steady state set by power, cooling and a diurnal ambient swing.
        ambient = self._ambient + 2.0 * math.sin(2 * math.pi * (t % 86400.0) / 86400.0)
        target = ambient + 0.085 * power * self._cooling[i] * (400.0 / p.tdp_watts) ** 0.5
        if (f := kinds.get(FaultKind.THERMAL_RUNAWAY)) is not None:
            target += (elapsed - f.at) * (0.2 + 0.8 * f.severity)
        if first:
            st.temp = target  # start warm: a simulated host has been running before the agent
        st.temp += (target - st.temp) * (1.0 - math.exp(-dt / 60.0)) + rng.gauss(0, 0.15)
        if st.temp > 87.0:
            reasons |= _SW_THERMAL
            clock *= max(0.5, 1.0 - (st.temp - 87.0) * 0.03)
            st.thermal_violation_s += dt
            if st.temp > 92.0:
                reasons |= _HW_THERMAL
        if (f := kinds.get(FaultKind.PCIE_REPLAY_STORM)) is not None:
            st.pcie_replay += dt * (5 + 200 * f.severity) * rng.uniform(0.5, 1.5)
        if (f := kinds.get(FaultKind.NVLINK_ERRORS)) is not None:
            st.nvlink_crc += dt * (2 + 100 * f.severity) * rng.uniform(0.5, 1.5)
            st.nvlink_replay += dt * (1 + 20 * f.severity) * rng.uniform(0.5, 1.5)
            st.nvlink_recovery += dt * 0.2 * f.severity
        links_down = 0.0
        if (f := kinds.get(FaultKind.NVLINK_ERRORS)) is not None and f.severity >= 0.8:
            links_down = 1.0
        gen, width = self._pcie_gen[i], self._pcie_width[i]
        if (f := kinds.get(FaultKind.LINK_DOWNGRADE)) is not None:
            gen, width = (max(1.0, gen - 2), width) if f.severity < 0.5 else (gen, width / 2)
        st.energy_j += power * dt
        mem_used = p.memory_bytes * (0.82 if util > 0.05 else 0.0) + 512 * 2**20
        values = {
            "utilization": util,
            "memory_copy_utilization": util * 0.45,
            "memory_used": mem_used,
            "memory_free": p.memory_bytes - mem_used,
            "memory_total": float(p.memory_bytes),
            "temperature": round(st.temp),
            "memory_temperature": round(st.temp + 6.0),
            "power_usage": power,
            "power_limit": power_limit,
            "energy_consumption": st.energy_j,
            "sm_clock": round(clock / 15e6) * 15e6,
            "memory_clock": p.memory_clock_hz,
            "sm_clock_max": p.sm_clock_max_hz,
            "clock_event_reasons": float(reasons),
            "clock_event_gpu_idle": float(bool(reasons & _IDLE)),
            "clock_event_applications_clocks": 0.0,
            "clock_event_sw_power_cap": float(bool(reasons & _SW_POWER)),
            "clock_event_hw_slowdown": float(bool(reasons & _HW_SLOW)),
            "clock_event_sync_boost": 0.0,
            "clock_event_sw_thermal_slowdown": float(bool(reasons & _SW_THERMAL)),
            "clock_event_hw_thermal_slowdown": float(bool(reasons & _HW_THERMAL)),
            "clock_event_hw_power_brake": float(bool(reasons & _POWER_BRAKE)),
            "pcie_replay": math.floor(st.pcie_replay),
            "ecc_corrected_volatile": st.ecc_sbe,
            "ecc_uncorrected_volatile": st.ecc_dbe,
            "ecc_corrected_aggregate": st.ecc_sbe_agg,
            "ecc_uncorrected_aggregate": st.ecc_dbe_agg,
            "fan_speed": float("nan"),  # SXM parts have no fan of their own: NVML says NOT_SUPPORTED
            "pstate": 0.0 if util > 0.05 else 8.0,
            "pcie_link_generation": gen,
            "pcie_link_width": width,
            "power_violation": st.power_violation_s,
            "thermal_violation": st.thermal_violation_s,
            "retired_pages_sbe": st.retired_sbe,
            "retired_pages_dbe": st.retired_dbe,
            "retired_pages_pending": st.retired_pending,
            "remapped_rows_correctable": st.remap_corr,
            "remapped_rows_uncorrectable": st.remap_uncorr,
            "remapped_rows_pending": st.remap_pending,
            "remapped_rows_failure": st.remap_failure,
            "nvlink_crc_errors": math.floor(st.nvlink_crc),
            "nvlink_replay_errors": math.floor(st.nvlink_replay),
            "nvlink_recovery_errors": math.floor(st.nvlink_recovery),
            "nvlink_links_up": p.nvlink_count - links_down,
            "nvlink_links_down": links_down,
            "compute_processes": 1.0 if util > 0.05 else 0.0,
        }
        for name, value in values.items():
            row[_F[name]] = value
        self._report_links(i, unix_ns, links_down, st)

    def _report_links(self, i: int, unix_ns: int, links_down: float, st: _GpuState) -> None:
        """Per-link NVLink state when it changes, as NVML's slow tier would: the errors on link 0, which goes down."""
        key = (links_down, math.floor(st.nvlink_crc), math.floor(st.nvlink_replay), math.floor(st.nvlink_recovery))
        if key == st.links_sent:
            return
        st.links_sent = key
        links = [pb.NvlinkLink(link=n, up=True) for n in range(self.profile.nvlink_count)]
        if links:
            links[0] = pb.NvlinkLink(
                link=0, up=links_down == 0, crc_errors=key[1], replay_errors=key[2], recovery_errors=key[3]
            )
        self._events.append(pb.Event(unix_ns=unix_ns, nvlink=pb.NvlinkEvent(gpu_index=i, links=links)))

    def _fire_one_shots(self, i: int, active: list[Fault], unix_ns: int) -> None:
        """Faults that happen once at their start: an XID, a lost GPU, an ECC error, a remap."""
        st = self._state[i]
        for fault in active:
            key = id(fault)
            if key in st.fired:
                continue
            st.fired.add(key)
            k = fault.kind
            if k is FaultKind.XID:
                self._xid(i, fault.xid or 13, unix_ns, fault.count)
            elif k is FaultKind.GPU_LOST:
                st.lost = True
                self._xid(i, 79, unix_ns, 1)
                self._events.append(
                    pb.Event(
                        unix_ns=unix_ns, gpu_lost=pb.GpuLostEvent(gpu_index=i, reason="GPU has fallen off the bus")
                    )
                )
            elif k is FaultKind.DBE:
                st.ecc_dbe += 1
                st.ecc_dbe_agg += 1
                st.retired_dbe += 1
                st.retired_pending = 1.0
                st.remap_uncorr += 1
                st.remap_pending = 1.0
                self._xid(i, 48, unix_ns, 1)
            elif k is FaultKind.REMAP_PENDING:
                st.remap_uncorr += 1
                st.remap_pending = 1.0
                st.ecc_sbe += 3
                st.ecc_sbe_agg += 3
            elif k is FaultKind.REMAP_FAILURE:
                st.remap_failure = 1.0
                st.remap_uncorr += 1
                self._xid(i, 64, unix_ns, 1)

    def _xid(self, i: int, code: int, unix_ns: int, count: int) -> None:
        self._events.append(
            pb.Event(
                unix_ns=unix_ns,
                xid=pb.XidEvent(
                    gpu_index=i,
                    xid=code,
                    count=max(1, count),
                    message=f"NVRM: Xid (PCI:{self._inventory[i].pci_bus_id[4:]}): {code}, simulated",
                    source="sim",
                ),
            )
        )
