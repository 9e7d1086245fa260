"""Renders the fleet store as Prometheus text exposition, straight from its arrays.

Label sets are built once per host/GPU layout (the store's ``generation``) and reused; each scrape
only formats the values. Series of hosts that stopped sending are left out after ``stale_after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from collector.store import HEALTH_NAMES, FleetStore
from protos.fields import Field, Kind


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class FleetExposition:
    def __init__(
        self, store: FleetStore, *, stale_after: float = 120.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self.clock = clock
        self._generation = -1
        self._gpu_labels: list[str] = []
        self._host_labels: list[str] = []

    def _refresh_labels(self) -> None:
        if self._generation == self.store.generation and len(self._host_labels) == len(self.store.by_slot):
            return
        self._host_labels = [f'host="{escape(r.host_id)}"' if r is not None else "" for r in self.store.by_slot]
        labels = []
        for meta in self.store.gpu_meta:
            if meta is None:
                labels.append("")
                continue
            host = self.store.by_slot[int(self.store.gpu_host_slot[meta.row])]
            assert host is not None
            labels.append(
                f'host="{escape(host.host_id)}",gpu="{meta.index}",uuid="{escape(meta.uuid)}",'
                f'model="{escape(meta.model)}"'
            )
        self._gpu_labels = labels
        self._generation = self.store.generation

    def render(self) -> str:
        self._refresh_labels()
        store = self.store
        now_ns = int(self.clock() * 1e9)
        fresh_slots = (store.host_time_ns[: len(store.by_slot)] > now_ns - int(self.stale_after * 1e9)) & np.array(
            [r is not None for r in store.by_slot], dtype=bool
        )
        out: list[str] = []
        self._render_hosts(out, fresh_slots)
        self._render_gpus(out, fresh_slots)
        return "\n".join(out) + "\n" if out else ""

    def _render_hosts(self, out: list[str], fresh: np.ndarray) -> None:
        store = self.store
        slots = np.flatnonzero(fresh)
        out.append("# HELP gpulse_host_up 1 while the host's agent is connected and sending.")
        out.append("# TYPE gpulse_host_up gauge")
        for slot in range(len(store.by_slot)):
            record = store.by_slot[slot]
            if record is not None:
                up = 1 if record.connected and fresh[slot] else 0
                out.append(f"gpulse_host_up{{{self._host_labels[slot]}}} {up}")
        out.append("# HELP gpulse_host_last_frame_timestamp_seconds Sample time of the host's newest frame.")
        out.append("# TYPE gpulse_host_last_frame_timestamp_seconds gauge")
        for slot in range(len(store.by_slot)):
            if store.by_slot[slot] is not None and store.host_time_ns[slot]:
                out.append(
                    f"gpulse_host_last_frame_timestamp_seconds{{{self._host_labels[slot]}}} "
                    f"{store.host_time_ns[slot] / 1e9:.3f}"
                )
        out.append("# HELP gpulse_host_clock_skew_seconds Agent clock minus collector clock at stream open.")
        out.append("# TYPE gpulse_host_clock_skew_seconds gauge")
        for slot in slots.tolist():
            rec = store.by_slot[slot]
            assert rec is not None
            out.append(f"gpulse_host_clock_skew_seconds{{{self._host_labels[slot]}}} {rec.clock_skew_seconds:.3f}")
        values = store.host_values[slots]
        for col, fid in enumerate(store.catalog.host_ids):
            self._render_field(out, store.catalog[fid], values[:, col], [self._host_labels[s] for s in slots])

    def _render_gpus(self, out: list[str], fresh_slots: np.ndarray) -> None:
        store = self.store
        n = len(store.gpu_meta)
        host_slot = store.gpu_host_slot[:n]
        rows = np.flatnonzero((host_slot >= 0) & fresh_slots[np.maximum(host_slot, 0)])
        labels = [self._gpu_labels[r] for r in rows]
        out.append("# HELP gpulse_gpu_info GPU inventory; always 1.")
        out.append("# TYPE gpulse_gpu_info gauge")
        for r, lab in zip(rows, labels, strict=True):
            meta = store.gpu_meta[r]
            assert meta is not None
            out.append(
                f'gpulse_gpu_info{{{lab},pci_bus_id="{escape(meta.pci_bus_id)}",serial="{escape(meta.serial)}",'
                f'driver_version="{escape(meta.driver_version)}",vbios_version="{escape(meta.vbios_version)}"}} 1'
            )
        values = store.gpu_values[rows]
        for col, fid in enumerate(store.catalog.gpu_ids):
            self._render_field(out, store.catalog[fid], values[:, col], labels)
        out.append("# HELP gpulse_gpu_health_status GPU health from the agent's checks, one series per state.")
        out.append("# TYPE gpulse_gpu_health_status gauge")
        for r, lab in zip(rows, labels, strict=True):
            status = int(store.gpu_health[r])
            for code, name in HEALTH_NAMES.items():
                out.append(f'gpulse_gpu_health_status{{{lab},status="{name}"}} {1 if code == status else 0}')
        out.append("# HELP gpulse_gpu_lost 1 once the agent reported the GPU lost (fallen off the bus).")
        out.append("# TYPE gpulse_gpu_lost gauge")
        for r, lab in zip(rows, labels, strict=True):
            out.append(f"gpulse_gpu_lost{{{lab}}} {int(store.gpu_lost[r])}")
        out.append("# HELP gpulse_gpu_xid_errors_total XID errors reported by the driver, every occurrence.")
        out.append("# TYPE gpulse_gpu_xid_errors_total counter")
        row_set = set(rows.tolist())
        for (row, xid), count in sorted(store.xid_counts.items()):
            if row in row_set:
                out.append(f'gpulse_gpu_xid_errors_total{{{self._gpu_labels[row]},xid="{xid}"}} {count}')

    @staticmethod
    def _render_field(out: list[str], field: Field, column: np.ndarray, labels: list[str]) -> None:
        name = field.metric_name
        present = np.flatnonzero(~np.isnan(column))
        out.append(f"# HELP {name} {field.help}")
        out.append(f"# TYPE {name} {'counter' if field.kind is Kind.COUNTER else 'gauge'}")
        values = column[present].tolist()  # Python floats: repr() of a numpy scalar is not exposition syntax
        out.extend(f"{name}{{{labels[i]}}} {_fmt(v)}" for i, v in zip(present.tolist(), values, strict=True))
