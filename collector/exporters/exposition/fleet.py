"""Renders the fleet store as Prometheus text exposition, straight from its arrays.

Every series line is a cached prefix (``name{labels} ``, rebuilt only for rows whose host or GPU
changed) joined with a value formatted in bulk from the store's columns. Series of hosts that
stopped sending are left out after ``stale_after``; ``gpulse_host_up`` stays, at 0.

Formats: ``gpulse`` (our names, base units) and ``dcgm`` (dcgm-exporter's names, labels and units).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from collector.exporters.exposition.dcgm import DCGM_FAMILIES, dcgm_labels
from collector.exporters.exposition.events import EventTallies
from collector.exporters.exposition.health import health_reasons_block
from collector.exporters.exposition.labels import PrefixTable
from collector.exporters.exposition.nvlink import nvlink_block
from collector.exporters.exposition.text import block, escape, format_values, header
from collector.store import HEALTH_NAMES, FleetStore
from protos.fields import Kind

__all__ = ["FORMATS", "FleetExposition", "escape"]

FORMATS = ("gpulse", "dcgm")
MAX_XID = 999  # NVIDIA's catalogue ends in the 150s; anything past this is not a real code

Blocks = list[str | list[str]]  # a family's text, or its pieces still to be joined

_HEALTH_CODES = np.array(sorted(HEALTH_NAMES), dtype=np.int64)
_GPU_STATE_FAMILIES = (
    ("gpulse_gpu_lost", "gauge", "1 once the agent reported the GPU lost (fallen off the bus)."),
    ("gpulse_gpu_pcie_link_max_generation", "gauge", "Highest PCIe generation the GPU and its slot support."),
    ("gpulse_gpu_pcie_link_max_width", "gauge", "Widest PCIe link, in lanes, the GPU and its slot support."),
)
_DCGM_XID = ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.")
_HOST_STATE_FAMILIES = (
    ("gpulse_host_up", "gauge", "1 while the host's agent is connected and sending."),
    ("gpulse_host_last_frame_timestamp_seconds", "gauge", "Sample time of the host's newest frame."),
    (
        "gpulse_host_clock_skew_seconds",
        "gauge",
        "Agent clock minus collector clock, from the send stamps on its messages.",
    ),
    (
        "gpulse_host_spool_dropped_records_total",
        "counter",
        "Records the agent's spool dropped unsent to stay in budget.",
    ),
)


class FleetExposition:
    """The fleet store as Prometheus text, in the formats asked for; one instance per /metrics endpoint."""

    def __init__(
        self,
        store: FleetStore,
        *,
        stale_after: float = 120.0,
        clock: Callable[[], float] = time.time,
        formats: Sequence[str] = ("gpulse",),
        tallies: EventTallies | None = None,
    ) -> None:
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown exposition format {unknown[0]!r}; known: {', '.join(FORMATS)}")
        self.store = store
        self.stale_after = stale_after
        self.clock = clock
        self.formats = tuple(formats)
        self.tallies = tallies or EventTallies()
        catalog = store.catalog
        self._host_fields = [catalog[fid] for fid in catalog.host_ids]
        self._gpu_fields = [catalog[fid] for fid in catalog.gpu_ids]
        self._host_heads = [_field_header(f.metric_name, f.kind, f.help) for f in self._host_fields]
        self._gpu_heads = [_field_header(f.metric_name, f.kind, f.help) for f in self._gpu_fields]
        self._hosts = PrefixTable(
            [name for name, _, _ in _HOST_STATE_FAMILIES] + [f.metric_name for f in self._host_fields],
            lambda slot: f'host="{escape(self._host_id(slot))}"',
        )
        self._gpus = PrefixTable(
            [name for name, _, _ in _GPU_STATE_FAMILIES] + [f.metric_name for f in self._gpu_fields],
            self._gpu_label_text,
        )
        self._health = PrefixTable(
            [("gpulse_gpu_health_status", f',status="{HEALTH_NAMES[int(c)]}"') for c in _HEALTH_CODES],
            self._gpu_label_text,
        )
        self._dcgm = PrefixTable([f.name for f in DCGM_FAMILIES] + [_DCGM_XID[0]], self._dcgm_label_text)
        self._dcgm_columns = np.array([f.column(catalog) for f in DCGM_FAMILIES], dtype=np.int64)
        self._dcgm_scales = np.array([f.scale for f in DCGM_FAMILIES])
        self._dcgm_whole = np.array([f.whole for f in DCGM_FAMILIES])
        self._dcgm_heads = [header(f.name, f.kind, f.help) for f in DCGM_FAMILIES]
        self._info_lines: dict[int, tuple[tuple[str, ...], str]] = {}
        self._pcie_max: npt.NDArray[np.float64] = np.empty((0, 2))
        self._generation = -1

    # -- labels ------------------------------------------------------------------------------------
    def _host_id(self, slot: int) -> str:
        record = self.store.by_slot[slot]
        assert record is not None
        return record.host_id

    def _gpu_label_text(self, row: int) -> str:
        meta = self.store.gpu_meta[row]
        assert meta is not None
        host = self._host_id(int(self.store.gpu_host_slot[row]))
        return f'host="{escape(host)}",gpu="{meta.index}",uuid="{escape(meta.uuid)}",model="{escape(meta.model)}"'

    def _dcgm_label_text(self, row: int) -> str:
        meta = self.store.gpu_meta[row]
        assert meta is not None
        return dcgm_labels(self._host_id(int(self.store.gpu_host_slot[row])), meta)

    def _refresh_labels(self) -> None:
        store = self.store
        if self._generation == store.generation and len(self._hosts.labels) >= len(store.by_slot):
            return
        host_keys: list[Hashable] = [r.host_id if r is not None else None for r in store.by_slot]
        self._hosts.refresh(host_keys)
        gpu_keys: list[Hashable] = [
            (id(m), m.uuid, self._host_id(int(store.gpu_host_slot[m.row]))) if m is not None else None
            for m in store.gpu_meta
        ]
        self._gpus.refresh(gpu_keys)
        self._health.refresh(gpu_keys)
        if "dcgm" in self.formats:
            self._dcgm.refresh(gpu_keys)
        # Inventory limits, for link-downgrade rules; zero means the agent could not read them.
        pcie_max = np.full((len(store.gpu_meta), 2), np.nan)
        for record in store.by_slot:
            if record is not None:
                for meta, inv in zip(record.gpus, record.hello.gpus, strict=False):
                    if inv.pcie_max_generation:
                        pcie_max[meta.row] = (inv.pcie_max_generation, inv.pcie_max_width or np.nan)
        self._pcie_max = pcie_max
        self._generation = store.generation

    # -- render ------------------------------------------------------------------------------------
    def render(self) -> str:
        """The whole exposition text, ending in a newline (or empty when there is nothing to show)."""
        blocks: Blocks = []
        for _ in self._render_steps(blocks):
            pass
        return _join(blocks)

    async def render_async(self) -> list[bytes]:
        """The same text, UTF-8 encoded in chunks whose concatenation is ``render()``'s, rendered in
        slices between which the event loop goes on with ingest: a scrape of a large fleet (about
        0.3 s of CPU and 125 MB of text at 2,000 hosts, joining and encoding included) does not hold
        every stream for its whole length. Values may move between slices, as they would between
        two scrapes; the fleet's shape may not: if a host joins or leaves mid-render, the rows
        chosen at the start may belong to another GPU by then, so the render starts over, in one go."""
        generation = self.store.generation
        blocks: Blocks = []
        chunks: list[bytes] = []
        done = 0
        for _ in self._render_steps(blocks):
            chunks.append(_join(blocks[done:]).encode())
            done = len(blocks)
            await asyncio.sleep(0)
            if self.store.generation != generation:
                return [self.render().encode()]
        chunks.append(_join(blocks[done:]).encode())
        return chunks

    def _render_steps(self, blocks: Blocks) -> Iterator[None]:
        """Render into ``blocks``, pausing (yielding) after every few families."""
        self._refresh_labels()
        store = self.store
        n_slots = len(store.by_slot)
        now_ns = int(self.clock() * 1e9)
        present = np.array([r is not None for r in store.by_slot], dtype=bool)
        fresh = present & (store.host_time_ns[:n_slots] > now_ns - int(self.stale_after * 1e9))
        n_rows = len(store.gpu_meta)
        host_slot = store.gpu_host_slot[:n_rows]
        rows = np.flatnonzero((host_slot >= 0) & fresh[np.maximum(host_slot, 0)])
        if "gpulse" in self.formats:
            yield from self._render_hosts(blocks, present, fresh)
            yield from self._render_gpus(blocks, rows)
        if "dcgm" in self.formats:
            yield from self._render_dcgm(blocks, rows)

    def _render_hosts(
        self, blocks: Blocks, present: npt.NDArray[np.bool_], fresh: npt.NDArray[np.bool_]
    ) -> Iterator[None]:
        store = self.store
        table = self._hosts.table
        all_slots = np.flatnonzero(present)
        slots = np.flatnonzero(fresh)
        records = [store.by_slot[s] for s in all_slots.tolist()]
        connected = np.array([r is not None and r.connected for r in records], dtype=np.bool_)
        up = (connected & fresh[all_slots]).astype(np.float64)
        (up_name, up_kind, up_help), (ts_name, ts_kind, ts_help), (sk_name, sk_kind, sk_help) = _HOST_STATE_FAMILIES[:3]
        blocks.append(block(header(up_name, up_kind, up_help), table[0, all_slots].tolist(), format_values(up)))
        sent = all_slots[store.host_time_ns[all_slots] > 0]
        stamps = np.round(store.host_time_ns[sent] / 1e9, 3)
        blocks.append(block(header(ts_name, ts_kind, ts_help), table[1, sent].tolist(), format_values(stamps)))
        fresh_records = [store.by_slot[s] for s in slots.tolist()]
        skew = np.array([r.clock_skew_seconds if r is not None else np.nan for r in fresh_records])
        blocks.append(block(header(sk_name, sk_kind, sk_help), table[2, slots].tolist(), format_values(skew)))
        dr_name, dr_kind, dr_help = _HOST_STATE_FAMILIES[3]
        dropped = self.tallies.spool_dropped_records
        # Every fresh host gets the counter, at 0 until a drop: increase() cannot see a series' first value.
        drops = np.array([dropped.get(r.host_id, 0) if r is not None else 0 for r in fresh_records], dtype=np.float64)
        blocks.append(block(header(dr_name, dr_kind, dr_help), table[3, slots].tolist(), format_values(drops)))
        blocks.append(self._host_info(slots))
        yield
        offset = len(_HOST_STATE_FAMILIES)
        yield from self._render_matrix(blocks, self._host_heads, table[offset:], slots, store.host_values[slots])

    def _host_info(self, slots: npt.NDArray[np.int64]) -> str:
        lines = [header("gpulse_host_info", "gauge", "Host inventory from the agent's hello; always 1.")]
        for slot in slots.tolist():
            record = self.store.by_slot[slot]
            assert record is not None
            h = record.hello
            lines.append(
                f'gpulse_host_info{{{self._hosts.labels[slot]},hostname="{escape(h.host.hostname)}",'
                f'kernel="{escape(h.host.kernel)}",os="{escape(h.host.os)}",'
                f'agent_version="{escape(h.agent_version)}",gpu_source="{escape(h.host.gpu_source)}"}} 1'
            )
        return "\n".join(lines)

    def _render_gpus(self, blocks: Blocks, rows: npt.NDArray[np.int64]) -> Iterator[None]:
        store = self.store
        table = self._gpus.table
        blocks.append(self._gpu_info(rows))
        yield
        offset = len(_GPU_STATE_FAMILIES)
        yield from self._render_matrix(blocks, self._gpu_heads, table[offset:], rows, store.gpu_values[rows])
        name, kind, help_text = _GPU_STATE_FAMILIES[0]
        lost = store.gpu_lost[rows].astype(np.float64)
        blocks.append(block(header(name, kind, help_text), table[0, rows].tolist(), format_values(lost)))
        for i, (name, kind, help_text) in enumerate(_GPU_STATE_FAMILIES[1:3]):
            limit = self._pcie_max[rows, i]
            known = ~np.isnan(limit)
            prefixes = table[1 + i, rows[known]].tolist()
            blocks.append(block(header(name, kind, help_text), prefixes, format_values(limit[known])))
        blocks.append(self._health_block(rows))
        blocks.append(self._xid_block(rows))
        yield
        if nvlink := nvlink_block(self.store.nvlink, rows, self._gpus.labels):
            blocks.append(nvlink)
        if reasons := health_reasons_block(self.store.health_reasons, rows, self._gpus.labels):
            blocks.append(reasons)

    def _gpu_info(self, rows: npt.NDArray[np.int64]) -> str:
        lines = [header("gpulse_gpu_info", "gauge", "GPU inventory; always 1.")]
        labels = self._gpus.labels
        cache = self._info_lines
        for row in rows.tolist():
            meta = self.store.gpu_meta[row]
            assert meta is not None
            # The driver can change under the same GPU (an upgrade and reconnect): key on it too.
            key = (labels[row], meta.pci_bus_id, meta.serial, meta.driver_version, meta.vbios_version)
            cached = cache.get(row)
            if cached is None or cached[0] != key:
                line = (
                    f'gpulse_gpu_info{{{labels[row]},pci_bus_id="{escape(meta.pci_bus_id)}",'
                    f'serial="{escape(meta.serial)}",driver_version="{escape(meta.driver_version)}",'
                    f'vbios_version="{escape(meta.vbios_version)}"}} 1'
                )
                cached = cache[row] = (key, line)
            lines.append(cached[1])
        return "\n".join(lines)

    def _health_block(self, rows: npt.NDArray[np.int64]) -> str:
        head = header("gpulse_gpu_health_status", "gauge", "GPU health from the agent's checks, one series per state.")
        status = self.store.gpu_health[rows]
        flags = (status[:, None] == _HEALTH_CODES[None, :]).astype(np.float64).ravel()
        prefixes = self._health.table[:, rows].T.ravel().tolist()  # row-major, like the flags
        return block(head, prefixes, format_values(flags))

    def _xid_block(self, rows: npt.NDArray[np.int64]) -> str:
        lines = [
            header("gpulse_gpu_xid_errors_total", "counter", "XID errors reported by the driver, every occurrence.")
        ]
        row_set = set(rows.tolist())
        labels = self._gpus.labels
        # XID codes come from agents: codes past MAX_XID share one series, so a misbehaving
        # agent cannot grow the label set without bound.
        counts: dict[tuple[int, str], int] = {}
        for (row, xid), count in self.store.xid_counts.items():
            if row in row_set:
                key = (row, str(xid) if 0 <= xid <= MAX_XID else "other")
                counts[key] = counts.get(key, 0) + count
        for (row, code), count in sorted(counts.items()):
            lines.append(f'gpulse_gpu_xid_errors_total{{{labels[row]},xid="{code}"}} {count}')
        return "\n".join(lines)

    def _render_dcgm(self, blocks: Blocks, rows: npt.NDArray[np.int64]) -> Iterator[None]:
        values = self.store.gpu_values[rows][:, self._dcgm_columns] * self._dcgm_scales
        values[:, self._dcgm_whole] = np.floor(values[:, self._dcgm_whole])
        yield from self._render_matrix(blocks, self._dcgm_heads, self._dcgm.table[: len(DCGM_FAMILIES)], rows, values)
        last_xid = self.tallies.last_xid
        store = self.store
        keys = []
        for row in rows.tolist():
            meta = store.gpu_meta[row]
            assert meta is not None
            keys.append((self._host_id(int(store.gpu_host_slot[row])), meta.uuid))
        xids = np.array([last_xid.get(k, 0) for k in keys], dtype=np.float64)
        prefixes = self._dcgm.table[len(DCGM_FAMILIES), rows].tolist()
        blocks.append(block(header(*_DCGM_XID), prefixes, format_values(xids)))

    @staticmethod
    def _render_matrix(
        blocks: Blocks,
        heads: list[str],
        table: npt.NDArray[np.object_],
        rows: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> Iterator[None]:
        """One family per column of ``values`` (one line per row of it), NaN left out; formatted a
        slice of families at a time, each slice in one pass, with a pause after each."""
        # Usually every row is fresh: a slice is a view, where a gather would copy the whole table.
        contiguous = len(rows) > 0 and int(rows[-1]) == len(rows) - 1
        for first in range(0, len(heads), _FAMILIES_PER_SLICE):
            last = min(first + _FAMILIES_PER_SLICE, len(heads))
            by_family = np.ascontiguousarray(values[:, first:last].T)
            keep = ~np.isnan(by_family)
            texts = format_values(by_family[keep])
            part = table[first:last, : len(rows)] if contiguous else table[first:last][:, rows]
            prefixes = part[keep].tolist()
            ends = np.cumsum(keep.sum(axis=1)).tolist()
            start = 0
            for head, end in zip(heads[first:last], ends, strict=True):
                family: list[str] = [""] * (2 * (end - start) + 1)
                family[0] = head
                family[1::2] = prefixes[start:end]
                family[2::2] = texts[start:end]
                blocks.append(family)
                start = end
            yield


# Families formatted between two pauses of an asynchronous render: at most about 25 ms of work at 2,000
# hosts, and few enough slices that formatting in one pass per slice stays cheap.
_FAMILIES_PER_SLICE = 4


def _join(blocks: Blocks) -> str:
    """One join over every piece: a large fleet's text is copied once, not once per family."""
    pieces: list[str] = []
    for item in blocks:
        if isinstance(item, str):
            pieces.append(item)
        else:
            pieces.extend(item)
        pieces.append("\n")
    return "".join(pieces)


def _field_header(name: str, kind: Kind, help_text: str) -> str:
    return header(name, "counter" if kind is Kind.COUNTER else "gauge", help_text)
