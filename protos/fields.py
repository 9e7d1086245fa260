"""The field catalog: every telemetry field gpulse sends, in one table.

Agent and collector both import this module; a field's id is its identity on the wire, so ids are
never reused or renumbered. Values are always in the unit named here (base units: bytes, seconds,
hertz, watts, joules, celsius, ratios 0..1); sources convert at their edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CATALOG",
    "Field",
    "FieldCatalog",
    "Kind",
    "Scope",
]


class Kind(enum.Enum):
    GAUGE = "gauge"
    COUNTER = "counter"


class Scope(enum.Enum):
    HOST = "host"
    GPU = "gpu"


@dataclass(frozen=True, slots=True)
class Field:
    id: int
    scope: Scope
    name: str
    unit: str  # base unit for the metric name suffix; "" for a plain count or state
    kind: Kind
    help: str

    @property
    def metric_name(self) -> str:
        """Prometheus name: gpulse_<scope>_<name>[_<unit>][_total]."""
        parts = ["gpulse", self.scope.value, self.name]
        if self.unit:
            parts.append(self.unit)
        name = "_".join(parts)
        return name + "_total" if self.kind is Kind.COUNTER else name


_G, _C = Kind.GAUGE, Kind.COUNTER
_H, _GPU = Scope.HOST, Scope.GPU

_FIELDS: tuple[Field, ...] = (
    # --- host (ids 1..99) ---
    Field(1, _H, "cpu_utilization", "ratio", _G, "Share of all CPU time not idle over the last tick."),
    Field(2, _H, "load1", "", _G, "1-minute load average."),
    Field(3, _H, "load5", "", _G, "5-minute load average."),
    Field(4, _H, "load15", "", _G, "15-minute load average."),
    Field(5, _H, "memory_used", "bytes", _G, "Host memory in use (total minus available)."),
    Field(6, _H, "memory_available", "bytes", _G, "Host memory available for new work."),
    Field(7, _H, "memory_total", "bytes", _G, "Host memory installed."),
    Field(8, _H, "swap_used", "bytes", _G, "Swap in use."),
    Field(9, _H, "swap_total", "bytes", _G, "Swap configured."),
    Field(10, _H, "disk_read", "bytes", _C, "Bytes read from all block devices."),
    Field(11, _H, "disk_written", "bytes", _C, "Bytes written to all block devices."),
    Field(12, _H, "network_receive", "bytes", _C, "Bytes received on all non-loopback interfaces."),
    Field(13, _H, "network_transmit", "bytes", _C, "Bytes sent on all non-loopback interfaces."),
    Field(14, _H, "network_receive_errors", "", _C, "Receive errors on all non-loopback interfaces."),
    Field(15, _H, "network_transmit_errors", "", _C, "Transmit errors on all non-loopback interfaces."),
    Field(16, _H, "uptime", "seconds", _G, "Seconds since the host booted."),
    Field(17, _H, "root_filesystem_used", "bytes", _G, "Bytes used on the root filesystem."),
    Field(18, _H, "root_filesystem_size", "bytes", _G, "Size of the root filesystem."),
    # --- GPU (ids 100..) ---
    Field(100, _GPU, "utilization", "ratio", _G, "Share of time a kernel was running on the GPU."),
    Field(101, _GPU, "memory_copy_utilization", "ratio", _G, "Share of time device memory was read or written."),
    Field(102, _GPU, "memory_used", "bytes", _G, "Framebuffer memory in use."),
    Field(103, _GPU, "memory_free", "bytes", _G, "Framebuffer memory free."),
    Field(104, _GPU, "memory_total", "bytes", _G, "Framebuffer memory installed."),
    Field(105, _GPU, "temperature", "celsius", _G, "GPU die temperature."),
    Field(106, _GPU, "memory_temperature", "celsius", _G, "HBM temperature."),
    Field(107, _GPU, "power_usage", "watts", _G, "Power draw."),
    Field(108, _GPU, "power_limit", "watts", _G, "Enforced power limit."),
    Field(109, _GPU, "energy_consumption", "joules", _C, "Energy used since the driver loaded."),
    Field(110, _GPU, "sm_clock", "hertz", _G, "SM clock."),
    Field(111, _GPU, "memory_clock", "hertz", _G, "Memory clock."),
    Field(112, _GPU, "sm_clock_max", "hertz", _G, "Maximum SM clock the GPU supports."),
    Field(113, _GPU, "clock_event_reasons", "", _G, "Raw NVML clock-event (throttle) reasons bitmask."),
    Field(114, _GPU, "clock_event_gpu_idle", "", _G, "1 while clocks are lowered because the GPU is idle."),
    Field(115, _GPU, "clock_event_applications_clocks", "", _G, "1 while application clock settings cap clocks."),
    Field(116, _GPU, "clock_event_sw_power_cap", "", _G, "1 while the software power cap lowers clocks."),
    Field(117, _GPU, "clock_event_hw_slowdown", "", _G, "1 while hardware slowdown lowers clocks."),
    Field(118, _GPU, "clock_event_sync_boost", "", _G, "1 while sync boost lowers clocks."),
    Field(119, _GPU, "clock_event_sw_thermal_slowdown", "", _G, "1 while software thermal slowdown lowers clocks."),
    Field(120, _GPU, "clock_event_hw_thermal_slowdown", "", _G, "1 while hardware thermal slowdown lowers clocks."),
    Field(121, _GPU, "clock_event_hw_power_brake", "", _G, "1 while the external power brake lowers clocks."),
    Field(122, _GPU, "pcie_replay", "", _C, "PCIe replay events."),
    Field(123, _GPU, "ecc_corrected_volatile", "", _C, "Corrected (single-bit) ECC errors since the driver loaded."),
    Field(
        124, _GPU, "ecc_uncorrected_volatile", "", _C, "Uncorrected (double-bit) ECC errors since the driver loaded."
    ),
    Field(125, _GPU, "ecc_corrected_aggregate", "", _C, "Corrected ECC errors over the GPU's life."),
    Field(126, _GPU, "ecc_uncorrected_aggregate", "", _C, "Uncorrected ECC errors over the GPU's life."),
    Field(127, _GPU, "fan_speed", "ratio", _G, "Fan speed as a share of its maximum."),
    Field(128, _GPU, "pstate", "", _G, "Performance state, 0 (fastest) to 15."),
    Field(129, _GPU, "pcie_link_generation", "", _G, "Current PCIe link generation."),
    Field(130, _GPU, "pcie_link_width", "", _G, "Current PCIe link width in lanes."),
    Field(131, _GPU, "power_violation", "seconds", _C, "Time clocks were held down by the power limit."),
    Field(132, _GPU, "thermal_violation", "seconds", _C, "Time clocks were held down by thermal limits."),
    Field(133, _GPU, "retired_pages_sbe", "", _G, "Pages retired for single-bit errors."),
    Field(134, _GPU, "retired_pages_dbe", "", _G, "Pages retired for double-bit errors."),
    Field(135, _GPU, "retired_pages_pending", "", _G, "1 while a page retirement waits for a reset."),
    Field(136, _GPU, "remapped_rows_correctable", "", _G, "Rows remapped for correctable errors."),
    Field(137, _GPU, "remapped_rows_uncorrectable", "", _G, "Rows remapped for uncorrectable errors."),
    Field(138, _GPU, "remapped_rows_pending", "", _G, "1 while a row remap waits for a reset."),
    Field(139, _GPU, "remapped_rows_failure", "", _G, "1 when a row remap has failed."),
    Field(140, _GPU, "nvlink_crc_errors", "", _C, "NVLink CRC (flit and data) errors, all links."),
    Field(141, _GPU, "nvlink_replay_errors", "", _C, "NVLink replay errors, all links."),
    Field(142, _GPU, "nvlink_recovery_errors", "", _C, "NVLink recovery errors, all links."),
    Field(143, _GPU, "nvlink_links_up", "", _G, "NVLink links up."),
    Field(144, _GPU, "nvlink_links_down", "", _G, "NVLink links present but down."),
    Field(145, _GPU, "compute_processes", "", _G, "Compute processes running on the GPU."),
)


class FieldCatalog:
    """Lookup over the catalog by id and by name, with each scope's ids in catalog order."""

    def __init__(self, fields: tuple[Field, ...]) -> None:
        self.fields = fields
        self._by_id = {f.id: f for f in fields}
        if len(self._by_id) != len(fields):
            raise ValueError("duplicate field id in catalog")
        self._by_name = {(f.scope, f.name): f for f in fields}
        if len(self._by_name) != len(fields):
            raise ValueError("duplicate field name in catalog")
        self.host_ids: tuple[int, ...] = tuple(f.id for f in fields if f.scope is Scope.HOST)
        self.gpu_ids: tuple[int, ...] = tuple(f.id for f in fields if f.scope is Scope.GPU)

    def __getitem__(self, field_id: int) -> Field:
        return self._by_id[field_id]

    def __contains__(self, field_id: object) -> bool:
        return field_id in self._by_id

    def get(self, field_id: int) -> Field | None:
        return self._by_id.get(field_id)

    def by_name(self, scope: Scope, name: str) -> Field:
        return self._by_name[(scope, name)]

    def host(self, name: str) -> Field:
        return self._by_name[(Scope.HOST, name)]

    def gpu(self, name: str) -> Field:
        return self._by_name[(Scope.GPU, name)]


CATALOG = FieldCatalog(_FIELDS)
