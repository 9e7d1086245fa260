"""`gpulse backtest`: run detection over a recorded trace offline and list the alerts with their times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.alert import Alert
from collector.detect.offline import OfflineFleet
from collector.detect.rules import DEFAULT_RULES
from collector.detect.sinks import RecordingSink
from protos import telemetry_pb2 as pb
from protos.codec import PROTOCOL_VERSION
from runtime.trace import TraceEvent, TraceFrame, TraceHeader, TraceHost, read_trace


@dataclass(frozen=True, slots=True)
class BacktestResult:
    alerts: list[tuple[float, Alert]]  # (time, alert) at each state change
    frames: int
    events: int
    start: float
    end: float


def trace_hello(header: TraceHeader, host: TraceHost) -> pb.Hello:
    """The Hello a replaying agent would open with, built from the trace alone."""
    return pb.Hello(
        host_id=host.host_id,
        boot_id="trace",
        protocol_version=PROTOCOL_VERSION,
        interval_seconds=host.interval_seconds,
        host=pb.HostInventory(hostname=host.host_id, gpu_source="replay"),
        gpus=host.gpus,
        host_field_ids=header.host_field_ids,
        gpu_field_ids=header.gpu_field_ids,
    )


def backtest(
    trace: Path, rule_paths: Sequence[Path | str] = (DEFAULT_RULES,), *, interval: float = 1.0
) -> BacktestResult:
    """Replay ``trace`` through the store and detection on the trace's own clock."""
    sink = RecordingSink()
    fleet = OfflineFleet(sink, rule_paths=rule_paths, interval=interval)
    header, records = read_trace(trace)
    hosts = {}
    frames = events = 0
    start = end = 0.0
    for record in records:
        if isinstance(record, TraceHost):
            hosts[record.host_id] = trace_hello(header, record)
            continue
        now = record.unix_ns / 1e9
        start = start or now
        end = max(end, now)
        fleet.advance(now)
        host = hosts[record.host_id]
        rec = fleet.store.hosts.get(record.host_id)
        if rec is None:
            rec = fleet.connect(host)
        if isinstance(record, TraceFrame):
            fleet.frame(rec, record.unix_ns, record.host, record.gpu)
            frames += 1
        elif isinstance(record, TraceEvent):
            fleet.event(rec, record.event)
            events += 1
    fleet.advance(end + interval)
    return BacktestResult(sink.transitions(), frames, events, start, end)


def format_alerts(result: BacktestResult) -> list[str]:
    """One line per alert state change: time since start, state, name, where, summary."""
    lines = []
    for at, alert in result.alerts:
        where = alert.labels.get("host", "")
        if "gpu" in alert.labels:
            where += f" gpu {alert.labels['gpu']}"
        summary = alert.annotations.get("summary", "")
        state, severity = alert.state.value, alert.labels["severity"]
        lines.append(f"+{at - result.start:9.1f}s  {state:8s} {severity:8s} {alert.name:30s} {where:20s} {summary}")
    return lines
