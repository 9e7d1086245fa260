"""The fleet's current state in numpy arrays: one row per host, one row per GPU, one column per field.

Ingest is a scatter of a frame's values into precomputed flat positions; readers (exposition,
detection) work on whole arrays. The store knows nothing of Prometheus or gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from collector.ingest.decode import DecodedFrame
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout
from protos.fields import CATALOG, FieldCatalog

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

HEALTH_NAMES: dict[int, str] = {
    pb.HEALTH_UNKNOWN: "unknown",
    pb.HEALTH_OK: "ok",
    pb.HEALTH_WARN: "warn",
    pb.HEALTH_FAIL: "fail",
}


@dataclass
class GpuMeta:
    row: int
    index: int
    uuid: str
    model: str
    pci_bus_id: str
    serial: str
    driver_version: str
    vbios_version: str
    unsupported: frozenset[int]


@dataclass
class HostRecord:
    """One host as the store knows it: its slot, its current boot and where its values go."""

    host_id: str
    slot: int
    boot_id: str
    hello: pb.Hello
    layout: FrameLayout
    gpus: list[GpuMeta]
    host_positions: IntArray  # flat positions in host_values for each host value of a frame
    gpu_positions: IntArray  # flat positions in gpu_values for each GPU value of a frame
    connected: bool = False
    last_frame_ns: int = 0
    clock_skew_seconds: float = 0.0
    workloads: dict[int, list[pb.GpuProcess]] = field(default_factory=dict)
    replayed: bool = False  # an earlier boot's data, drained after the host's current boot connected

    @property
    def gpu_rows(self) -> IntArray:
        return np.array([g.row for g in self.gpus], dtype=np.int64)


class FleetStore:
    """Latest values of every host and GPU series, plus per-GPU XID counts and health."""

    def __init__(self, catalog: FieldCatalog = CATALOG, *, host_capacity: int = 64, gpu_capacity: int = 512) -> None:
        self.catalog = catalog
        self.host_columns = {fid: i for i, fid in enumerate(catalog.host_ids)}
        self.gpu_columns = {fid: i for i, fid in enumerate(catalog.gpu_ids)}
        self.host_values: FloatArray = np.full((host_capacity, len(catalog.host_ids)), np.nan)
        self.host_time_ns = np.zeros(host_capacity, dtype=np.int64)
        self.gpu_values: FloatArray = np.full((gpu_capacity, len(catalog.gpu_ids)), np.nan)
        self.gpu_host_slot = np.full(gpu_capacity, -1, dtype=np.int64)
        self.gpu_health = np.zeros(gpu_capacity, dtype=np.int64)
        self.gpu_lost = np.zeros(gpu_capacity, dtype=bool)
        self.hosts: dict[str, HostRecord] = {}
        self.by_slot: list[HostRecord | None] = []
        self.gpu_meta: list[GpuMeta | None] = []
        self._free_rows: list[int] = []
        self.xid_counts: dict[tuple[int, int], int] = {}  # (gpu row, xid) -> occurrences
        self.health_reasons: dict[int, list[pb.HealthReason]] = {}
        self.nvlink: dict[int, list[pb.NvlinkLink]] = {}  # gpu row -> per-link state, as last reported
        self.generation = 0  # bumps when hosts or GPUs come or go, so readers can cache labels

    # -- registration ------------------------------------------------------------------------------
    def register(self, hello: pb.Hello, layout: FrameLayout) -> HostRecord:
        """Bind a Hello's host to a slot (the same one across reconnects) and its GPUs to rows."""
        existing = self.hosts.get(hello.host_id)
        same_gpus = existing is not None and [g.uuid for g in existing.gpus] == [g.uuid for g in hello.gpus]
        if existing is not None and same_gpus:
            slot, metas = existing.slot, existing.gpus
            # The Hello describes the GPUs as they are now (the agent keeps it current through
            # inventory changes), so it replaces what the last stream left.
            changed = [_set_facts(meta, inv) for meta, inv in zip(metas, hello.gpus, strict=True)]
            if any(changed):
                self.generation += 1  # label caches rebuild; a plain reconnect leaves them (and renders) be
        else:
            if existing is not None:
                self._release_rows(existing)
                slot = existing.slot
            else:
                slot = self._new_slot()
            metas = [self._new_gpu(slot, inv) for inv in hello.gpus]
            self.generation += 1
        host_cols = np.array([self.host_columns[f] for f in layout.host_field_ids], dtype=np.int64)
        gpu_cols = np.array([self.gpu_columns[f] for f in layout.gpu_field_ids], dtype=np.int64)
        n_host = self.host_values.shape[1]
        n_gpu = self.gpu_values.shape[1]
        rows = np.array([m.row for m in metas], dtype=np.int64)
        record = HostRecord(
            host_id=hello.host_id,
            slot=slot,
            boot_id=hello.boot_id,
            hello=hello,
            layout=layout,
            gpus=metas,
            host_positions=slot * n_host + host_cols,
            gpu_positions=(rows[:, None] * n_gpu + gpu_cols[None, :]).ravel(),
            last_frame_ns=existing.last_frame_ns if existing else 0,
            workloads=existing.workloads if existing and same_gpus else {},
        )
        self.hosts[hello.host_id] = record
        self.by_slot[slot] = record
        return record

    def replay_record(self, current: HostRecord, hello: pb.Hello, layout: FrameLayout) -> HostRecord:
        """A record for an earlier boot's replayed data: it counts events but never overwrites newer values."""
        same_gpus = [g.uuid for g in current.gpus] == [g.uuid for g in hello.gpus]
        if layout == current.layout and same_gpus:
            return replace(current, boot_id=hello.boot_id, hello=hello, workloads={}, replayed=True)
        # Another layout: values cannot be placed in this host's rows, and they are older anyway.
        return replace(
            current,
            boot_id=hello.boot_id,
            hello=hello,
            layout=layout,
            gpus=current.gpus[: len(hello.gpus)],
            last_frame_ns=np.iinfo(np.int64).max,
            workloads={},
            replayed=True,
        )

    def _new_slot(self) -> int:
        slot = len(self.by_slot)
        self.by_slot.append(None)
        if slot >= len(self.host_values):
            self.host_values = _grow(self.host_values, np.nan)
            self.host_time_ns = _grow(self.host_time_ns, 0)
        return slot

    def _new_gpu(self, slot: int, inv: pb.GpuInventory) -> GpuMeta:
        if self._free_rows:
            row = self._free_rows.pop()
        else:
            row = len(self.gpu_meta)
            self.gpu_meta.append(None)
            if row >= len(self.gpu_values):
                self.gpu_values = _grow(self.gpu_values, np.nan)
                self.gpu_host_slot = _grow(self.gpu_host_slot, -1)
                self.gpu_health = _grow(self.gpu_health, 0)
                self.gpu_lost = _grow(self.gpu_lost, False)
        meta = GpuMeta(
            row=row,
            index=inv.index,
            uuid=inv.uuid,
            model=inv.name,
            pci_bus_id=inv.pci_bus_id,
            serial=inv.serial,
            driver_version=inv.driver_version,
            vbios_version=inv.vbios_version,
            unsupported=frozenset(inv.unsupported_field_ids),
        )
        self.gpu_meta[row] = meta
        self.gpu_host_slot[row] = slot
        self.gpu_values[row] = np.nan
        self.gpu_health[row] = pb.HEALTH_UNKNOWN
        self.gpu_lost[row] = False
        return meta

    def _release_rows(self, record: HostRecord) -> None:
        for meta in record.gpus:
            self.gpu_meta[meta.row] = None
            self.gpu_host_slot[meta.row] = -1
            self.gpu_values[meta.row] = np.nan
            self._free_rows.append(meta.row)
            for key in [k for k in self.xid_counts if k[0] == meta.row]:
                del self.xid_counts[key]
            self.nvlink.pop(meta.row, None)

    # -- ingest ------------------------------------------------------------------------------------
    def apply_frame(self, record: HostRecord, frame: DecodedFrame) -> bool:
        """Scatter a frame into the latest values; an older frame (a replay) does not overwrite newer."""
        if frame.unix_ns < record.last_frame_ns:
            return False
        self.host_values.ravel()[record.host_positions] = frame.host
        self.gpu_values.ravel()[record.gpu_positions] = frame.gpu.ravel()
        record.last_frame_ns = frame.unix_ns
        self.host_time_ns[record.slot] = frame.unix_ns
        return True

    def record_xid(self, record: HostRecord, gpu_index: int, xid: int, count: int) -> None:
        row = record.gpus[gpu_index].row
        self.xid_counts[(row, xid)] = self.xid_counts.get((row, xid), 0) + count

    def mark_lost(self, record: HostRecord, gpu_index: int) -> None:
        self.gpu_lost[record.gpus[gpu_index].row] = True

    def update_gpu(self, record: HostRecord, inv: pb.GpuInventory) -> None:
        """A GPU's inventory changed under a running agent: same row and series, new facts and labels."""
        meta = record.gpus[inv.index]
        meta.uuid = inv.uuid
        _set_facts(meta, inv)
        record.hello.gpus[inv.index].CopyFrom(inv)
        self.gpu_lost[meta.row] = False  # it answered NVML: whatever was lost is back
        self.generation += 1  # label caches rebuild

    def set_nvlink(self, record: HostRecord, gpu_index: int, links: list[pb.NvlinkLink]) -> None:
        self.nvlink[record.gpus[gpu_index].row] = links

    def set_health(self, record: HostRecord, gpu_index: int, status: int, reasons: list[pb.HealthReason]) -> None:
        row = record.gpus[gpu_index].row
        self.gpu_health[row] = status
        self.health_reasons[row] = reasons

    def value(self, host_id: str, gpu_index: int, field_name: str) -> float:
        """One GPU value by name: for tests and the terminal view, not the hot path."""
        record = self.hosts[host_id]
        return float(self.gpu_values[record.gpus[gpu_index].row, self.gpu_columns[self.catalog.gpu(field_name).id]])


def _set_facts(meta: GpuMeta, inv: pb.GpuInventory) -> bool:
    """What a GPU's inventory says of it, beyond its identity (uuid) and its place in the store;
    whether any of it changed."""
    facts = (inv.name, inv.serial, inv.pci_bus_id, inv.driver_version, inv.vbios_version)
    unsupported = frozenset(inv.unsupported_field_ids)
    before = (meta.model, meta.serial, meta.pci_bus_id, meta.driver_version, meta.vbios_version)
    if facts == before and unsupported == meta.unsupported:
        return False
    meta.model, meta.serial, meta.pci_bus_id, meta.driver_version, meta.vbios_version = facts
    meta.unsupported = unsupported
    return True


def _grow(array: np.ndarray, fill: object) -> np.ndarray:
    grown = np.full((len(array) * 2, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
