"""The metric names the collector exposes, found by rendering a store that has every kind of series.

Rules and dashboards are checked against this set, so a renamed metric breaks a test, not a page.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest

from collector.exporters.exposition import EventTallies, FleetExposition
from collector.ingest.decode import decode_frame
from collector.selfmetrics import CollectorMetrics
from collector.store import FleetStore
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout, encode_frame
from protos.fields import CATALOG

_NOW = 1_800_000_000 * 10**9


def exposed_metric_names() -> set[str]:
    """Sample names of /metrics with one host whose every field, event tally and inventory item is set."""
    store = FleetStore()
    hello = pb.Hello(
        host_id="h",
        boot_id="b",
        gpus=[pb.GpuInventory(index=0, uuid="GPU-0", name="m", pcie_max_generation=5, pcie_max_width=16)],
        host_field_ids=CATALOG.host_ids,
        gpu_field_ids=CATALOG.gpu_ids,
    )
    layout = FrameLayout.from_hello(hello)
    record = store.register(hello, layout)
    frame = encode_frame(_NOW, np.ones(len(CATALOG.host_ids)), np.ones((1, len(CATALOG.gpu_ids))))
    store.apply_frame(record, decode_frame(frame, layout, now_ns=_NOW, max_future_ns=1, max_age_ns=1))
    store.record_xid(record, 0, 79, 1)
    text = FleetExposition(store, clock=lambda: _NOW / 1e9, formats=("gpulse", "dcgm"), tallies=EventTallies()).render()
    text += generate_latest(CollectorMetrics().registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
