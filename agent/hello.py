"""Building the Hello that opens every stream: identity, boot, inventory and the field layout."""

from __future__ import annotations

import time

from agent.records import GpuInfo, HostInfo
from protos import telemetry_pb2 as pb
from protos.codec import PROTOCOL_VERSION
from runtime import __version__


def gpu_inventory(info: GpuInfo) -> pb.GpuInventory:
    return pb.GpuInventory(
        index=info.index,
        uuid=info.uuid,
        name=info.name,
        serial=info.serial,
        pci_bus_id=info.pci_bus_id,
        driver_version=info.driver_version,
        cuda_version=info.cuda_version,
        vbios_version=info.vbios_version,
        memory_total_bytes=info.memory_total_bytes,
        power_limit_min_watts=info.power_limit_min_watts,
        power_limit_max_watts=info.power_limit_max_watts,
        power_limit_default_watts=info.power_limit_default_watts,
        persistence_mode=info.persistence_mode,
        mig_mode=info.mig_mode,
        pcie_max_generation=info.pcie_max_generation,
        pcie_max_width=info.pcie_max_width,
        nvlink_count=info.nvlink_count,
        unsupported_field_ids=sorted(info.unsupported_field_ids),
    )


def gpu_info(inventory: pb.GpuInventory) -> GpuInfo:
    """The agent's record of a GPU from its wire inventory, as a replayed trace describes it."""
    return GpuInfo(
        index=inventory.index,
        uuid=inventory.uuid,
        name=inventory.name,
        serial=inventory.serial,
        pci_bus_id=inventory.pci_bus_id,
        driver_version=inventory.driver_version,
        cuda_version=inventory.cuda_version,
        vbios_version=inventory.vbios_version,
        memory_total_bytes=inventory.memory_total_bytes,
        power_limit_min_watts=inventory.power_limit_min_watts,
        power_limit_max_watts=inventory.power_limit_max_watts,
        power_limit_default_watts=inventory.power_limit_default_watts,
        persistence_mode=inventory.persistence_mode,
        mig_mode=inventory.mig_mode,
        pcie_max_generation=inventory.pcie_max_generation,
        pcie_max_width=inventory.pcie_max_width,
        nvlink_count=inventory.nvlink_count,
        unsupported_field_ids=frozenset(inventory.unsupported_field_ids),
    )


def build_hello(
    *,
    host_id: str,
    boot_id: str,
    host: HostInfo,
    gpus: list[GpuInfo],
    gpu_source: str,
    host_field_ids: tuple[int, ...],
    gpu_field_ids: tuple[int, ...],
    interval: float,
) -> pb.Hello:
    return pb.Hello(
        host_id=host_id,
        boot_id=boot_id,
        agent_version=__version__,
        protocol_version=PROTOCOL_VERSION,
        boot_unix_ns=(now := time.time_ns()),
        sent_unix_ns=now,  # stamped again at every connect
        interval_seconds=interval,
        host=pb.HostInventory(
            hostname=host.hostname,
            kernel=host.kernel,
            os=host.os,
            cpu_count=host.cpu_count,
            memory_total_bytes=host.memory_total_bytes,
            gpu_source=gpu_source,
        ),
        gpus=[gpu_inventory(g) for g in gpus],
        host_field_ids=host_field_ids,
        gpu_field_ids=gpu_field_ids,
    )
