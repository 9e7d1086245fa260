"""dcgm-exporter compatible names, labels and units, so existing DCGM Grafana dashboards work unchanged.

Each family maps one catalog field (always in base units) to the DCGM field name and unit that
dcgm-exporter publishes (its default-counters.csv): MHz clocks, MiB framebuffer, percent
utilisation, mJ energy, microsecond violation counters. Types and names are dcgm-exporter's own,
including counters without the ``_total`` suffix, because dashboards query those exact names.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.exporters.exposition.text import escape
from collector.store import GpuMeta
from protos.fields import CATALOG, FieldCatalog

__all__ = ["DCGM_FAMILIES", "DcgmFamily", "dcgm_labels"]

_MIB = float(2**20)


@dataclass(frozen=True, slots=True)
class DcgmFamily:
    name: str
    kind: str  # "gauge" or "counter", as dcgm-exporter declares it
    help: str
    field: str  # catalog GPU field name
    scale: float = 1.0  # multiply the base-unit value by this
    whole: bool = False  # DCGM reports a whole number (MiB): round down like the driver does

    def column(self, catalog: FieldCatalog = CATALOG) -> int:
        return catalog.gpu_ids.index(catalog.gpu(self.field).id)


DCGM_FAMILIES: tuple[DcgmFamily, ...] = (
    DcgmFamily("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "sm_clock", 1e-6),
    DcgmFamily("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "memory_clock", 1e-6),
    DcgmFamily("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", "memory_temperature"),
    DcgmFamily("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "temperature"),
    DcgmFamily("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_usage"),
    DcgmFamily("DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "Power management limit (in W).", "power_limit"),
    DcgmFamily(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        "energy_consumption",
        1e3,
    ),
    DcgmFamily("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", "pcie_replay"),
    DcgmFamily("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "utilization", 100.0),
    DcgmFamily("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "memory_copy_utilization", 100.0),
    # NVML's utilisation is the share of time any kernel ran, the closest NVML reading to DCGM's
    # graphics-engine activity ratio; without DCGM profiling it is what the dashboards' panel can show.
    DcgmFamily("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.", "utilization"),
    DcgmFamily("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", "memory_free", 1 / _MIB, True),
    DcgmFamily("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "memory_used", 1 / _MIB, True),
    DcgmFamily("DCGM_FI_DEV_FB_TOTAL", "gauge", "Framebuffer memory total (in MiB).", "memory_total", 1 / _MIB, True),
    DcgmFamily("DCGM_FI_DEV_FAN_SPEED", "gauge", "Fan speed (in 0-100%).", "fan_speed", 100.0),
    DcgmFamily("DCGM_FI_DEV_PSTATE", "gauge", "Performance state (P-State) 0-15. 0=highest.", "pstate"),
    DcgmFamily("DCGM_FI_DEV_PCIE_LINK_GEN", "gauge", "PCIe current link generation.", "pcie_link_generation"),
    DcgmFamily("DCGM_FI_DEV_PCIE_LINK_WIDTH", "gauge", "PCIe current link width.", "pcie_link_width"),
    DcgmFamily("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "gauge", "Current clock throttle reasons.", "clock_event_reasons"),
    DcgmFamily(
        "DCGM_FI_DEV_POWER_VIOLATION",
        "counter",
        "Throttling duration due to power constraints (in us).",
        "power_violation",
        1e6,
    ),
    DcgmFamily(
        "DCGM_FI_DEV_THERMAL_VIOLATION",
        "counter",
        "Throttling duration due to thermal constraints (in us).",
        "thermal_violation",
        1e6,
    ),
    DcgmFamily(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "counter",
        "Total number of single-bit volatile ECC errors.",
        "ecc_corrected_volatile",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "counter",
        "Total number of double-bit volatile ECC errors.",
        "ecc_uncorrected_volatile",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "counter",
        "Total number of single-bit persistent ECC errors.",
        "ecc_corrected_aggregate",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "counter",
        "Total number of double-bit persistent ECC errors.",
        "ecc_uncorrected_aggregate",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_RETIRED_SBE",
        "counter",
        "Total number of retired pages due to single-bit errors.",
        "retired_pages_sbe",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_RETIRED_DBE",
        "counter",
        "Total number of retired pages due to double-bit errors.",
        "retired_pages_dbe",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_RETIRED_PENDING", "counter", "Total number of pages pending retirement.", "retired_pages_pending"
    ),
    DcgmFamily(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for correctable errors.",
        "remapped_rows_correctable",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for uncorrectable errors.",
        "remapped_rows_uncorrectable",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed.", "remapped_rows_failure"
    ),
    DcgmFamily(
        "DCGM_FI_DEV_ROW_REMAP_PENDING", "gauge", "Whether remapping of rows is pending.", "remapped_rows_pending"
    ),
    DcgmFamily(
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "counter",
        "Total number of NVLink flow-control CRC errors.",
        "nvlink_crc_errors",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "counter",
        "Total number of NVLink retries.",
        "nvlink_replay_errors",
    ),
    DcgmFamily(
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "counter",
        "Total number of NVLink recovery errors.",
        "nvlink_recovery_errors",
    ),
)


def dcgm_labels(host_id: str, meta: GpuMeta) -> str:
    """dcgm-exporter's label set for one GPU; ``Hostname`` is the gpulse host id (the node's name)."""
    return (
        f'gpu="{meta.index}",UUID="{escape(meta.uuid)}",pci_bus_id="{escape(meta.pci_bus_id)}",'
        f'device="nvidia{meta.index}",modelName="{escape(meta.model)}",Hostname="{escape(host_id)}"'
    )
