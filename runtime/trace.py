"""The gpulse trace format: a fleet's telemetry as JSON Lines, for replay, backtests and bug reports.

See docs/trace-format.md. One JSON object per line, in time order:

- line 1, the header: ``{"format": "gpulse-trace", "version": 1, "gpu_fields": [...], "host_fields": [...]}``
- ``{"type": "host", "host": ID, "interval_seconds": S, "gpus": [inventory...]}`` before a host's first frame
- ``{"type": "frame", "host": ID, "unix_ns": T, "gpu": [[...] per GPU], "host_values": [...]}``; null: not read
- ``{"type": "event", "host": ID, "unix_ns": T, "event": {...}}``; the event in protobuf's JSON mapping

Plain lists of floats (NaN: not read), no numpy: the agent's replay source reads traces, and the
agent runs without numpy. Tools that want arrays convert what they read. GPU inventory is the wire
contract's ``GpuInventory``, so the agent (replay, record) and the collector (backtest) share the
format without either importing the other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from google.protobuf import json_format

from protos import telemetry_pb2 as pb
from protos.fields import CATALOG, Scope

FORMAT = "gpulse-trace"
VERSION = 1
Values = list[float]


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file, the line and the problem."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclass(frozen=True, slots=True)
class TraceHeader:
    gpu_field_ids: tuple[int, ...]
    host_field_ids: tuple[int, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TraceHost:
    host_id: str
    interval_seconds: float
    gpus: tuple[pb.GpuInventory, ...]


@dataclass(frozen=True, slots=True)
class TraceFrame:
    host_id: str
    unix_ns: int
    gpu: list[Values]  # one row of gpu fields per GPU
    host: Values  # host fields


@dataclass(frozen=True, slots=True)
class TraceEvent:
    host_id: str
    unix_ns: int
    event: pb.Event


TraceRecord = TraceHost | TraceFrame | TraceEvent


def _numbers(values: Iterable[float]) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values]


def _gpu_json(info: pb.GpuInventory) -> dict[str, Any]:
    """Every inventory field, defaults included, with unsupported fields by catalog name."""
    data: dict[str, Any] = {f.name: getattr(info, f.name) for f in pb.GpuInventory.DESCRIPTOR.fields}
    del data["unsupported_field_ids"]
    data["unsupported_fields"] = sorted(CATALOG[f].name for f in info.unsupported_field_ids if f in CATALOG)
    return data


class TraceWriter:
    """Writes a trace line by line; the caller gives records in time order."""

    def __init__(
        self, out: IO[str], *, gpu_field_ids: tuple[int, ...], host_field_ids: tuple[int, ...] = (), **meta: Any
    ) -> None:
        self.out = out
        self.gpu_field_ids = gpu_field_ids
        self.host_field_ids = host_field_ids
        header = {
            "format": FORMAT,
            "version": VERSION,
            "gpu_fields": [CATALOG[f].name for f in gpu_field_ids],
            "host_fields": [CATALOG[f].name for f in host_field_ids],
            **({"meta": meta} if meta else {}),
        }
        self._line(header)

    def _line(self, data: dict[str, Any]) -> None:
        self.out.write(json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n")

    def host(self, host_id: str, interval_seconds: float, gpus: Iterable[pb.GpuInventory]) -> None:
        self._line(
            {
                "type": "host",
                "host": host_id,
                "interval_seconds": interval_seconds,
                "gpus": [_gpu_json(g) for g in gpus],
            }
        )

    def frame(
        self, host_id: str, unix_ns: int, gpu: Iterable[Iterable[float]], host: Iterable[float] | None = None
    ) -> None:
        host_values = _numbers(host) if host is not None else []
        self._line(
            {
                "type": "frame",
                "host": host_id,
                "unix_ns": int(unix_ns),
                "gpu": [_numbers(row) for row in gpu],
                **({"host_values": host_values} if host_values else {}),
            }
        )

    def event(self, host_id: str, event: pb.Event) -> None:
        self._line(
            {
                "type": "event",
                "host": host_id,
                "unix_ns": int(event.unix_ns),
                "event": json_format.MessageToDict(event, preserving_proto_field_name=True),
            }
        )


def read_trace(path: Path) -> tuple[TraceHeader, Iterator[TraceRecord]]:
    """The header, and the records in file order; raises TraceError naming the line at fault."""
    handle = path.open()
    try:
        first = handle.readline()
        header = _header(str(path), first)
    except Exception:
        handle.close()
        raise
    return header, _records(str(path), handle, header)


def _header(path: str, line: str) -> TraceHeader:
    data = _json(path, 1, line)
    if data.get("format") != FORMAT:
        raise TraceError(path, 1, f'not a gpulse trace: the first line must have "format": "{FORMAT}"')
    if data.get("version") != VERSION:
        raise TraceError(
            path, 1, f"trace version {data.get('version')!r} is not supported; this gpulse reads {VERSION}"
        )
    gpu_ids = tuple(_field_id(path, 1, name, Scope.GPU) for name in data.get("gpu_fields", []))
    host_ids = tuple(_field_id(path, 1, name, Scope.HOST) for name in data.get("host_fields", []))
    return TraceHeader(gpu_ids, host_ids, dict(data.get("meta", {})))


def _field_id(path: str, line: int, name: Any, scope: Scope) -> int:
    try:
        return CATALOG.by_name(scope, str(name)).id
    except KeyError:
        raise TraceError(path, line, f"unknown {scope.value} field {name!r}") from None


def _json(path: str, number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(path, number, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise TraceError(path, number, "each line must be a JSON object")
    return data


def _row(path: str, number: int, values: Any, width: int, what: str) -> Values:
    """One row of numbers, null as NaN; refused, naming what, unless it holds ``width`` of them."""
    if not isinstance(values, list) or any(isinstance(v, list) for v in values):
        raise TraceError(path, number, f"{what} must be a list of numbers or null")
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in values):
        raise TraceError(path, number, f"{what} must hold numbers or null")
    if len(values) != width:
        raise TraceError(path, number, f"{what} has shape ({len(values)},), expected ({width},)")
    try:
        return [math.nan if v is None else float(v) for v in values]
    except OverflowError:  # an integer beyond any float: JSON allows it, a reading cannot be it
        raise TraceError(path, number, f"{what} holds a number too large for a float") from None


def _rows(path: str, number: int, rows: Any, count: int, width: int, what: str) -> list[Values]:
    """``count`` rows of ``width`` numbers each (one per GPU), null as NaN."""
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise TraceError(path, number, f"{what} must be a list of rows (one per GPU) of numbers or null")
    if len(rows) != count or any(len(r) != width for r in rows):
        got = (len(rows), len(rows[0])) if rows and all(len(r) == len(rows[0]) for r in rows) else (len(rows), "?")
        raise TraceError(path, number, f"{what} has shape ({got[0]}, {got[1]}), expected ({count}, {width})")
    return [_row(path, number, r, width, what) for r in rows]


def _records(path: str, handle: IO[str], header: TraceHeader) -> Iterator[TraceRecord]:
    gpus: dict[str, int] = {}
    last_ns: dict[str, int] = {}
    with handle:
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            data = _json(path, number, line)
            kind = data.get("type")
            host = data.get("host")
            if not isinstance(host, str) or not host:
                raise TraceError(path, number, "'host' must be a non-empty string")
            if kind == "host":
                infos = tuple(_gpu_info(path, number, g, i) for i, g in enumerate(data.get("gpus", [])))
                gpus[host] = len(infos)
                yield TraceHost(host, float(data.get("interval_seconds", 1.0)), infos)
                continue
            if host not in gpus:
                raise TraceError(path, number, f"host {host!r} has no 'host' record before its data")
            unix_ns = data.get("unix_ns")
            if not isinstance(unix_ns, int) or isinstance(unix_ns, bool):
                raise TraceError(path, number, "'unix_ns' must be an integer (Unix time in nanoseconds)")
            if unix_ns < last_ns.get(host, 0):
                raise TraceError(path, number, f"time goes backwards for host {host!r}")
            last_ns[host] = unix_ns
            if kind == "frame":
                gpu = _rows(path, number, data.get("gpu", []), gpus[host], len(header.gpu_field_ids), "'gpu'")
                host_values = _row(
                    path,
                    number,
                    data.get("host_values", [None] * len(header.host_field_ids)),
                    len(header.host_field_ids),
                    "'host_values'",
                )
                yield TraceFrame(host, unix_ns, gpu, host_values)
            elif kind == "event":
                try:
                    event = json_format.ParseDict(data.get("event", {}), pb.Event())
                except json_format.ParseError as exc:
                    raise TraceError(path, number, f"bad event: {exc}") from None
                yield TraceEvent(host, unix_ns, event)
            else:
                raise TraceError(path, number, f"unknown record type {kind!r}; expected host, frame or event")


def _gpu_info(path: str, number: int, data: Any, index: int) -> pb.GpuInventory:
    if not isinstance(data, dict):
        raise TraceError(path, number, f"gpus[{index}] must be an object")
    data = dict(data)
    names = data.pop("unsupported_fields", [])
    data["unsupported_field_ids"] = sorted({_field_id(path, number, n, Scope.GPU) for n in names})
    data.setdefault("index", index)
    try:
        return pb.GpuInventory(**data)
    except (TypeError, ValueError) as exc:  # an unknown key, or a value of the wrong type
        raise TraceError(path, number, f"gpus[{index}]: {exc}") from None
