"""What an alert says about where it happened: the GPU's identity, the job on it, a dashboard link.

Read from the fleet store when an alert starts firing and kept in its annotations, so the page carries
the job that was running at the time of the fault, and a restart sends the very same page.
"""

from __future__ import annotations

import string
from collections import defaultdict
from dataclasses import replace

from collector.alert import Alert
from collector.store import FleetStore, GpuMeta, HostRecord

GPU_UUID = "gpu_uuid"
GPU_MODEL = "gpu_model"
GPU_PCI_BUS_ID = "gpu_pci_bus_id"
JOB = "job"
DASHBOARD = "dashboard"
CONTEXT_KEYS = frozenset({GPU_UUID, GPU_MODEL, GPU_PCI_BUS_ID, JOB, DASHBOARD})


def _find_gpu(record: HostRecord, labels: dict[str, str]) -> GpuMeta | None:
    uuid = labels.get("uuid") or labels.get("gpu_uuid")
    for meta in record.gpus:
        if (uuid and meta.uuid == uuid) or (not uuid and labels.get("gpu") == str(meta.index)):
            return meta
    return None


def describe_job(record: HostRecord, gpu_index: int) -> str:
    """``slurm job 1234 "train" (user alice)``; several jobs are joined with "; "; "" when none is known."""
    seen: list[str] = []
    for process in record.workloads.get(gpu_index, []):
        w = process.workload
        if not w.kind and not w.id:
            continue
        text = f"{w.kind or 'job'} {w.id}".strip()
        if w.name:
            text += f' "{w.name}"'
        if w.namespace:
            text += f" in {w.namespace}"
        if w.user:
            text += f" (user {w.user})"
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


class StoreContext:
    """An ``Enricher`` over the fleet store; ``dashboard_url`` is a template over the alert's labels."""

    def __init__(self, store: FleetStore, dashboard_url: str = "") -> None:
        self._store = store
        self._dashboard_url = dashboard_url

    def __call__(self, alert: Alert) -> Alert:
        labels = dict(alert.labels)
        extra: dict[str, str] = {}
        record = self._store.hosts.get(labels.get("host", ""))
        meta = _find_gpu(record, labels) if record is not None else None
        if record is not None and meta is not None:
            extra[GPU_UUID] = meta.uuid
            extra[GPU_MODEL] = meta.model
            extra[GPU_PCI_BUS_ID] = meta.pci_bus_id
            job = describe_job(record, meta.index)
            if job:
                extra[JOB] = job
        if self._dashboard_url:
            extra[DASHBOARD] = string.Formatter().vformat(self._dashboard_url, (), defaultdict(str, labels))
        if not extra:
            return alert
        # What detection wrote wins over what we looked up.
        return replace(alert, annotations={**extra, **alert.annotations})
