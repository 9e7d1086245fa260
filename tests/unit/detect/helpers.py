"""A small fleet in a real store, driven by hand: set values by field name, tick at chosen times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.hello import build_hello
from agent.records import GpuInfo, HostInfo
from collector.detect.engine import DetectionEngine
from collector.detect.sinks import RecordingSink
from collector.ingest.decode import DecodedFrame
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout
from protos.fields import CATALOG

GPU_IDS = CATALOG.gpu_ids
COLUMN = {CATALOG[f].name: i for i, f in enumerate(GPU_IDS)}


def gpu_infos(host: str, count: int, model: str = "NVIDIA H100 80GB HBM3", tag: str = "") -> list[GpuInfo]:
    return [
        GpuInfo(
            index=i,
            uuid=f"GPU-{host}{tag}-{i}",
            name=model,
            pcie_max_generation=5,
            pcie_max_width=16,
            nvlink_count=18,
            power_limit_max_watts=700.0,
        )
        for i in range(count)
    ]


def healthy_row() -> np.ndarray:
    row = np.full(len(GPU_IDS), np.nan)
    for name, value in {
        "utilization": 0.95,
        "temperature": 70.0,
        "power_usage": 600.0,
        "power_limit": 700.0,
        "sm_clock": 1980e6,
        "sm_clock_max": 1980e6,
        "pcie_replay": 0.0,
        "pcie_link_generation": 5.0,
        "pcie_link_width": 16.0,
        "ecc_uncorrected_volatile": 0.0,
        "remapped_rows_pending": 0.0,
        "nvlink_links_down": 0.0,
    }.items():
        row[COLUMN[name]] = value
    return row


class Fleet:
    """Hosts of GPUs in a FleetStore with a DetectionEngine on a clock the test moves."""

    def __init__(self, rules: list[Path | str] | None = None, **engine_args: object) -> None:
        self.now = 1_000.0
        self.store = FleetStore(host_capacity=4, gpu_capacity=8)
        self.sink = RecordingSink()
        kwargs: dict[str, object] = {"clock": lambda: self.now, **engine_args}
        if rules is not None:
            kwargs["rule_paths"] = rules
        self.engine = DetectionEngine(self.store, self.sink, **kwargs)  # type: ignore[arg-type]
        self.values: dict[str, np.ndarray] = {}
        self.records: dict[str, HostRecord] = {}

    def add_host(self, host: str, gpus: int = 4, model: str = "NVIDIA H100 80GB HBM3", tag: str = "") -> HostRecord:
        hello = build_hello(
            host_id=host,
            boot_id="boot",
            host=HostInfo(host),
            gpus=gpu_infos(host, gpus, model, tag),
            gpu_source="sim",
            host_field_ids=(),
            gpu_field_ids=GPU_IDS,
            interval=1.0,
        )
        record = self.store.register(hello, FrameLayout.from_hello(hello))
        record.connected = True
        self.records[host] = record
        self.values[host] = np.stack([healthy_row() for _ in range(gpus)])
        return record

    def set(self, host: str, gpu: int, field: str, value: float) -> None:
        self.values[host][gpu, COLUMN[field]] = value

    def send(self, *hosts: str) -> None:
        for host in hosts or tuple(self.values):
            frame = DecodedFrame(int(self.now * 1e9), np.zeros(0), self.values[host].copy(), 0)
            self.store.apply_frame(self.records[host], frame)

    def step(self, seconds: float = 1.0, *, send: bool = True) -> list:
        """Advance the clock, send every host's frame, tick; returns what was pushed."""
        self.now += seconds
        if send:
            self.send()
        return self.engine.tick(self.now)

    def event(self, host: str, event: pb.Event) -> None:
        record = self.records[host]
        kind = event.WhichOneof("kind")
        if kind == "xid":
            self.store.record_xid(record, event.xid.gpu_index, event.xid.xid, event.xid.count)
        elif kind == "gpu_lost":
            self.store.mark_lost(record, event.gpu_lost.gpu_index)
        self.engine.event_applied(record, event)

    def firing(self, name: str | None = None) -> set[tuple[str, str, str]]:
        """(alertname, host, gpu) of alerts firing now."""
        return {
            (a.name, a.labels.get("host", ""), a.labels.get("gpu", ""))
            for a in self.engine.active_alerts()
            if a.state.value == "firing" and (name is None or a.name == name)
        }


def write_rules(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
