"""The signals rules and detectors read: the store's fields plus what detection derives per series.

GPU signals are one column per name over GPU rows; host signals one column per name over host
slots. Both are rebuilt as whole arrays each evaluation, never per sample.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.store import FleetStore, HostRecord
from protos.fields import FieldCatalog

Array = npt.NDArray[np.float64]

# Derived GPU signals, after the catalog's fields.
GPU_DERIVED = (
    "lost",  # 1 once the agent reported the GPU lost
    "health",  # agent health verdict: 0 unknown, 1 ok, 2 warn, 3 fail
    "pcie_max_generation",  # from the inventory, to spot a downgraded link
    "pcie_max_width",
    "nvlink_count",
    "power_limit_max",
)
# Derived host signals, after the catalog's fields.
HOST_DERIVED = (
    "seconds_since_frame",  # collector time since the host's newest frame was applied
    "missed_intervals",  # seconds_since_frame in the agent's own sampling intervals
    "connected",  # 1 while the agent's stream is open
    "clock_skew_seconds",  # agent clock minus collector clock, kept current along the stream
    "spool_dropped_records",  # counter: records the agent's spool dropped unsent
    "gpus_missing",  # GPUs this host reported before that its current inventory lacks
    "gpu_count",
)


@dataclass(frozen=True, slots=True)
class XidRecord:
    time: float
    row: int
    code: int
    count: int


class FleetSignals:
    """Builds the current GPU and host signal matrices and keeps what the store does not."""

    def __init__(self, store: FleetStore, score_names: tuple[str, ...], *, xid_log_size: int = 100_000) -> None:
        catalog: FieldCatalog = store.catalog
        self.store = store
        self.field_names = [catalog[fid].name for fid in catalog.gpu_ids]
        self.host_field_names = [catalog[fid].name for fid in catalog.host_ids]
        self.gpu_names = [*self.field_names, *GPU_DERIVED, *score_names]
        self.host_names = [*self.host_field_names, *HOST_DERIVED]
        self.gpu_index = {n: i for i, n in enumerate(self.gpu_names)}
        self.host_index = {n: i for i, n in enumerate(self.host_names)}
        self.score_names = score_names
        self._nf = len(self.field_names)
        self._nhf = len(self.host_field_names)
        self.inventory: Array = np.full((0, 4), np.nan)  # pcie gen, width, nvlink count, power max
        self.scores: Array = np.full((0, len(score_names)), np.nan)
        self.spool_dropped: Array = np.zeros(0)
        self.gpus_missing: Array = np.zeros(0)
        self.xid_log: deque[XidRecord] = deque(maxlen=xid_log_size)
        self.known_uuids: dict[str, set[str]] = {}
        self.row_keys: list[str] = []
        self.slot_keys: list[str] = []
        self.generation = -1

    # -- shape and identity ------------------------------------------------------------------------
    @property
    def gpu_rows(self) -> int:
        return len(self.store.gpu_meta)

    @property
    def host_slots(self) -> int:
        return len(self.store.by_slot)

    def refresh_identity(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """After hosts or GPUs came or went: returns the GPU rows and host slots whose owner changed."""
        store = self.store
        if store.generation == self.generation and len(self.row_keys) == self.gpu_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.generation = store.generation
        rows, slots = self.gpu_rows, self.host_slots
        self.inventory = _fit(self.inventory, rows, np.nan)
        self.scores = _fit(self.scores, rows, np.nan)
        self.spool_dropped = _fit(self.spool_dropped, slots, 0.0)
        self.gpus_missing = _fit(self.gpus_missing, slots, 0.0)
        row_keys = []
        for row, meta in enumerate(store.gpu_meta):
            slot = int(store.gpu_host_slot[row])
            record = store.by_slot[slot] if meta is not None and slot >= 0 else None
            row_keys.append(f"{record.host_id}/{meta.uuid}" if record is not None and meta is not None else "")
        slot_keys = [r.host_id if r is not None else "" for r in store.by_slot]
        changed_rows = [r for r, key in enumerate(row_keys) if r >= len(self.row_keys) or self.row_keys[r] != key]
        changed_slots = [s for s, key in enumerate(slot_keys) if s >= len(self.slot_keys) or self.slot_keys[s] != key]
        self.row_keys, self.slot_keys = row_keys, slot_keys
        for record in store.by_slot:
            if record is not None:
                self._note_inventory(record)
        changed = np.array(changed_rows, dtype=np.int64)
        self.scores[changed] = np.nan
        return changed, np.array(changed_slots, dtype=np.int64)

    def _note_inventory(self, record: HostRecord) -> None:
        uuids = {g.uuid for g in record.hello.gpus}
        known = self.known_uuids.setdefault(record.host_id, set())
        known |= uuids
        self.gpus_missing[record.slot] = len(known - uuids)
        for meta, inv in zip(record.gpus, record.hello.gpus, strict=False):
            self.inventory[meta.row] = (
                inv.pcie_max_generation or np.nan,
                inv.pcie_max_width or np.nan,
                inv.nvlink_count,
                inv.power_limit_max_watts or np.nan,
            )

    def forget_host_gpus(self, host_id: str) -> None:
        """An operator replaced the host's GPUs on purpose: stop reporting the old ones as missing."""
        self.known_uuids.pop(host_id, None)
        self.generation = -1

    # -- events ------------------------------------------------------------------------------------
    def note_xid(self, now: float, row: int, code: int, count: int) -> None:
        self.xid_log.append(XidRecord(now, row, code, count))

    def note_spool_drop(self, slot: int, records: int) -> None:
        self.spool_dropped = _fit(self.spool_dropped, slot + 1, 0.0)
        self.spool_dropped[slot] += records

    def xids(self, codes: frozenset[int], since: float) -> Array:
        """Occurrences per GPU row of any of ``codes`` at or after ``since``."""
        out = np.zeros(self.gpu_rows)
        for rec in reversed(self.xid_log):  # newest first; the log is in time order
            if rec.time < since:
                break
            if rec.code in codes and rec.row < len(out):
                out[rec.row] += rec.count
        return out

    def forget_xids(self, rows: npt.NDArray[np.int64]) -> None:
        if len(rows) and self.xid_log:
            gone = set(rows.tolist())
            kept = [r for r in self.xid_log if r.row not in gone]
            self.xid_log.clear()
            self.xid_log.extend(kept)

    # -- matrices ----------------------------------------------------------------------------------
    def gpu_matrix(self) -> Array:
        store, rows = self.store, self.gpu_rows
        out = np.empty((rows, len(self.gpu_names)))
        out[:, : self._nf] = store.gpu_values[:rows]
        d = self._nf
        out[:, d] = store.gpu_lost[:rows]
        out[:, d + 1] = store.gpu_health[:rows]
        out[:, d + 2 : d + 6] = self.inventory[:rows]
        out[:, d + 6 :] = self.scores[:rows]
        return out

    def host_matrix(self, now: float) -> Array:
        store, slots = self.store, self.host_slots
        out = np.full((slots, len(self.host_names)), np.nan)
        out[:, : self._nhf] = store.host_values[:slots]
        d = self._nhf
        last = store.host_time_ns[:slots] / 1e9
        since = np.where(last > 0, now - last, np.nan)
        intervals = np.array(
            [r.hello.interval_seconds or 1.0 if r is not None else np.nan for r in store.by_slot], dtype=np.float64
        )
        out[:, d] = since
        out[:, d + 1] = since / intervals
        out[:, d + 2] = [float(r.connected) if r is not None else np.nan for r in store.by_slot]
        out[:, d + 3] = [r.clock_skew_seconds if r is not None else np.nan for r in store.by_slot]
        out[:, d + 4] = _fit(self.spool_dropped, slots, 0.0)[:slots]
        out[:, d + 5] = _fit(self.gpus_missing, slots, 0.0)[:slots]
        out[:, d + 6] = [len(r.gpus) if r is not None else np.nan for r in store.by_slot]
        return out

    def gpu_valid(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.store.gpu_host_slot[: self.gpu_rows] >= 0)

    def host_valid(self) -> npt.NDArray[np.bool_]:
        return np.array([r is not None for r in self.store.by_slot], dtype=bool)


def _fit(array: Array, rows: int, fill: float) -> Array:
    if len(array) >= rows:
        return array
    grown = np.full((max(rows, 2 * len(array)), *array.shape[1:]), fill)
    grown[: len(array)] = array
    return grown
