"""The remote-write queue on disk: what the collector has applied but the receiver does not hold yet.

Layout under ``directory``::

    <index>.seg     append-only segments, oldest first; a new one at every start and past segment_bytes
    cursor.json     how far the receiver has accepted: {"segment": index, "offset": bytes}

Every record is ``header + payload`` with the payload's CRC32. A frame record names a series table
written earlier in the same segment, so each segment reads on its own. ``sync()`` makes everything
appended so far durable; the collector calls it before it records (and acknowledges) progress, so
an acknowledged record is on disk here even if the process dies at once.

Hand-written rather than a library: the queues on PyPI (persist-queue, diskcache) store one pickled
object per row in SQLite, a transaction per put; here a frame is one ``write`` of packed doubles,
the fsync is batched with the progress flush, and the budget drops whole segments with the exact
sample count and time range lost. The agent's spool (agent/spool/disk.py) has the same shape.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

log = structlog.get_logger("gpulse.collector.remote_write_queue")

__all__ = ["Position", "QueueConfig", "QueueStats", "QueuedFrame", "RemoteWriteQueue"]

MAGIC = b"GPRW"
HEADER = struct.Struct("<4sBII")  # magic, kind, payload length, payload crc32
KIND_TABLE, KIND_FRAME = 1, 2
FRAME_HEAD = struct.Struct("<IqI")  # table id, timestamp ms, samples (non-NaN values)
MAX_RECORD_BYTES = 64 * 1024 * 1024
_SEGMENT = re.compile(r"^(\d{12})\.seg$")

Position = tuple[int, int]  # (segment index, byte offset): everything before it is accepted
Labels = tuple[tuple[tuple[str, str], ...], ...]


@dataclass(frozen=True, slots=True)
class QueueConfig:
    max_bytes: int = 1024 * 1024 * 1024
    segment_bytes: int = 16 * 1024 * 1024
    max_pending_samples: int = 0  # 0: bounded by bytes only


@dataclass(frozen=True, slots=True)
class QueuedFrame:
    """One frame read back: its table's labels (and dedup key), values, time, and where it ends."""

    key: str
    labels: Labels
    values: np.ndarray
    timestamp_ms: int
    samples: int
    end: Position


@dataclass
class QueueStats:
    dropped_samples: int = 0
    corrupt_segments: int = 0
    duplicate_frames: int = 0


@dataclass
class _Segment:
    index: int
    path: Path
    size: int = 0  # bytes of valid records
    # Per frame, in order: where it ends, its time and its sample count (for drops and the gauge).
    ends: array[int] = field(default_factory=lambda: array("q"))
    stamps: array[int] = field(default_factory=lambda: array("q"))
    samples: array[int] = field(default_factory=lambda: array("q"))


class RemoteWriteQueue:
    """Append on the event loop; ``sync`` from any thread; one reader reads, sends, then ``commit``s."""

    def __init__(
        self,
        directory: Path,
        config: QueueConfig | None = None,
        *,
        on_drop: Callable[[str, int], None] = lambda reason, samples: None,
    ) -> None:
        self.directory = directory
        self.config = config or QueueConfig()
        self.on_drop = on_drop
        self.stats = QueueStats()
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # between appends/rotation and a sync in another thread
        self._segments: list[_Segment] = []
        self._newest: dict[str, int] = {}  # per dedup key: the newest timestamp ever queued
        self._cursor: Position = self._load_cursor()
        for path in sorted(directory.glob("*.seg")):
            match = _SEGMENT.match(path.name)
            if match:
                self._segments.append(self._scan(int(match.group(1)), path))
        # Segments wholly behind the cursor are gone already, or go now.
        while self._segments and self._segments[0].index < self._cursor[0]:
            self._unlink(self._segments.pop(0))
        if self._segments and self._cursor[0] != self._segments[0].index:
            self._cursor = (self._segments[0].index, 0)
        self._read: Position = self._cursor  # the reader's position: ahead of the cursor by one batch
        next_index = self._segments[-1].index + 1 if self._segments else max(1, self._cursor[0])
        self._fd = -1
        self._tables: dict[int, tuple[int, object]] = {}  # id(labels) -> (table id, labels kept alive)
        self._unsynced: list[int] = []
        self._open_segment(next_index)
        self._reader_tables: dict[int, dict[int, tuple[str, Labels]]] = {}
        self._interned: dict[Labels, Labels] = {}

    # -- writing -------------------------------------------------------------------------------------
    def append(self, key: str, labels: Labels, values: np.ndarray, timestamp_ms: int, samples: int) -> bool:
        """Queue one frame; False (and counted) when ``key`` already has one at or after this time."""
        if timestamp_ms <= self._newest.get(key, -(2**63)):
            # Applied again after a restart (the agent resent what was not yet acknowledged): it is
            # queued already, and a second copy would reach the receiver out of order.
            self.stats.duplicate_frames += 1
            return False
        self._newest[key] = timestamp_ms
        payload = np.ascontiguousarray(values, dtype="<f8").tobytes()
        with self._lock:
            segment = self._segments[-1]
            if segment.size >= self.config.segment_bytes:
                self._open_segment(segment.index + 1)
                segment = self._segments[-1]
            entry = self._tables.get(id(labels))
            chunks = []
            if entry is None:
                table_id = len(self._tables) + 1
                self._tables[id(labels)] = (table_id, labels)
                chunks.append(_record(KIND_TABLE, struct.pack("<I", table_id) + _table_json(key, labels)))
            else:
                table_id = entry[0]
            chunks.append(_record(KIND_FRAME, FRAME_HEAD.pack(table_id, timestamp_ms, samples) + payload))
            data = b"".join(chunks)
            os.write(self._fd, data)
            segment.size += len(data)
            segment.ends.append(segment.size)
            segment.stamps.append(timestamp_ms)
            segment.samples.append(samples)
        self._enforce_budget()
        return True

    def sync(self) -> None:
        """Everything appended so far is on disk when this returns (fsync)."""
        # The lock only picks the files: the fsyncs run outside it, so appends on the event loop
        # never wait for the disk. Files rotated out meanwhile are left for the next sync.
        with self._lock:
            current, rotated, self._unsynced = self._fd, self._unsynced, []
        for fd in rotated:
            os.fsync(fd)
            os.close(fd)
        if current >= 0:
            os.fsync(current)

    def _open_segment(self, index: int) -> None:
        path = self.directory / f"{index:012d}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        if self._fd >= 0:
            self._unsynced.append(self._fd)  # fsynced and closed by the next sync
        self._fd = fd
        self._tables = {}
        self._segments.append(_Segment(index, path))
        _fsync_dir(self.directory)

    def _enforce_budget(self) -> None:
        limit = self.config.max_pending_samples
        while len(self._segments) > 1 and (
            self.total_bytes > self.config.max_bytes or (limit and self.pending_samples > limit)
        ):
            oldest = self._segments.pop(0)
            first = self._unread_index(oldest)
            lost = int(sum(oldest.samples[first:]))
            if lost:
                stamps = oldest.stamps[first:]
                log.error(
                    "remote write queue over budget; oldest samples dropped",
                    samples=lost,
                    first_timestamp_ms=min(stamps),
                    last_timestamp_ms=max(stamps),
                    segment=oldest.path.name,
                    max_bytes=self.config.max_bytes,
                )
                self.stats.dropped_samples += lost
                self.on_drop("queue_full", lost)
            nxt = (self._segments[0].index, 0)
            self._read = max(self._read, nxt)
            self._cursor = max(self._cursor, nxt)
            self._unlink(oldest)

    # -- reading -------------------------------------------------------------------------------------
    def read(self, max_samples: int) -> list[QueuedFrame]:
        """The next frames after the reader's position, up to ``max_samples`` (at least one frame)."""
        out: list[QueuedFrame] = []
        total = 0
        for segment in list(self._segments):
            if segment.index < self._read[0]:
                continue
            offset = self._read[1] if segment.index == self._read[0] else 0
            first = _first_after(segment.ends, offset)
            last = first
            while last < len(segment.ends) and (
                (last == first and not out) or total + segment.samples[last] <= max_samples
            ):
                total += segment.samples[last]
                last += 1
            if last > first:
                out.extend(self._frames(segment, offset, segment.ends[last - 1]))
                self._read = out[-1].end
            if last < len(segment.ends) or total >= max_samples:
                return out
        return out

    def rewind(self) -> None:
        """Read again from the cursor (a batch that is to be sent again)."""
        self._read = self._cursor

    def commit(self, position: Position) -> None:
        """The receiver holds everything before ``position``: persist that, and delete spent segments."""
        if position <= self._cursor:
            return
        self._cursor = position
        tmp = self.directory / "cursor.json.tmp"
        tmp.write_text(json.dumps({"segment": position[0], "offset": position[1]}))
        tmp.replace(self.directory / "cursor.json")
        while len(self._segments) > 1 and self._segments[0].index < position[0]:
            self._unlink(self._segments.pop(0))

    def _frames(self, segment: _Segment, offset: int, stop: int) -> Iterator[QueuedFrame]:
        tables = self._reader_tables.setdefault(segment.index, {})
        if offset == 0:
            tables.clear()
        elif not tables:
            # Resuming mid-segment after a restart: learn the tables defined before the cursor.
            for kind, body, _ in _records(segment.path, offset):
                if kind == KIND_TABLE:
                    self._add_table(tables, body)
        with segment.path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(stop - offset)
        view = memoryview(data)
        pos = 0
        while pos + HEADER.size <= len(view):
            _, kind, length, _ = HEADER.unpack_from(view, pos)
            chunk = view[pos + HEADER.size : pos + HEADER.size + length]
            pos += HEADER.size + length
            if kind == KIND_TABLE:
                self._add_table(tables, bytes(chunk))
                continue
            table_id, stamp, samples = FRAME_HEAD.unpack_from(chunk)
            key, labels = tables[table_id]
            values = np.frombuffer(chunk[FRAME_HEAD.size :], dtype="<f8")
            yield QueuedFrame(key, labels, values, stamp, samples, (segment.index, offset + pos))

    def _add_table(self, tables: dict[int, tuple[str, Labels]], body: bytes) -> None:
        (table_id,) = struct.unpack_from("<I", body)
        doc = json.loads(body[4:])
        labels: Labels = tuple(tuple((str(k), str(v)) for k, v in series) for series in doc["labels"])
        if len(self._interned) > 65536:
            self._interned.clear()
        labels = self._interned.setdefault(labels, labels)
        tables[table_id] = (str(doc["key"]), labels)

    # -- start-up ------------------------------------------------------------------------------------
    def _load_cursor(self) -> Position:
        path = self.directory / "cursor.json"
        try:
            doc = json.loads(path.read_text())
            return (int(doc["segment"]), int(doc["offset"]))
        except FileNotFoundError:
            return (0, 0)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("remote write cursor unreadable; sending the whole queue again", path=str(path), error=str(exc))
            return (0, 0)

    def _scan(self, index: int, path: Path) -> _Segment:
        """Index a segment left by an earlier run; a damaged record ends it, counted and logged."""
        segment = _Segment(index, path)
        tables: dict[int, str] = {}
        file_size = path.stat().st_size
        for kind, body, end in _records(path, 0):
            if kind == KIND_TABLE:
                tables[struct.unpack_from("<I", body)[0]] = str(json.loads(body[4:])["key"])
            elif kind == KIND_FRAME:
                table_id, stamp, samples = FRAME_HEAD.unpack_from(body)
                key = tables.get(table_id)
                if key is not None:
                    self._newest[key] = max(stamp, self._newest.get(key, -(2**63)))
                segment.ends.append(end)
                segment.stamps.append(stamp)
                segment.samples.append(samples)
            segment.size = end
        if segment.size < file_size:
            self.stats.corrupt_segments += 1
            log.error(
                "remote write queue segment damaged; the rest of it is skipped",
                segment=path.name,
                valid_bytes=segment.size,
                skipped_bytes=file_size - segment.size,
                frames_kept=len(segment.ends),
                last_good_timestamp_ms=segment.stamps[-1] if segment.stamps else None,
            )
        return segment

    def _unlink(self, segment: _Segment) -> None:
        self._reader_tables.pop(segment.index, None)
        segment.path.unlink(missing_ok=True)

    # -- accounting ----------------------------------------------------------------------------------
    def _unread_index(self, segment: _Segment) -> int:
        """Index of the first frame of ``segment`` the reader has not taken yet."""
        if segment.index < self._read[0]:
            return len(segment.ends)
        if segment.index > self._read[0]:
            return 0
        return _first_after(segment.ends, self._read[1])

    def _uncommitted_index(self, segment: _Segment) -> int:
        if segment.index < self._cursor[0]:
            return len(segment.ends)
        if segment.index > self._cursor[0]:
            return 0
        return _first_after(segment.ends, self._cursor[1])

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def pending_samples(self) -> int:
        """Samples not yet accepted by the receiver (the batch in flight included)."""
        return sum(
            int(np.frombuffer(s.samples, dtype=np.int64)[self._uncommitted_index(s) :].sum()) for s in self._segments
        )

    def oldest_pending_ms(self) -> int | None:
        """Sample time of the oldest frame the receiver does not hold yet; None when it holds all."""
        oldest: int | None = None
        for segment in self._segments:
            first = self._uncommitted_index(segment)
            if first < len(segment.stamps):
                low = int(np.frombuffer(segment.stamps, dtype=np.int64)[first:].min())
                oldest = low if oldest is None else min(oldest, low)
        return oldest

    @property
    def cursor(self) -> Position:
        return self._cursor

    def close(self) -> None:
        self.sync()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _first_after(ends: array[int], offset: int) -> int:
    return bisect_right(ends, offset)


def _record(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, len(payload), zlib.crc32(payload)) + payload


def _table_json(key: str, labels: Labels) -> bytes:
    return json.dumps({"key": key, "labels": labels}, separators=(",", ":")).encode()


def _records(path: Path, start: int) -> Iterator[tuple[int, bytes, int]]:
    """(kind, payload, end offset) of each valid record from the file's start, stopping at the first
    damaged one; records before ``start`` only (when ``start`` > 0)."""
    with path.open("rb") as fh:
        data = fh.read() if not start else fh.read(start)
    pos = 0
    while pos + HEADER.size <= len(data):
        magic, kind, length, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if magic != MAGIC or kind not in (KIND_TABLE, KIND_FRAME) or length > MAX_RECORD_BYTES or end > len(data):
            return
        body = data[pos + HEADER.size : end]
        if zlib.crc32(body) != crc or (kind == KIND_FRAME and len(body) < FRAME_HEAD.size):
            return
        yield kind, body, end
        pos = end


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
