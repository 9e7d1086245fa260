"""A fake pynvml for machines without a GPU: the same function names, constants and error classes.

It raises pynvml's own ``NVMLError`` subclasses with the real return codes, returns pynvml's own
ctypes structures from ``nvmlDeviceGetFieldValues`` (with a return code per value), and lets a test
make any call unsupported, slow, hanging or failing per GPU, lose a GPU, unload the driver, and
deliver XID events through ``nvmlEventSetWait``. Every call is counted, per function and per GPU.
"""

# ruff: noqa: N802 - the names are pynvml's
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

NVMLError = pynvml.NVMLError

# A healthy H100 SXM at work, in NVML's own units (MHz, mW, mJ, percent, bytes).
_DEFAULT_FIELDS: dict[int, float] = {
    pynvml.NVML_FI_DEV_MEMORY_TEMP: 52,
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: 123_456_789,
    pynvml.NVML_FI_DEV_POWER_INSTANT: 612_000,
    pynvml.NVML_FI_DEV_POWER_CURRENT_LIMIT: 700_000,
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: 0,
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: 0,
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: 4,
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: 0,
    pynvml.NVML_FI_DEV_RETIRED_SBE: 0,
    pynvml.NVML_FI_DEV_RETIRED_DBE: 0,
    pynvml.NVML_FI_DEV_RETIRED_PENDING: 0,
    pynvml.NVML_FI_DEV_REMAPPED_COR: 1,
    pynvml.NVML_FI_DEV_REMAPPED_UNC: 0,
    pynvml.NVML_FI_DEV_REMAPPED_PENDING: 0,
    pynvml.NVML_FI_DEV_REMAPPED_FAILURE: 0,
    pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER: 0,
    pynvml.NVML_FI_DEV_PERF_POLICY_POWER: 0,
    pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL: 0,
    pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT: 18,
}


@dataclass
class FakeGpu:
    """One fake GPU: its identity, its readings in NVML units, and the faults a test gives it."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    serial: str = "1654922001234"
    pci_bus_id: str = "00000000:18:00.0"
    vbios: str = "96.00.99.00.01"
    memory_total: int = 80 * 2**30
    memory_used: int = 66 * 2**30
    utilization_gpu: int = 97
    utilization_memory: int = 41
    temperature: int = 64
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    sm_clock_max_mhz: int = 1980
    clocks_event_reasons: int = 0
    fan_speed: int = 0
    pstate: int = 0
    pcie_gen: int = 5
    pcie_width: int = 16
    pcie_max_gen: int = 5
    pcie_max_width: int = 16
    power_mw: int = 612_000
    power_limit_mw: int = 700_000
    power_min_mw: int = 200_000
    power_max_mw: int = 700_000
    persistence: int = 1
    mig: int = 0
    fields: dict[int, float] = field(default_factory=lambda: dict(_DEFAULT_FIELDS))
    # (field id, link) -> value for link-scoped field values; links default to up with zero errors.
    link_fields: dict[tuple[int, int], float] = field(default_factory=dict)
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, used bytes)
    # Function names answering NOT_SUPPORTED; an SXM board has no fan of its own.
    unsupported: set[str] = field(default_factory=lambda: {"nvmlDeviceGetFanSpeed"})
    unsupported_fields: set[int] = field(default_factory=set)  # field ids answering NOT_SUPPORTED
    errors: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code, every call
    delays: dict[str, float] = field(default_factory=dict)  # function name -> seconds each call takes
    hang: threading.Event | None = None  # while set, every call on this GPU blocks until cleared
    lost: bool = False


class FakeNvml:
    """Stands in for the ``pynvml`` module: pass it where a backend takes ``nvml``."""

    def __init__(self, gpus: list[FakeGpu] | None = None, *, driver: str = "550.90.07", cuda: int = 12040) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu(uuid=f"GPU-fake-{i}") for i in range(2)]
        self.driver = driver
        self.cuda = cuda
        self.init_error: int | None = None  # NVML code nvmlInit raises, e.g. LIBRARY_NOT_FOUND
        self.init_failures = 1_000_000  # how many inits fail with init_error before one succeeds
        self.driver_unloaded = False  # every call raises UNINITIALIZED until reinit
        self.events_supported = True
        self.initialised = False
        self.init_count = 0
        self.calls: Counter[str] = Counter()
        self.calls_per_gpu: Counter[int] = Counter()
        self._xids: list[tuple[int, int]] = []  # (gpu index, xid) queued for nvmlEventSetWait
        self._xid_ready = threading.Condition()
        self._lock = threading.Lock()

    # -- test controls -----------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Constants, structures and error classes come from the real bindings, so they cannot drift.
        if name.startswith(("NVML_", "nvmlClocks", "nvmlEventType", "c_nvml", "NVMLError")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def raise_xid(self, gpu: int, xid: int, times: int = 1) -> None:
        """Queue XID critical-error events as the driver would post them."""
        with self._xid_ready:
            self._xids.extend([(gpu, xid)] * times)
            self._xid_ready.notify_all()

    def reset_counts(self) -> None:
        self.calls.clear()
        self.calls_per_gpu.clear()

    # -- plumbing ----------------------------------------------------------------------------------
    def _enter(self, fn: str, handle: int | None = None) -> FakeGpu | None:
        with self._lock:
            self.calls[fn] += 1
            if handle is not None:
                self.calls_per_gpu[handle] += 1
        if not self.initialised or self.driver_unloaded:
            raise NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if handle is None:
            return None
        if not 0 <= handle < len(self.gpus):
            raise NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)  # a handle from before a reload
        gpu = self.gpus[handle]
        if gpu.hang is not None:
            while gpu.hang.is_set():
                time.sleep(0.005)
        if fn in gpu.delays:
            time.sleep(gpu.delays[fn])
        if gpu.lost:
            raise NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if fn in gpu.errors:
            raise NVMLError(gpu.errors[fn])
        if fn in gpu.unsupported:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def _gpu(self, fn: str, handle: int) -> FakeGpu:
        gpu = self._enter(fn, handle)
        assert gpu is not None
        return gpu

    # -- init and system ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None and self.init_failures > 0:
            self.init_failures -= 1
            raise NVMLError(self.init_error)
        self.initialised = True
        self.driver_unloaded = False
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1
        if not self.initialised:
            raise NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    # -- inventory ---------------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: int) -> str:
        return self._gpu("nvmlDeviceGetName", h).name

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self._gpu("nvmlDeviceGetUUID", h).uuid

    def nvmlDeviceGetSerial(self, h: int) -> str:
        return self._gpu("nvmlDeviceGetSerial", h).serial

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        gpu = self._gpu("nvmlDeviceGetPciInfo", h)
        return SimpleNamespace(busId=gpu.pci_bus_id.encode())  # real bindings return bytes here

    def nvmlDeviceGetVbiosVersion(self, h: int) -> str:
        return self._gpu("nvmlDeviceGetVbiosVersion", h).vbios

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: int) -> tuple[int, int]:
        gpu = self._gpu("nvmlDeviceGetPowerManagementLimitConstraints", h)
        return gpu.power_min_mw, gpu.power_max_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementDefaultLimit", h).power_max_mw

    def nvmlDeviceGetPersistenceMode(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetPersistenceMode", h).persistence

    def nvmlDeviceGetMigMode(self, h: int) -> tuple[int, int]:
        gpu = self._gpu("nvmlDeviceGetMigMode", h)
        return gpu.mig, gpu.mig

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetMaxPcieLinkGeneration", h).pcie_max_gen

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetMaxPcieLinkWidth", h).pcie_max_width

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock: int) -> int:
        return self._gpu("nvmlDeviceGetMaxClockInfo", h).sm_clock_max_mhz

    # -- telemetry ---------------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", h)
        return SimpleNamespace(gpu=gpu.utilization_gpu, memory=gpu.utilization_memory)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self._gpu("nvmlDeviceGetTemperature", h).temperature

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", h)
        return gpu.sm_clock_mhz if clock == pynvml.NVML_CLOCK_SM else gpu.mem_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", h).clocks_event_reasons

    def nvmlDeviceGetFanSpeed(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetFanSpeed", h).fan_speed

    def nvmlDeviceGetPerformanceState(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetPerformanceState", h).pstate

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetCurrPcieLinkGeneration", h).pcie_gen

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetCurrPcieLinkWidth", h).pcie_width

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", h).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", h).power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEnergyConsumption", h)
        return int(gpu.fields[pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION])

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses", h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]

    def nvmlDeviceGetFieldValues(self, h: int, field_ids: list[int | tuple[int, int]]) -> Any:
        """Like the real call: one return code per value; the call itself fails only for the whole GPU."""
        gpu = self._gpu("nvmlDeviceGetFieldValues", h)
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        links = int(gpu.fields.get(pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT, 0))
        for i, requested in enumerate(field_ids):
            fid, scope = requested if isinstance(requested, tuple) else (requested, 0)
            v = values[i]
            v.fieldId, v.scopeId = fid, scope
            v.timestamp = time.time_ns() // 1000
            scoped = fid in _LINK_SCOPED
            if fid in gpu.unsupported_fields or (scoped and scope >= links) or (not scoped and fid not in gpu.fields):
                v.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            value = gpu.link_fields.get((fid, scope), 1 if fid == pynvml.NVML_FI_DEV_NVLINK_GET_STATE else 0)
            v.nvmlReturn = pynvml.NVML_SUCCESS
            v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            v.value.ullVal = int(value if scoped else gpu.fields[fid])
        return values

    # -- events ------------------------------------------------------------------------------------
    def nvmlDeviceGetSupportedEventTypes(self, h: int) -> int:
        self._gpu("nvmlDeviceGetSupportedEventTypes", h)
        return pynvml.nvmlEventTypeXidCriticalError if self.events_supported else 0

    def nvmlEventSetCreate(self) -> object:
        self._enter("nvmlEventSetCreate")
        return object()

    def nvmlDeviceRegisterEvents(self, h: int, event_types: int, event_set: object) -> None:
        self._gpu("nvmlDeviceRegisterEvents", h)
        if not self.events_supported:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlEventSetWait(self, event_set: object, timeout_ms: int) -> Any:
        self._enter("nvmlEventSetWait")
        with self._xid_ready:
            if not self._xids:
                self._xid_ready.wait(timeout_ms / 1000)
            if not self._xids:
                raise NVMLError(pynvml.NVML_ERROR_TIMEOUT)
            gpu, xid = self._xids.pop(0)
        return SimpleNamespace(
            device=gpu, eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=xid, timestamp=time.time_ns() // 1000
        )

    def nvmlEventSetFree(self, event_set: object) -> None:
        self.calls["nvmlEventSetFree"] += 1


_LINK_SCOPED = frozenset(
    {
        pynvml.NVML_FI_DEV_NVLINK_GET_STATE,
        pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC,
        pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY,
        pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY,
    }
)

__all__ = ["FakeGpu", "FakeNvml", "NVMLError"]
