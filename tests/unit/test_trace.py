from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from protos import telemetry_pb2 as pb
from protos.fields import CATALOG
from runtime.trace import TraceError, TraceEvent, TraceFrame, TraceHost, TraceWriter, read_trace

IDS = (CATALOG.gpu("temperature").id, CATALOG.gpu("power_usage").id)


def write(path: Path) -> Path:
    out = io.StringIO()
    writer = TraceWriter(out, gpu_field_ids=IDS, seed=4)
    gpus = [
        pb.GpuInventory(index=0, uuid="GPU-0", name="NVIDIA H100 80GB HBM3", unsupported_field_ids=[127]),
        pb.GpuInventory(index=1, uuid="GPU-1", name="X"),
    ]
    writer.host("node-a", 1.0, gpus)
    writer.frame("node-a", 1_000_000_000, np.array([[60.0, np.nan], [61.5, 300.0]]))
    writer.event("node-a", pb.Event(unix_ns=1_500_000_000, xid=pb.XidEvent(gpu_index=1, xid=79, count=1, source="sim")))
    writer.frame("node-a", 2_000_000_000, np.array([[60.0, 250.0], [61.0, 301.0]]))
    path.write_text(out.getvalue())
    return path


def test_round_trip_keeps_values_missing_reads_inventory_and_events(tmp_path: Path) -> None:
    header, records = read_trace(write(tmp_path / "t.jsonl"))
    assert header.gpu_field_ids == IDS and header.meta == {"seed": 4}
    host, frame, event, frame2 = list(records)
    assert isinstance(host, TraceHost) and list(host.gpus[0].unsupported_field_ids) == [127]
    assert host.gpus[1].uuid == "GPU-1"
    assert isinstance(frame, TraceFrame) and frame.unix_ns == 1_000_000_000
    assert math.isnan(frame.gpu[0][1]) and frame.gpu[1] == [61.5, 300.0]  # plain lists, NaN: not read
    assert isinstance(event, TraceEvent) and event.event.xid.xid == 79 and event.event.unix_ns == 1_500_000_000
    assert isinstance(frame2, TraceFrame)


def test_the_documented_lines_are_plain_json(tmp_path: Path) -> None:
    lines = write(tmp_path / "t.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {
        "format": "gpulse-trace",
        "version": 1,
        "gpu_fields": ["temperature", "power_usage"],
        "host_fields": [],
        "meta": {"seed": 4},
    }
    assert json.loads(lines[2])["gpu"][0] == [60.0, None]
    assert json.loads(lines[3])["event"]["xid"] == {"gpu_index": 1, "xid": 79, "count": 1, "source": "sim"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "invalid JSON"),
        (
            '{"type": "frame", "host": "node-a", "unix_ns": 3000000000, "gpu": [[1, 2]]}',
            "has shape (1, 2), expected (2, 2)",
        ),
        ('{"type": "frame", "host": "node-b", "unix_ns": 3000000000, "gpu": []}', "no 'host' record"),
        ('{"type": "frame", "host": "node-a", "unix_ns": 10, "gpu": [[1, 2], [3, 4]]}', "time goes backwards"),
        ('{"type": "frame", "host": "node-a", "unix_ns": "soon", "gpu": [[1, 2], [3, 4]]}', "must be an integer"),
        ('{"type": "frame", "host": "node-a", "unix_ns": 3000000000, "gpu": [["a", 2], [3, 4]]}', "numbers or null"),
        (
            '{"type": "frame", "host": "node-a", "unix_ns": 3000000000, "gpu": [[1' + "0" * 400 + ", 2], [3, 4]]}",
            "too large for a float",
        ),
        ('{"type": "event", "host": "node-a", "unix_ns": 3000000000, "event": {"xid": {"bogus": 1}}}', "bad event"),
        ('{"type": "oops", "host": "node-a", "unix_ns": 3000000000}', "unknown record type"),
    ],
)
def test_bad_lines_are_refused_naming_the_line(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path / "t.jsonl")
    path.write_text(path.read_text() + line + "\n")
    _, records = read_trace(path)
    with pytest.raises(TraceError) as info:
        list(records)
    assert info.value.line == 6 and problem in info.value.problem
    assert str(info.value).startswith(f"{path}:6: ")


def test_bad_headers(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"format": "csv"}\n')
    with pytest.raises(TraceError, match="not a gpulse trace"):
        read_trace(path)
    path.write_text('{"format": "gpulse-trace", "version": 9}\n')
    with pytest.raises(TraceError, match="version 9 is not supported"):
        read_trace(path)
    path.write_text('{"format": "gpulse-trace", "version": 1, "gpu_fields": ["warp_drive"]}\n')
    with pytest.raises(TraceError, match="unknown gpu field 'warp_drive'"):
        read_trace(path)
