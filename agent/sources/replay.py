"""The replay GPU backend: plays one host of a recorded trace as if its GPUs were live.

The trace's first frame is played at the first sample; after that, trace time advances with the
clock (times ``speed``). Each sample returns the newest trace frame not later than that point, and
the trace's events come out of ``drain_events`` as their time is reached, stamped with live time.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.hello import gpu_info
from agent.records import GpuInfo, GpuProcessInfo, MigInstance, Rows
from agent.sources.gpu import BackendUnavailable
from protos import telemetry_pb2 as pb
from runtime.configfile import Section

if TYPE_CHECKING:
    from runtime.trace import TraceEvent, TraceFrame, TraceHost

log = structlog.get_logger("gpulse.agent.replay")


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    path: Path | None = None
    host: str = ""  # which host of the trace to play; "" for the first one
    speed: float = 1.0
    loop: bool = False  # start over at the end; otherwise GPUs read as not available after it


def parse_replay(section: Section, *, required: bool) -> ReplayConfig:
    """Read ``[replay]``; ``path`` is required when the GPU source is replay."""
    path = section.require("path", Path) if required else section.get("path", Path, None)
    speed = section.positive("speed", 1.0)
    config = ReplayConfig(path, section.get("host", str, ""), speed, section.get("loop", bool, False))
    section.finish()
    return config


class ReplayBackend:
    name = "replay"

    def __init__(self, path: Path, *, host: str = "", speed: float = 1.0, loop: bool = False) -> None:
        self.path = path
        self.host = host
        self.speed = speed
        self.loop = loop
        self._inventory: list[GpuInfo] = []
        self._field_ids: tuple[int, ...] = ()
        self._times: list[int] = []
        self._frames: list[Rows] = []
        self._events: list[TraceEvent] = []
        self._event_times: list[int] = []
        self._start_live: int | None = None
        self._played_to: int | None = None  # trace time reached by the previous sample
        self._pending: list[pb.Event] = []
        self._ended = False

    @property
    def field_ids(self) -> tuple[int, ...]:
        return self._field_ids

    def open(self) -> list[GpuInfo]:
        # Imported here: every agent imports this module for its [replay] config, and only one that
        # replays needs the trace reader (and protobuf's JSON mapping, which it loads).
        from runtime.trace import TraceError, TraceFrame, TraceHost, read_trace

        try:
            header, records = read_trace(self.path)
            chosen: TraceHost | None = None
            frames: list[TraceFrame] = []
            for record in records:
                if isinstance(record, TraceHost):
                    if chosen is None and (not self.host or record.host_id == self.host):
                        chosen = record
                elif chosen is not None and record.host_id == chosen.host_id:
                    if isinstance(record, TraceFrame):
                        frames.append(record)
                    else:
                        self._events.append(record)
        except FileNotFoundError:
            raise BackendUnavailable(f"replay trace {self.path} not found") from None
        except TraceError as exc:
            raise BackendUnavailable(f"replay trace unusable: {exc}") from None
        if chosen is None:
            raise BackendUnavailable(
                f"replay trace {self.path} has no host {self.host!r}"
                if self.host
                else f"replay trace {self.path} has no hosts"
            )
        if not frames:
            raise BackendUnavailable(f"replay trace {self.path} has no frames for host {chosen.host_id!r}")
        if any(len(f.gpu) != len(chosen.gpus) for f in frames):
            # A later host record changed the GPU count: frames the Hello's layout cannot describe.
            raise BackendUnavailable(
                f"replay trace {self.path}: host {chosen.host_id!r} changes its number of GPUs mid-trace"
            )
        self._field_ids = header.gpu_field_ids
        self._inventory = [gpu_info(g) for g in chosen.gpus]
        self._times = [f.unix_ns for f in frames]
        self._frames = [f.gpu for f in frames]
        self._event_times = [e.unix_ns for e in self._events]
        log.info(
            "replaying trace", path=str(self.path), host=chosen.host_id, frames=len(frames), events=len(self._events)
        )
        return list(self._inventory)

    def _trace_time(self, unix_ns: int) -> int:
        if self._start_live is None:
            self._start_live = unix_ns
        return self._times[0] + int((unix_ns - self._start_live) * self.speed)

    def sample(self, unix_ns: int) -> Rows:
        position = self._trace_time(unix_ns)
        first, last = self._times[0], self._times[-1]
        span = last - first
        if position > last and self.loop and span > 0:
            position = first + (position - first) % (span + 1)
            if self._played_to is not None and self._played_to > position:
                self._played_to = first - 1  # a new lap: its events play again
        self._queue_events(position, unix_ns)
        if position > last and not self.loop:
            if not self._ended:
                self._ended = True
                log.warning("replay trace ended; GPUs now read as not available", path=str(self.path))
            return [[math.nan] * len(self._field_ids) for _ in self._inventory]
        index = max(0, bisect_right(self._times, position) - 1)
        return [list(row) for row in self._frames[index]]

    def _queue_events(self, position: int, live_ns: int) -> None:
        previous = self._played_to if self._played_to is not None else self._times[0] - 1
        lo = bisect_right(self._event_times, previous)
        hi = bisect_right(self._event_times, position)
        for record in self._events[lo:hi]:
            event = pb.Event()
            event.CopyFrom(record.event)
            event.unix_ns = live_ns
            self._pending.append(event)
        self._played_to = position

    def mig_instances(self) -> dict[int, list[MigInstance]]:
        return {}  # no MIG here

    def processes(self) -> dict[int, list[GpuProcessInfo]]:
        return {}

    def drain_events(self) -> list[pb.Event]:
        events, self._pending = self._pending, []
        return events

    def close(self) -> None:
        return None
