"""Value types shared across the agent: GPU inventory and one tick's readings.

This module imports nothing else of ours, so every layer of the agent can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# One reading per field id, in the column order the Hello declares; NaN where nothing was read.
# Plain lists, not numpy: the agent runs on every host, and numpy alone would add about 11 MiB to
# its resident memory (and, through OpenBLAS, a thread per core) for a few hundred floats a tick.
Row = list[float]
Rows = list[Row]  # one Row per GPU, by GPU index


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """What a GPU is: read at start and again when it changes."""

    index: int
    uuid: str
    name: str
    serial: str = ""
    pci_bus_id: str = ""
    driver_version: str = ""
    cuda_version: str = ""
    vbios_version: str = ""
    memory_total_bytes: int = 0
    power_limit_min_watts: float = 0.0
    power_limit_max_watts: float = 0.0
    power_limit_default_watts: float = 0.0
    persistence_mode: bool = False
    mig_mode: bool = False
    pcie_max_generation: int = 0
    pcie_max_width: int = 0
    nvlink_count: int = 0
    unsupported_field_ids: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What the host is."""

    hostname: str
    kernel: str = ""
    os: str = ""
    cpu_count: int = 0
    memory_total_bytes: int = 0


@dataclass(frozen=True, slots=True)
class GpuProcessInfo:
    """A compute process NVML reports on a GPU, and the workload it belongs to once attributed."""

    pid: int
    used_memory_bytes: int
    name: str = ""
    workload_kind: str = ""
    workload_id: str = ""
    workload_name: str = ""
    workload_namespace: str = ""
    user: str = ""
    container_id: str = ""
    mig_uuid: str = ""  # the MIG instance it runs in; "" when MIG is off
    gpu_instance_id: int = 0
    compute_instance_id: int = 0


@dataclass(frozen=True, slots=True)
class MigInstance:
    """One MIG instance of a GPU and its own memory, from the slow tier."""

    uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    memory_total_bytes: int
    memory_used_bytes: int
