"""Detection without a network: apply hellos, frames and events to a store in-process, on trace time.

Backtests and the evaluation harness drive the same store and engine the collector runs, with
the clock set to the data's own time, so a day of fleet data is evaluated in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from collector.alert import AlertSink
from collector.detect.engine import DetectionEngine
from collector.detect.rules import DEFAULT_RULES
from collector.ingest.decode import DecodedFrame
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout


class OfflineFleet:
    """A store and a detection engine whose clock is whatever time the caller says it is."""

    def __init__(
        self, sink: AlertSink, *, rule_paths: Sequence[Path | str] = (DEFAULT_RULES,), interval: float = 1.0
    ) -> None:
        self.now = 0.0
        self.store = FleetStore()
        self.engine = DetectionEngine(
            self.store, sink, rule_paths=rule_paths, interval=interval, clock=lambda: self.now
        )
        self.interval = interval
        self.next_tick: float | None = None

    def advance(self, now: float) -> None:
        """Move the clock to ``now``, running every evaluation tick that falls due on the way."""
        if self.next_tick is None:
            self.next_tick = now
        while self.next_tick <= now:
            self.now = self.next_tick
            self.engine.tick(self.next_tick)
            self.next_tick += self.interval
        self.now = now

    def connect(self, hello: pb.Hello, *, skew_seconds: float = 0.0) -> HostRecord:
        record = self.store.register(hello, FrameLayout.from_hello(hello))
        record.connected = True
        record.clock_skew_seconds = skew_seconds
        return record

    def disconnect(self, record: HostRecord) -> None:
        record.connected = False

    def frame(self, record: HostRecord, unix_ns: int, host: npt.ArrayLike, gpu: npt.ArrayLike) -> None:
        """Apply one frame's values (arrays, or an agent source's plain rows) as the server would."""
        decoded = DecodedFrame(unix_ns, np.asarray(host, dtype=np.float64), np.asarray(gpu, dtype=np.float64), 0)
        self.store.apply_frame(record, decoded)
        self.engine.frame_applied(record, unix_ns)

    def event(self, record: HostRecord, event: pb.Event) -> None:
        """Apply an agent event to the store as the collector's server does, then tell detection."""
        kind = event.WhichOneof("kind")
        if kind == "xid":
            self.store.record_xid(record, event.xid.gpu_index, event.xid.xid, max(1, event.xid.count))
        elif kind == "gpu_lost":
            self.store.mark_lost(record, event.gpu_lost.gpu_index)
        elif kind == "health":
            self.store.set_health(record, event.health.gpu_index, event.health.status, list(event.health.reasons))
        elif kind == "workload":
            record.workloads[event.workload.gpu_index] = list(event.workload.processes)
        self.engine.event_applied(record, event)
