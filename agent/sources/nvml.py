"""The NVML backend over nvidia-ml-py: inventory, tiered per-tick reads, XIDs, lost GPUs, driver reloads.

NVML's exceptions stop here: callers see GpuInfo, NaN-filled value rows and our own errors.

- Every field NVML offers as a field id is read in one ``nvmlDeviceGetFieldValues`` call per GPU per
  tick, each value checked against its own return code; the rest are the few getters with no field id.
- A field a GPU answers NOT_SUPPORTED is probed once at open, recorded in the inventory and never
  read again; it is NaN on the wire, never 0 or a sentinel.
- Each GPU is read in its own worker thread under a time budget, so one hung GPU costs its own row
  and not the tick; while its call is still stuck it is skipped rather than piling up threads.
- GPU_IS_LOST queues a GpuLostEvent at once and the other GPUs go on.
- UNINITIALIZED / DRIVER_NOT_LOADED / version mismatch mid-run (a driver reload) re-initialises NVML.
- Slow tier every ``slow_every`` ticks: compute processes and per-link NVLink state and counters;
  their last reading is repeated in between, since it is still the latest thing known.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent.hello import gpu_inventory
from agent.records import GpuInfo, GpuProcessInfo, MigInstance, Row, Rows
from agent.sources.gpu import BackendUnavailable
from agent.sources.xid import KmsgXidWatcher, NvmlXidWatcher, XidCoalescer
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG

__all__ = ["BATCHED_FIELDS", "GETTER_CALLS", "NvlinkState", "NvmlBackend", "NvmlStats"]

log = structlog.get_logger("gpulse.agent.nvml")

_FIELD_IDS = CATALOG.gpu_ids
_COL = {CATALOG[fid].name: i for i, fid in enumerate(_FIELD_IDS)}


@dataclass(frozen=True, slots=True)
class _Batched:
    """A catalog field read through nvmlDeviceGetFieldValues: the sum of ``fids`` times ``scale``."""

    name: str
    fids: tuple[str, ...]  # pynvml constant names, resolved against the module in use
    scale: float = 1.0
    fallback: str = ""  # a getter (mW/mJ, scaled the same) for drivers without the field id


BATCHED_FIELDS: tuple[_Batched, ...] = (
    _Batched("memory_temperature", ("NVML_FI_DEV_MEMORY_TEMP",)),
    _Batched(
        "energy_consumption", ("NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION",), 1e-3, "nvmlDeviceGetTotalEnergyConsumption"
    ),
    _Batched("power_usage", ("NVML_FI_DEV_POWER_INSTANT",), 1e-3, "nvmlDeviceGetPowerUsage"),
    _Batched("power_limit", ("NVML_FI_DEV_POWER_CURRENT_LIMIT",), 1e-3, "nvmlDeviceGetEnforcedPowerLimit"),
    _Batched("ecc_corrected_volatile", ("NVML_FI_DEV_ECC_SBE_VOL_TOTAL",)),
    _Batched("ecc_uncorrected_volatile", ("NVML_FI_DEV_ECC_DBE_VOL_TOTAL",)),
    _Batched("ecc_corrected_aggregate", ("NVML_FI_DEV_ECC_SBE_AGG_TOTAL",)),
    _Batched("ecc_uncorrected_aggregate", ("NVML_FI_DEV_ECC_DBE_AGG_TOTAL",)),
    _Batched("retired_pages_sbe", ("NVML_FI_DEV_RETIRED_SBE",)),
    _Batched("retired_pages_dbe", ("NVML_FI_DEV_RETIRED_DBE",)),
    _Batched("retired_pages_pending", ("NVML_FI_DEV_RETIRED_PENDING",)),
    _Batched("remapped_rows_correctable", ("NVML_FI_DEV_REMAPPED_COR",)),
    _Batched("remapped_rows_uncorrectable", ("NVML_FI_DEV_REMAPPED_UNC",)),
    _Batched("remapped_rows_pending", ("NVML_FI_DEV_REMAPPED_PENDING",)),
    _Batched("remapped_rows_failure", ("NVML_FI_DEV_REMAPPED_FAILURE",)),
    _Batched("pcie_replay", ("NVML_FI_DEV_PCIE_REPLAY_COUNTER",)),
    # Violation counters are in nanoseconds.
    _Batched("power_violation", ("NVML_FI_DEV_PERF_POLICY_POWER",), 1e-9),
    _Batched("thermal_violation", ("NVML_FI_DEV_PERF_POLICY_THERMAL",), 1e-9),
    # Totals over all links; where a GPU lacks them they come from the per-link counters (slow tier).
    _Batched(
        "nvlink_crc_errors",
        ("NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"),
    ),
    _Batched("nvlink_replay_errors", ("NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",)),
    _Batched("nvlink_recovery_errors", ("NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",)),
)

# Fields with no field id, each group one getter call per tick: (getter, fields it fills).
GETTER_CALLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nvmlDeviceGetUtilizationRates", ("utilization", "memory_copy_utilization")),
    ("nvmlDeviceGetMemoryInfo", ("memory_used", "memory_free", "memory_total")),
    ("nvmlDeviceGetTemperature", ("temperature",)),
    ("nvmlDeviceGetClockInfo:sm", ("sm_clock",)),
    ("nvmlDeviceGetClockInfo:mem", ("memory_clock",)),
    (
        "nvmlDeviceGetCurrentClocksEventReasons",
        (
            "clock_event_reasons",
            "clock_event_gpu_idle",
            "clock_event_applications_clocks",
            "clock_event_sw_power_cap",
            "clock_event_hw_slowdown",
            "clock_event_sync_boost",
            "clock_event_sw_thermal_slowdown",
            "clock_event_hw_thermal_slowdown",
            "clock_event_hw_power_brake",
        ),
    ),
    ("nvmlDeviceGetFanSpeed", ("fan_speed",)),
    ("nvmlDeviceGetPerformanceState", ("pstate",)),
    ("nvmlDeviceGetCurrPcieLinkGeneration", ("pcie_link_generation",)),
    ("nvmlDeviceGetCurrPcieLinkWidth", ("pcie_link_width",)),
)

# Newer getters and the names older drivers still answer to (ClocksEventReasons arrived in R535).
_GETTER_FALLBACKS = {"nvmlDeviceGetCurrentClocksEventReasons": "nvmlDeviceGetCurrentClocksThrottleReasons"}
_REASON_GETTERS = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")

_REASON_BITS = (
    ("clock_event_gpu_idle", "nvmlClocksEventReasonGpuIdle"),
    ("clock_event_applications_clocks", "nvmlClocksEventReasonApplicationsClocksSetting"),
    ("clock_event_sw_power_cap", "nvmlClocksEventReasonSwPowerCap"),
    ("clock_event_hw_slowdown", "nvmlClocksEventReasonHwSlowdown"),
    ("clock_event_sync_boost", "nvmlClocksEventReasonSyncBoost"),
    ("clock_event_sw_thermal_slowdown", "nvmlClocksEventReasonSwThermalSlowdown"),
    ("clock_event_hw_thermal_slowdown", "nvmlClocksEventReasonHwThermalSlowdown"),
    ("clock_event_hw_power_brake", "nvmlClocksEventReasonHwPowerBrakeSlowdown"),
)
# Slow-tier fields: repeated from their last reading between slow ticks.
_SLOW_FIELDS = ("nvlink_links_up", "nvlink_links_down", "compute_processes")
_LINK_FIDS = (
    "NVML_FI_DEV_NVLINK_GET_STATE",
    "NVML_FI_DEV_NVLINK_ERROR_DL_CRC",
    "NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY",
    "NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY",
)
_LINK_TOTALS = (
    ("nvlink_crc_errors", "crc_errors"),
    ("nvlink_replay_errors", "replay_errors"),
    ("nvlink_recovery_errors", "recovery_errors"),
)
_REINIT_CODES = ("NVML_ERROR_UNINITIALIZED", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIB_RM_VERSION_MISMATCH")
_INIT_HINTS = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "libnvidia-ml.so.1 was not found: is the NVIDIA driver installed?",
    "NVML_ERROR_DRIVER_NOT_LOADED": "the NVIDIA kernel driver is not loaded",
    "NVML_ERROR_NO_PERMISSION": "no permission to open the NVIDIA devices (/dev/nvidia*)",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "NVML library and kernel driver versions differ: reload the driver or reboot",
}


@dataclass(frozen=True, slots=True)
class NvlinkState:
    """One NVLink link of one GPU, from the slow tier."""

    link: int
    up: bool
    crc_errors: float
    replay_errors: float
    recovery_errors: float


@dataclass
class NvmlStats:
    calls: int = 0
    budget_exceeded: int = 0  # GPU reads that ran past their time budget
    skipped_stuck: int = 0  # GPU reads skipped because the last one is still stuck in the driver
    errors: int = 0
    reinits: int = 0
    gpus_lost: int = 0


@dataclass
class _Gpu:
    index: int
    handle: Any
    info: GpuInfo
    batch: list[tuple[int, _Batched]] = field(default_factory=list)  # (column, field) read in the batch
    batch_ids: list[int] = field(default_factory=list)  # NVML field ids, in request order
    fallbacks: list[tuple[int, _Batched]] = field(default_factory=list)
    getters: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    unsupported: set[int] = field(default_factory=set)  # catalog ids
    lost: bool = False
    links: list[NvlinkState] = field(default_factory=list)
    links_sent: list[tuple[int, bool, float, float, float]] = field(default_factory=list)
    processes: list[GpuProcessInfo] = field(default_factory=list)
    migs: list[MigInstance] = field(default_factory=list)
    slow: dict[str, float] = field(default_factory=dict)
    executor: ThreadPoolExecutor | None = None
    inflight: Future[Row] | None = None


class _Lost(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Reinit(Exception):
    pass


class _OverBudget(Exception):
    pass


class NvmlBackend:
    """GPU inventory and telemetry from NVML; pass ``nvml`` (a pynvml-like module) to use another."""

    name = "nvml"

    def __init__(
        self,
        nvml: Any = None,
        *,
        budget_s: float = 0.5,
        slow_every: int = 10,
        inventory_every: int = 300,
        init_wait_s: float = 0.0,
        init_retry_s: float = 5.0,
        xid_window_s: float = 10.0,
        xid_wait_ms: int = 500,
        kmsg_path: Path | None = Path("/dev/kmsg"),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._nvml = nvml
        self.budget_s = budget_s
        self.slow_every = max(1, slow_every)
        self.inventory_every = max(1, inventory_every)
        self.init_wait_s = init_wait_s
        self.init_retry_s = init_retry_s
        self.kmsg_path = kmsg_path
        self.xid_wait_ms = xid_wait_ms
        self.sleep = sleep
        self.monotonic = monotonic
        self.clock = clock
        self.stats = NvmlStats()
        self.xids = XidCoalescer(window_s=xid_window_s, monotonic=monotonic)
        # Set by the agent: called from any thread when an event should go out before the next tick.
        self.on_event: Callable[[], None] | None = None
        self.xids.on_ready = self._notify
        self.xid_source = ""  # "nvml", "kmsg" or "" when XIDs cannot be captured
        self._gpus: list[_Gpu] = []
        self._events: list[pb.Event] = []
        self._events_lock = threading.Lock()
        self._ticks = 0
        self._needs_reinit = False
        self._next_reinit = 0.0
        self._watcher: NvmlXidWatcher | KmsgXidWatcher | None = None
        self._closed = False
        self._sm_clock_max: dict[int, float] = {}

    # -- GpuBackend --------------------------------------------------------------------------------
    @property
    def field_ids(self) -> tuple[int, ...]:
        return _FIELD_IDS

    def open(self) -> list[GpuInfo]:
        """Initialise NVML (retrying for ``init_wait_s`` if set) and read every GPU's inventory."""
        nvml = self._module()
        deadline = self.monotonic() + self.init_wait_s
        while True:
            try:
                self._init(nvml)
                break
            except BackendUnavailable as exc:
                if self.monotonic() + self.init_retry_s > deadline:
                    raise
                log.warning("NVML not ready; retrying", error=str(exc), retry_in_s=self.init_retry_s)
                self.sleep(self.init_retry_s)
        self._start_xid_watch()
        return [g.info for g in self._gpus]

    def sample(self, unix_ns: int) -> Rows:
        out = [[math.nan] * len(_FIELD_IDS) for _ in self._gpus]
        if self._needs_reinit and not self._try_reinit():
            return out
        self._ticks += 1
        slow = (self._ticks - 1) % self.slow_every == 0
        # The inventory is read at open; this re-read catches changes made under a running agent
        # (a power limit or MIG mode set by an admin, persistence mode, a VBIOS update after reset).
        inventory = self._ticks > 1 and (self._ticks - 1) % self.inventory_every == 0
        submitted: dict[int, Future[Row]] = {}
        for g in self._gpus:
            if g.lost or g.executor is None:
                continue
            if g.inflight is not None and not g.inflight.done():
                self.stats.skipped_stuck += 1
                continue
            deadline = self.monotonic() + self.budget_s
            g.inflight = g.executor.submit(self._read_gpu, g, slow, deadline, inventory)
            submitted[g.index] = g.inflight
        done, _ = wait_futures(submitted.values(), timeout=self.budget_s)
        for index, future in submitted.items():
            if future not in done:
                self.stats.budget_exceeded += 1
                log.warning("GPU read exceeded its time budget", gpu=index, budget_s=self.budget_s)
                continue
            self._collect(self._gpus[index], future, out)
        return out

    def processes(self) -> dict[int, list[GpuProcessInfo]]:
        return {g.index: list(g.processes) for g in self._gpus if g.processes and not g.lost}

    def mig_instances(self) -> dict[int, list[MigInstance]]:
        return {g.index: list(g.migs) for g in self._gpus if g.migs and not g.lost}

    def links(self) -> dict[int, list[NvlinkState]]:
        """Per-link NVLink state and counters per GPU, as of the last slow tick."""
        return {g.index: list(g.links) for g in self._gpus if g.links}

    def counters(self) -> list[tuple[str, str, float]]:
        """The backend's own counters for the agent's /metrics: (name without _total, help, value)."""
        kmsg = self._watcher if isinstance(self._watcher, KmsgXidWatcher) else None
        return [
            ("gpulse_agent_nvml_calls", "NVML calls made to read GPUs.", self.stats.calls),
            ("gpulse_agent_nvml_errors", "NVML calls that returned an error.", self.stats.errors),
            (
                "gpulse_agent_nvml_read_budget_exceeded",
                "GPU reads past their time budget; that GPU's values were sent empty.",
                self.stats.budget_exceeded,
            ),
            (
                "gpulse_agent_nvml_reads_skipped",
                "GPU reads skipped because the previous one was still stuck in the driver.",
                self.stats.skipped_stuck,
            ),
            ("gpulse_agent_nvml_reinits", "NVML re-initialisations after a driver reload.", self.stats.reinits),
            ("gpulse_agent_gpus_lost", "GPUs reported lost (GPU_IS_LOST).", self.stats.gpus_lost),
            ("gpulse_agent_xids", "XID occurrences captured, before coalescing.", self.xids.occurrences),
            (
                "gpulse_agent_xid_unknown_gpu",
                "Kernel-log XID lines for a PCI address not in the inventory.",
                kmsg.unknown_gpu if kmsg else 0,
            ),
        ]

    def drain_events(self) -> list[pb.Event]:
        with self._events_lock:
            events, self._events = self._events, []
        return events + self.xids.drain()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_xid_watch()
        for g in self._gpus:
            if g.executor is not None:
                g.executor.shutdown(wait=False, cancel_futures=True)
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    # -- init --------------------------------------------------------------------------------------
    def _module(self) -> Any:
        if self._nvml is None:
            try:
                # A plain import, not importlib's: `python -X importtime` sees only these.
                import pynvml

                self._nvml = pynvml
            except ImportError as exc:
                raise BackendUnavailable(f"NVML bindings not installed (pip install nvidia-ml-py): {exc}") from exc
        return self._nvml

    def _init(self, nvml: Any) -> None:
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise BackendUnavailable(f"NVML init failed: {self._hint(exc)}") from exc
        try:
            count = nvml.nvmlDeviceGetCount()
            gpus = [self._open_gpu(nvml, i) for i in range(count)]
        except nvml.NVMLError as exc:
            raise BackendUnavailable(f"NVML inventory failed: {self._hint(exc)}") from exc
        if not gpus:
            raise BackendUnavailable("NVML found no GPUs on this host")
        for g in self._gpus:
            if g.executor is not None:
                g.executor.shutdown(wait=False, cancel_futures=True)
        self._gpus = gpus

    def _hint(self, exc: Any) -> str:
        nvml = self._nvml
        for name, hint in _INIT_HINTS.items():
            if getattr(nvml, name, None) == getattr(exc, "value", None):
                return f"{hint} ({exc})"
        return str(exc)

    def _open_gpu(self, nvml: Any, index: int) -> _Gpu:
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        g = _Gpu(index=index, handle=h, info=GpuInfo(index=index, uuid="", name=""))
        unsupported: set[int] = set()
        nvlink_totals_missing: set[int] = set()
        # Probe the batch once: NOT_SUPPORTED makes a field absent for good, recorded in the inventory.
        fids = sorted({getattr(nvml, n) for b in BATCHED_FIELDS for n in b.fids} | {nvml.NVML_FI_DEV_NVLINK_LINK_COUNT})
        probe = {v.fieldId: v for v in nvml.nvmlDeviceGetFieldValues(h, fids)}
        ok = {fid for fid, v in probe.items() if v.nvmlReturn == nvml.NVML_SUCCESS}
        for b in BATCHED_FIELDS:
            col = _COL[b.name]
            ids = [getattr(nvml, n) for n in b.fids]
            if any(i in ok for i in ids):
                g.batch.append((col, b))
                g.batch_ids.extend(i for i in ids if i in ok)
            elif b.fallback and _supported(nvml, functools.partial(getattr(nvml, b.fallback), h)):
                g.fallbacks.append((col, b))
            elif b.name.startswith("nvlink_"):  # may still come from the per-link counters
                nvlink_totals_missing.add(_FIELD_IDS[col])
            else:
                unsupported.add(_FIELD_IDS[col])
        g.batch_ids = sorted(set(g.batch_ids))
        for getter, names in GETTER_CALLS:
            older = _GETTER_FALLBACKS.get(getter)
            if _supported(nvml, functools.partial(self._call_getter, nvml, h, getter)):
                g.getters.append((getter, names))
            elif older and _supported(nvml, functools.partial(self._call_getter, nvml, h, older)):
                g.getters.append((older, names))
            else:
                unsupported.update(CATALOG.gpu(n).id for n in names)
        links = (
            int(probe[nvml.NVML_FI_DEV_NVLINK_LINK_COUNT].value.ullVal)
            if nvml.NVML_FI_DEV_NVLINK_LINK_COUNT in ok
            else 0
        )
        if links == 0:
            unsupported.update(CATALOG.gpu(n).id for n in ("nvlink_links_up", "nvlink_links_down"))
            unsupported.update(nvlink_totals_missing)
        if not _supported(nvml, lambda: nvml.nvmlDeviceGetComputeRunningProcesses(h)):
            unsupported.add(CATALOG.gpu("compute_processes").id)
        g.unsupported = unsupported
        g.info = self._inventory(nvml, h, index, links, unsupported)
        g.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gpulse-nvml-gpu{index}")
        return g

    def _inventory(self, nvml: Any, h: Any, index: int, links: int, unsupported: set[int]) -> GpuInfo:
        def opt(fn: Callable[[], Any], default: Any) -> Any:
            try:
                return fn()
            except nvml.NVMLError:
                return default

        lo, hi = opt(lambda: nvml.nvmlDeviceGetPowerManagementLimitConstraints(h), (0, 0))
        cuda = opt(nvml.nvmlSystemGetCudaDriverVersion, 0)
        mig = opt(lambda: nvml.nvmlDeviceGetMigMode(h), (0, 0))
        return GpuInfo(
            index=index,
            uuid=_text(nvml.nvmlDeviceGetUUID(h)),
            name=_text(nvml.nvmlDeviceGetName(h)),
            serial=_text(opt(lambda: nvml.nvmlDeviceGetSerial(h), "")),
            pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(h).busId),
            driver_version=_text(opt(nvml.nvmlSystemGetDriverVersion, "")),
            cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else "",
            vbios_version=_text(opt(lambda: nvml.nvmlDeviceGetVbiosVersion(h), "")),
            memory_total_bytes=int(opt(lambda: nvml.nvmlDeviceGetMemoryInfo(h).total, 0)),
            power_limit_min_watts=lo / 1000,
            power_limit_max_watts=hi / 1000,
            power_limit_default_watts=opt(lambda: nvml.nvmlDeviceGetPowerManagementDefaultLimit(h), 0) / 1000,
            persistence_mode=bool(opt(lambda: nvml.nvmlDeviceGetPersistenceMode(h), 0)),
            mig_mode=bool(mig[0]),
            pcie_max_generation=int(opt(lambda: nvml.nvmlDeviceGetMaxPcieLinkGeneration(h), 0)),
            pcie_max_width=int(opt(lambda: nvml.nvmlDeviceGetMaxPcieLinkWidth(h), 0)),
            nvlink_count=links,
            unsupported_field_ids=frozenset(unsupported),
        )

    # -- per tick ----------------------------------------------------------------------------------
    def _read_gpu(self, g: _Gpu, slow: bool, deadline: float, inventory: bool = False) -> Row:
        """One GPU's row; runs in that GPU's worker thread."""
        nvml = self._nvml
        row = [math.nan] * len(_FIELD_IDS)
        h = g.handle

        def call(fn: Callable[[], Any]) -> Any:
            if self.monotonic() > deadline:
                raise _OverBudget  # stop issuing calls once the budget is spent: the row is late anyway
            self.stats.calls += 1
            try:
                return fn()
            except nvml.NVMLError as exc:
                self._raise_for(exc)
                return None

        if g.batch_ids:
            values = call(lambda: nvml.nvmlDeviceGetFieldValues(h, g.batch_ids))
            if values is not None:
                got = {v.fieldId: _field_value(nvml, v) for v in values}
                for col, b in g.batch:
                    parts = [got.get(getattr(nvml, n), math.nan) for n in b.fids]
                    parts = [p for p in parts if not math.isnan(p)] if len(parts) > 1 else parts
                    row[col] = sum(parts) * b.scale if parts else math.nan
        for col, b in g.fallbacks:
            value = call(functools.partial(getattr(nvml, b.fallback), h))
            row[col] = math.nan if value is None else value * b.scale
        for getter, names in g.getters:
            value = call(functools.partial(self._call_getter, nvml, h, getter))
            if value is not None:
                for name, v in zip(names, self._getter_values(nvml, getter, value), strict=True):
                    row[_COL[name]] = v
        if slow:
            self._read_slow(g, call)
        if inventory:
            info = call(functools.partial(self._inventory, nvml, h, g.index, g.info.nvlink_count, g.unsupported))
            if info is not None and info != g.info:
                self._report_inventory(g, info)
        for name, value in g.slow.items():
            row[_COL[name]] = value
        for name, attr in _LINK_TOTALS:
            if g.links and math.isnan(row[_COL[name]]):
                row[_COL[name]] = sum(getattr(link, attr) for link in g.links)
        row[_COL["sm_clock_max"]] = self._sm_clock_max.get(g.index, math.nan)
        for fid in g.unsupported:
            row[_COL[CATALOG[fid].name]] = math.nan
        return row

    def _read_slow(self, g: _Gpu, call: Callable[[Callable[[], Any]], Any]) -> None:
        nvml = self._nvml
        h = g.handle
        if g.info.mig_mode:
            self._read_mig(g, call)
        elif CATALOG.gpu("compute_processes").id not in g.unsupported:
            procs = call(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(h))
            if procs is not None:
                g.processes = [
                    GpuProcessInfo(pid=int(p.pid), used_memory_bytes=int(p.usedGpuMemory or 0)) for p in procs
                ]
                g.slow["compute_processes"] = float(len(g.processes))
        if g.info.nvlink_count:
            ids = [(getattr(nvml, n), link) for link in range(g.info.nvlink_count) for n in _LINK_FIDS]
            values = call(lambda: nvml.nvmlDeviceGetFieldValues(h, ids))
            if values is not None:
                got = {(v.fieldId, v.scopeId): _field_value(nvml, v) for v in values}
                state, crc, replay, recovery = (getattr(nvml, n) for n in _LINK_FIDS)
                g.links = [
                    NvlinkState(
                        link=link,
                        up=got.get((state, link), 0.0) == 1.0,
                        crc_errors=got.get((crc, link), math.nan),
                        replay_errors=got.get((replay, link), math.nan),
                        recovery_errors=got.get((recovery, link), math.nan),
                    )
                    for link in range(g.info.nvlink_count)
                ]
                up = sum(1 for link in g.links if link.up)
                g.slow["nvlink_links_up"] = float(up)
                g.slow["nvlink_links_down"] = float(len(g.links) - up)
                self._report_links(g)

    def _read_mig(self, g: _Gpu, call: Callable[[Callable[[], Any]], Any]) -> None:
        """With MIG on, each instance is a device of its own: its memory, and the processes in it.

        Asked per instance rather than on the whole GPU, whose process list carries instance ids only
        for root and whose memory is the sum; an unprivileged agent still sees every instance this way.
        """
        nvml = self._nvml
        h = g.handle
        slots = call(lambda: nvml.nvmlDeviceGetMaxMigDeviceCount(h)) or 0
        migs: list[MigInstance] = []
        processes: list[GpuProcessInfo] = []
        for slot in range(int(slots)):
            try:
                mh = nvml.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
            except nvml.NVMLError as exc:
                if exc.value == nvml.NVML_ERROR_NOT_FOUND:
                    continue  # an empty slot: no instance created there
                self._raise_for(exc)
                continue
            uuid = _text(call(functools.partial(nvml.nvmlDeviceGetUUID, mh)) or "")
            gi = int(call(functools.partial(nvml.nvmlDeviceGetGpuInstanceId, mh)) or 0)
            ci = int(call(functools.partial(nvml.nvmlDeviceGetComputeInstanceId, mh)) or 0)
            memory = call(functools.partial(nvml.nvmlDeviceGetMemoryInfo, mh))
            if memory is not None:
                migs.append(MigInstance(uuid, gi, ci, int(memory.total), int(memory.used)))
            for p in call(functools.partial(nvml.nvmlDeviceGetComputeRunningProcesses, mh)) or []:
                processes.append(
                    GpuProcessInfo(
                        pid=int(p.pid),
                        used_memory_bytes=int(p.usedGpuMemory or 0),
                        mig_uuid=uuid,
                        gpu_instance_id=gi,
                        compute_instance_id=ci,
                    )
                )
        g.migs = migs
        g.processes = processes
        g.slow["compute_processes"] = float(len(processes))

    def _report_inventory(self, g: _Gpu, info: GpuInfo) -> None:
        changed = [
            f"{name} {getattr(g.info, name)!r} -> {getattr(info, name)!r}"
            for name in GpuInfo.__dataclass_fields__
            if getattr(g.info, name) != getattr(info, name)
        ]
        g.info = info
        log.info("GPU inventory changed", gpu=g.index, changes="; ".join(changed))
        with self._events_lock:
            self._events.append(
                pb.Event(
                    unix_ns=self.clock(),
                    inventory=pb.InventoryChangeEvent(gpu=gpu_inventory(info), what="; ".join(changed)),
                )
            )

    def _report_links(self, g: _Gpu) -> None:
        """Queue the per-link state when a link went up or down or a counter moved (and the first time)."""
        key = [(s.link, s.up, s.crc_errors, s.replay_errors, s.recovery_errors) for s in g.links]
        if repr(key) == repr(g.links_sent):  # as text: NaN (a counter not reported) equals itself
            return
        g.links_sent = key
        links = [
            pb.NvlinkLink(
                link=s.link,
                up=s.up,
                crc_errors=s.crc_errors,
                replay_errors=s.replay_errors,
                recovery_errors=s.recovery_errors,
            )
            for s in g.links
        ]
        with self._events_lock:
            self._events.append(pb.Event(unix_ns=self.clock(), nvlink=pb.NvlinkEvent(gpu_index=g.index, links=links)))

    def _collect(self, g: _Gpu, future: Future[Row], out: Rows) -> None:
        try:
            out[g.index] = future.result()
        except _Lost as lost:
            self._mark_lost(g, lost.reason)
        except _Reinit:
            self._needs_reinit = True
        except _OverBudget:
            self.stats.budget_exceeded += 1
        except Exception as exc:  # anything else from the driver costs this GPU's row, not the agent
            self.stats.errors += 1
            log.warning("GPU read failed", gpu=g.index, error=str(exc))

    def _raise_for(self, exc: Any) -> None:
        nvml = self._nvml
        self.stats.errors += 1
        if exc.value == nvml.NVML_ERROR_GPU_IS_LOST:
            raise _Lost(str(exc))
        if exc.value in {getattr(nvml, n) for n in _REINIT_CODES}:
            raise _Reinit
        # Anything else (NOT_SUPPORTED after a firmware change, TIMEOUT, UNKNOWN): this value is NaN.

    def _notify(self) -> None:
        if self.on_event is not None:
            self.on_event()

    def _mark_lost(self, g: _Gpu, reason: str) -> None:
        if g.lost:
            return
        g.lost = True
        g.processes = []
        self.stats.gpus_lost += 1
        log.error("GPU lost", gpu=g.index, uuid=g.info.uuid, reason=reason)
        with self._events_lock:
            self._events.append(
                pb.Event(unix_ns=self.clock(), gpu_lost=pb.GpuLostEvent(gpu_index=g.index, reason=f"NVML: {reason}"))
            )
        self._notify()

    def _try_reinit(self) -> bool:
        """After a driver reload: init again, match GPUs by uuid, report what changed."""
        now = self.monotonic()
        if now < self._next_reinit:
            return False
        self._next_reinit = now + self.init_retry_s
        nvml = self._nvml
        self._stop_xid_watch()
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
        before = {g.index: g for g in self._gpus}
        try:
            self._init(nvml)
        except BackendUnavailable as exc:
            log.warning("NVML re-init failed; will retry", error=str(exc))
            self._gpus = list(before.values())
            return False
        self.stats.reinits += 1
        self._needs_reinit = False
        # The Hello's GPU list is fixed for this boot: keep its length, report what changed in place.
        new = {g.index: g for g in self._gpus}
        kept: list[_Gpu] = []
        for index, old in before.items():
            g = new.get(index)
            if g is None:
                old.lost = True
                kept.append(old)
                continue
            changed = _identity(g.info) != _identity(old.info)
            if changed or old.lost:
                # A GPU lost before the reload that answers again is back: say so, so it is not lost forever.
                what = "changed after driver reload" if changed else "answering again after driver reload"
                with self._events_lock:
                    self._events.append(
                        pb.Event(
                            unix_ns=self.clock(),
                            inventory=pb.InventoryChangeEvent(gpu=gpu_inventory(g.info), what=what),
                        )
                    )
            kept.append(g)
        for index, g in new.items():
            if index not in before and g.executor is not None:
                # A GPU that was not there at start: this boot's Hello cannot carry it; the next start will.
                g.executor.shutdown(wait=False)
                log.warning("GPU appeared after a driver reload; reported from the next agent start", gpu=index)
        self._gpus = kept
        log.info("NVML re-initialised", gpus=len(new))
        self._start_xid_watch()
        return True

    # -- XIDs --------------------------------------------------------------------------------------
    def _start_xid_watch(self) -> None:
        nvml = self._nvml
        live = [g for g in self._gpus if not g.lost]  # a lost GPU's handle may predate a reload
        handles = {g.index: g.handle for g in live}
        self._sm_clock_max = {}
        for g in live:
            with contextlib.suppress(nvml.NVMLError):
                self._sm_clock_max[g.index] = nvml.nvmlDeviceGetMaxClockInfo(g.handle, nvml.NVML_CLOCK_SM) * 1e6
        try:
            if NvmlXidWatcher.supported(nvml, handles.values()):
                self._watcher = NvmlXidWatcher(
                    nvml,
                    handles,
                    self.xids,
                    uuid_to_index={g.info.uuid: g.index for g in live},
                    wait_ms=self.xid_wait_ms,
                    clock=self.clock,
                )
                self._watcher.start()
                self.xid_source = "nvml"
                return
        except nvml.NVMLError as exc:
            log.warning("NVML XID events unavailable", error=str(exc))
        if self.kmsg_path is None:
            self.xid_source = ""
            return
        try:
            self._watcher = KmsgXidWatcher(
                self.kmsg_path,
                self.xids,
                pci_to_index={g.info.pci_bus_id: g.index for g in self._gpus},
                clock=self.clock,
            )
            self._watcher.start()
            self.xid_source = "kmsg"
        except OSError as exc:
            self.xid_source = ""
            log.error(
                "no XID source: NVML events unsupported and the kernel log unreadable",
                path=str(self.kmsg_path),
                error=str(exc),
            )

    def _stop_xid_watch(self) -> None:
        if self._watcher is not None:
            self._watcher.shutdown()
            self._watcher = None

    # -- getters -----------------------------------------------------------------------------------
    @staticmethod
    def _call_getter(nvml: Any, h: Any, getter: str) -> Any:
        name, _, arg = getter.partition(":")
        fn = getattr(nvml, name)
        if name == "nvmlDeviceGetTemperature":
            return fn(h, nvml.NVML_TEMPERATURE_GPU)
        if name == "nvmlDeviceGetClockInfo":
            return fn(h, nvml.NVML_CLOCK_SM if arg == "sm" else nvml.NVML_CLOCK_MEM)
        return fn(h)

    @staticmethod
    def _getter_values(nvml: Any, getter: str, v: Any) -> tuple[float, ...]:
        name = getter.partition(":")[0]
        if name == "nvmlDeviceGetUtilizationRates":
            return v.gpu / 100, v.memory / 100
        if name == "nvmlDeviceGetMemoryInfo":
            return float(v.used), float(v.free), float(v.total)
        if name == "nvmlDeviceGetClockInfo":
            return (v * 1e6,)
        if name in _REASON_GETTERS:
            return (float(v), *(float(bool(v & getattr(nvml, bit))) for _, bit in _REASON_BITS))
        if name == "nvmlDeviceGetFanSpeed":
            return (v / 100,)
        return (float(v),)


def _supported(nvml: Any, fn: Callable[[], Any]) -> bool:
    """Whether a call works here; a driver too old to have the function counts as not supported."""
    try:
        fn()
    except nvml.NVMLError as exc:
        if exc.value in (nvml.NVML_ERROR_NOT_SUPPORTED, getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", -1)):
            return False
        raise
    except getattr(nvml, "NVMLLibraryMismatchError", ()):
        # nvidia-ml-py raises this, not an NVMLError, when a versioned function (e.g.
        # nvmlDeviceGetComputeRunningProcesses_v3, R510+) is missing from an older driver.
        return False
    return True


def _field_value(nvml: Any, v: Any) -> float:
    """A field value as a float, NaN when its own return code is not success."""
    if v.nvmlReturn != nvml.NVML_SUCCESS:
        return math.nan
    t = v.valueType
    if t == nvml.NVML_VALUE_TYPE_DOUBLE:
        return float(v.value.dVal)
    if t == nvml.NVML_VALUE_TYPE_UNSIGNED_INT:
        return float(v.value.uiVal)
    if t == nvml.NVML_VALUE_TYPE_UNSIGNED_LONG:
        return float(v.value.ulVal)
    if t == nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return float(v.value.sllVal)
    if t == getattr(nvml, "NVML_VALUE_TYPE_SIGNED_INT", -1):
        return float(v.value.siVal)
    if t == getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_SHORT", -1):
        return float(v.value.usVal)
    return float(v.value.ullVal)


def _identity(info: GpuInfo) -> tuple[object, ...]:
    return (info.uuid, info.name, info.pci_bus_id, info.driver_version, info.vbios_version, info.memory_total_bytes)


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
