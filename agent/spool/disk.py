"""A spool on local disk: append-only segments per boot, a checksum per record, bounded by a budget.

Layout under ``directory``::

    LOCK                                   one agent per spool (flock)
    <created_ns>-<boot_id>/hello.pb        the epoch's Hello, framed like any record
    <created_ns>-<boot_id>/drops.log       drop notices (tombstones) for records lost unsent
    <created_ns>-<boot_id>/<first_seq>.seg segments of records, oldest first

Every record is ``header + payload``; the header carries its own CRC and the payload's, so a torn
or damaged record is found at start, skipped, counted, and the rest is delivered.

The sampler never waits for the disk: ``append`` frames the record, indexes it and hands it to a
writer thread, which writes and fsyncs by policy. Until written, the record is served from memory,
so the shipper sees it at once. Records that had to go (budget, corruption) leave a *drop notice*:
a SpoolDropEvent whose seq is the last one of the range it covers. The collector marks the whole
range as processed, so its acknowledged watermark moves past the hole and it counts what was lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import re
import struct
import threading
import time
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from agent.spool.base import SpoolDrop
from protos import telemetry_pb2 as pb

log = structlog.get_logger("gpulse.agent.spool")

MAGIC = b"GPSR"
# magic, kind, payload length, seq, payload crc32, header crc32 (over everything before it)
HEADER = struct.Struct("<4sBIQII")
KIND_BATCH, KIND_EVENT, KIND_DROP, KIND_HELLO = 1, 2, 3, 4
MAX_RECORD_BYTES = 64 * 1024 * 1024
FSYNC_POLICIES = ("always", "interval", "never")
_EPOCH_DIR = re.compile(r"^(\d{20})-([A-Za-z0-9._-]{1,128})$")
_SEGMENT = re.compile(r"^(\d{20})\.seg$")


class SpoolLocked(OSError):
    """Another agent holds this spool directory."""


@dataclass(frozen=True, slots=True)
class DiskSpoolConfig:
    max_bytes: int = 1024 * 1024 * 1024
    max_age_seconds: float = 6 * 86400.0  # below the collector's 7-day limit on frame age
    fsync: str = "interval"
    fsync_interval_seconds: float = 1.0
    segment_bytes: int = 8 * 1024 * 1024


@dataclass
class SpoolStats:
    appended: int = 0
    dropped_records: int = 0
    dropped_bytes: int = 0
    corrupt_records: int = 0
    write_errors: int = 0
    fsyncs: int = 0


@dataclass(frozen=True, slots=True)
class RecoveredEpoch:
    """What start-up found of an earlier boot: shipped first, under its own Hello."""

    boot_id: str
    last_seq: int
    records: int
    corrupt_records: int


def frame_record(kind: int, seq: int, payload: bytes) -> bytes:
    """The on-disk form of one record: checksummed header, then the payload."""
    head = struct.pack("<4sBIQI", MAGIC, kind, len(payload), seq, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    seq: int
    kind: int
    offset: int
    length: int  # framed length, header included


@dataclass
class ScanResult:
    records: list[ScannedRecord] = field(default_factory=list)
    bad_seqs: set[int] = field(default_factory=set)  # damaged records whose header still names them
    bad_regions: int = 0  # damaged stretches whose records cannot be named
    tail_unnamed: bool = False  # the segment ends in damage that names no record


def scan(data: bytes) -> ScanResult:
    """Find the intact records in a segment's bytes; pure, so corruption handling is tested without I/O."""
    out = ScanResult()
    pos, size = 0, len(data)
    in_bad_region = False
    while pos < size:
        if size - pos < HEADER.size:
            in_bad_region = True
            break
        magic, kind, length, seq, payload_crc, header_crc = HEADER.unpack_from(data, pos)
        header_ok = magic == MAGIC and zlib.crc32(data[pos : pos + HEADER.size - 4]) == header_crc
        if not header_ok or length > MAX_RECORD_BYTES:
            if not in_bad_region:
                out.bad_regions += 1
                in_bad_region = True
            nxt = data.find(MAGIC, pos + 1)
            if nxt < 0:
                out.tail_unnamed = True
                return out
            pos = nxt
            continue
        in_bad_region = False
        end = pos + HEADER.size + length
        if end > size:
            out.bad_seqs.add(seq)  # torn: the header names the record that was being written
            return out
        if zlib.crc32(data[pos + HEADER.size : end]) != payload_crc:
            out.bad_seqs.add(seq)
        else:
            out.records.append(ScannedRecord(seq, kind, pos, end - pos))
        pos = end
    out.tail_unnamed = in_bad_region
    return out


@dataclass(eq=False)
class _Segment:
    path: Path
    first_seq: int
    newest_ns: int
    size: int = 0
    # Packed arrays: a full 1 GiB spool indexes some 350,000 records, and the agent must stay small.
    seqs: array[int] = field(default_factory=lambda: array("q"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("q"))
    kinds: bytearray = field(default_factory=bytearray)
    pending: dict[int, bytes] = field(default_factory=dict)  # seq -> framed bytes not yet written
    unwritten: list[int] = field(default_factory=list)  # seqs in write order
    sealed: bool = False
    gone: bool = False

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else self.first_seq - 1


@dataclass(eq=False)
class _Epoch:
    boot_id: str
    directory: Path
    hello: pb.Hello
    segments: list[_Segment] = field(default_factory=list)
    drops: list[pb.AgentMessage] = field(default_factory=list)  # drop notices, by seq
    last_seq: int = 0
    acked: int = 0


def _drop_notice(first: int, last: int, records: int, size: int, reason: str, now_ns: int) -> pb.AgentMessage:
    return pb.AgentMessage(
        seq=last,
        event=pb.Event(
            unix_ns=now_ns,
            spool_drop=pb.SpoolDropEvent(first_seq=first, last_seq=last, records=records, bytes=size, reason=reason),
        ),
    )


class DiskSpool:
    """The agent's durable spool; see the module docstring for the layout and guarantees."""

    def __init__(
        self,
        directory: Path,
        config: DiskSpoolConfig | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        on_written: Callable[[], None] | None = None,
        sync: Callable[[int], None] = os.fsync,
    ) -> None:
        self.directory = directory
        self.config = config or DiskSpoolConfig()
        if self.config.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, got {self.config.fsync!r}")
        # A segment never holds more than an eighth of the budget, so dropping oldest-first stays fine-grained.
        self.segment_bytes = max(4096, min(self.config.segment_bytes, self.config.max_bytes // 8))
        self.clock = clock
        self.on_written = on_written
        self.sync = sync  # the only call that waits for the device; made only by the writer thread
        self.stats = SpoolStats()
        self.recovered: list[RecoveredEpoch] = []
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._epochs: dict[str, _Epoch] = {}
        self._current: _Epoch | None = None
        self._drops: list[SpoolDrop] = []
        self._bytes = 0
        self._unlink: list[Path] = []
        self._dirty_dirs: set[Path] = set()
        self._notices: list[tuple[Path, bytes]] = []
        self._hellos: dict[Path, bytes] = {}  # Hello rewrites for the writer thread, newest per file
        self._closing = False
        self._closed = False
        self._partial = {}
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(f"spool {directory} is in use by another agent") from None
        self._recover()
        self._writer = threading.Thread(target=self._write_loop, name="spool-writer", daemon=True)
        self._writer.start()

    # -- start-up ---------------------------------------------------------------------------------

    def _recover(self) -> None:
        for path in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            match = _EPOCH_DIR.match(path.name)
            if match is None:
                log.warning("ignoring a foreign directory in the spool", path=str(path))
                continue
            self._recover_epoch(path, match.group(2))

    def _recover_epoch(self, path: Path, boot_id: str) -> None:
        hello = self._read_hello(path / "hello.pb")
        segments = sorted((int(m.group(1)), p) for p in path.iterdir() if (m := _SEGMENT.match(p.name)))
        if hello is None:
            records = sum(len(scan(p.read_bytes()).records) for _, p in segments)
            size = sum(p.stat().st_size for _, p in segments)
            self.stats.corrupt_records += records
            self._drops.append(SpoolDrop(boot_id, 0, 0, records, size, "corrupt hello"))
            log.error("spool epoch has no readable hello; its records cannot be sent", boot_id=boot_id, records=records)
            _remove_tree(path)
            return
        epoch = _Epoch(boot_id, path, hello)
        notices = self._read_notices(path / "drops.log")
        corrupt = 0
        expected: int | None = None
        for index, (first_seq, seg_path) in enumerate(segments):
            data = seg_path.read_bytes()
            result = scan(data)
            seg = _Segment(seg_path, first_seq, seg_path.stat().st_mtime_ns, size=len(data), sealed=True)
            for rec in result.records:
                seg.seqs.append(rec.seq)
                seg.offsets.append(rec.offset)
                seg.lengths.append(rec.length)
                seg.kinds.append(rec.kind)
            # Records lost in a damaged stretch are named by the gap in sequence numbers around it.
            # The first segment may start above 1: what came before was acknowledged and deleted.
            expected = first_seq if expected is None else expected
            lost: set[int] = set(result.bad_seqs)
            for seq in sorted({*seg.seqs, *result.bad_seqs}):
                lost.update(range(expected, seq))
                expected = max(expected, seq + 1)
            if index + 1 < len(segments):
                lost.update(range(expected, segments[index + 1][0]))
                expected = max(expected, segments[index + 1][0])
            elif result.tail_unnamed:
                lost.add(expected)  # the record being written when the agent stopped
                expected += 1
            if lost:
                corrupt += len(lost)
                for first, last in _runs(sorted(lost)):
                    notices.append(_drop_notice(first, last, last - first + 1, 0, "corrupt", self.clock()))
                log.warning("damaged spool records skipped", boot_id=boot_id, segment=seg_path.name, records=len(lost))
            if seg.seqs:
                epoch.segments.append(seg)
                self._bytes += seg.size
            else:
                seg_path.unlink(missing_ok=True)
        epoch.drops = _merge_notices(notices)
        epoch.last_seq = max([s.last_seq for s in epoch.segments] + [n.seq for n in epoch.drops] + [0])
        records = sum(len(s.seqs) for s in epoch.segments)
        self.stats.corrupt_records += corrupt
        if corrupt:
            self._drops.append(SpoolDrop(boot_id, 0, 0, corrupt, 0, "corrupt"))
        if records == 0 and not epoch.drops:
            _remove_tree(path)
            return
        self._epochs[boot_id] = epoch
        self.recovered.append(RecoveredEpoch(boot_id, epoch.last_seq, records, corrupt))
        # Rewrite the notices merged, so they stay few however many drops and restarts there were.
        _write_atomic(
            path / "drops.log", b"".join(frame_record(KIND_DROP, n.seq, n.SerializeToString()) for n in epoch.drops)
        )
        log.info("spool epoch recovered", boot_id=boot_id, records=records, last_seq=epoch.last_seq, corrupt=corrupt)

    def _read_hello(self, path: Path) -> pb.Hello | None:
        try:
            result = scan(path.read_bytes())
        except FileNotFoundError:
            return None
        if len(result.records) != 1 or result.records[0].kind != KIND_HELLO:
            return None
        rec = result.records[0]
        data = path.read_bytes()[rec.offset + HEADER.size : rec.offset + rec.length]
        hello = pb.Hello()
        try:
            hello.ParseFromString(data)
        except Exception:
            return None
        return hello

    def _read_notices(self, path: Path) -> list[pb.AgentMessage]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for rec in scan(data).records:
            message = pb.AgentMessage()
            with contextlib.suppress(Exception):
                message.ParseFromString(data[rec.offset + HEADER.size : rec.offset + rec.length])
                if message.event.HasField("spool_drop"):
                    out.append(message)
        return out

    # -- the Spool protocol -----------------------------------------------------------------------

    def open_epoch(self, hello: pb.Hello) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", hello.boot_id):
            raise ValueError(f"boot id {hello.boot_id!r} is not usable as a spool directory name")
        path = self.directory / f"{self.clock():020d}-{hello.boot_id}"
        path.mkdir()
        # Written once, before sampling starts: a synchronous fsync here costs the sampler nothing.
        _write_atomic(path / "hello.pb", frame_record(KIND_HELLO, 0, hello.SerializeToString()))
        kept = pb.Hello()
        kept.CopyFrom(hello)  # the spool's own: the caller may go on changing theirs
        with self._lock:
            for old in list(self._epochs.values()):
                self._discard_if_unsendable(old, hello)
            epoch = _Epoch(hello.boot_id, path, kept)
            self._epochs[hello.boot_id] = epoch
            self._current = epoch

    def _discard_if_unsendable(self, old: _Epoch, hello: pb.Hello) -> None:
        """An earlier boot no collector would accept from this agent now (host renamed, protocol
        changed) would block every later one behind it forever: drop it, counted, instead."""
        if old.hello.host_id == hello.host_id and old.hello.protocol_version == hello.protocol_version:
            return
        reason = "host id changed" if old.hello.host_id != hello.host_id else "protocol version changed"
        unacked = [s for seg in old.segments for s in seg.seqs if s > old.acked]
        size = sum(seg.size for seg in old.segments)
        for seg in list(old.segments):
            old.segments.remove(seg)
            self._forget_segment(old, seg)
        old.drops = []
        del self._epochs[old.boot_id]
        self._unlink.append(old.directory)
        self.stats.dropped_records += len(unacked)
        self.stats.dropped_bytes += size
        first, last = (unacked[0], unacked[-1]) if unacked else (0, 0)
        self._drops.append(SpoolDrop(old.boot_id, first, last, len(unacked), size, reason))
        log.error(
            "spooled boot cannot be sent any more; dropped", boot_id=old.boot_id, records=len(unacked), reason=reason
        )
        self._work.notify()

    def append(self, message: pb.AgentMessage) -> int:
        now = self.clock()
        with self._lock:
            epoch = self._current
            if epoch is None:
                raise RuntimeError("append before open_epoch")
            epoch.last_seq += 1
            message.seq = epoch.last_seq
            kind = KIND_EVENT if message.HasField("event") else KIND_BATCH
            data = frame_record(kind, message.seq, message.SerializeToString())
            seg = epoch.segments[-1] if epoch.segments else None
            if seg is None or seg.sealed or (seg.size + len(data) > self.segment_bytes and seg.seqs):
                if seg is not None:
                    seg.sealed = True
                seg = _Segment(epoch.directory / f"{message.seq:020d}.seg", message.seq, now)
                epoch.segments.append(seg)
                self._dirty_dirs.add(epoch.directory)
            seg.seqs.append(message.seq)
            seg.offsets.append(seg.size)
            seg.lengths.append(len(data))
            seg.kinds.append(kind)
            seg.pending[message.seq] = data
            seg.unwritten.append(message.seq)
            seg.size += len(data)
            seg.newest_ns = now
            self._bytes += len(data)
            self.stats.appended += 1
            self._enforce_budget(now)
            self._work.notify()
            return message.seq

    def epochs(self) -> list[str]:
        with self._lock:
            return [b for b, e in self._epochs.items() if e is self._current or e.segments or e.drops]

    def hello(self, boot_id: str) -> pb.Hello:
        with self._lock:
            return self._epochs[boot_id].hello

    def update_hello(self, hello: pb.Hello) -> None:
        kept = pb.Hello()
        kept.CopyFrom(hello)
        with self._lock:
            epoch = self._current
            if epoch is None or epoch.boot_id != hello.boot_id:
                raise ValueError(f"update_hello for boot {hello.boot_id!r}, which is not the current epoch")
            # In use at once (the next connect sends it); on disk through the writer thread, like
            # every other write, so a slow or failing disk neither stalls the sampler nor stops the
            # agent: a failed rewrite is counted and retried, and the old file stays whole meanwhile.
            epoch.hello = kept
            self._hellos[epoch.directory / "hello.pb"] = frame_record(KIND_HELLO, 0, kept.SerializeToString())
            self._work.notify()

    def last_seq(self, boot_id: str) -> int:
        with self._lock:
            return self._epochs[boot_id].last_seq

    def acked_seq(self, boot_id: str) -> int:
        with self._lock:
            return self._epochs[boot_id].acked

    def read(self, boot_id: str, after_seq: int, limit: int, *, events_only: bool = False) -> list[pb.AgentMessage]:
        with self._lock:
            epoch = self._epochs.get(boot_id)
            if epoch is None or limit <= 0:
                return []
            plan = list(self._plan(epoch, after_seq, limit, events_only))
        out: list[pb.AgentMessage] = []
        handles: dict[Path, int] = {}
        try:
            for seq, source in plan:
                if isinstance(source, pb.AgentMessage):
                    out.append(source)
                    continue
                if isinstance(source, bytes):
                    data = source
                else:
                    path, offset, length = source
                    try:
                        fd = handles.get(path)
                        if fd is None:
                            fd = handles[path] = os.open(path, os.O_RDONLY)
                        data = os.pread(fd, length, offset)
                    except FileNotFoundError:
                        break  # acknowledged or dropped meanwhile; the next read starts past it
                message = pb.AgentMessage()
                message.ParseFromString(data[HEADER.size :])
                message.seq = seq
                out.append(message)
        finally:
            for fd in handles.values():
                os.close(fd)
        return out

    def _plan(
        self, epoch: _Epoch, after_seq: int, limit: int, events_only: bool
    ) -> Iterator[tuple[int, pb.AgentMessage | bytes | tuple[Path, int, int]]]:
        def from_segments() -> Iterator[tuple[int, pb.AgentMessage | bytes | tuple[Path, int, int]]]:
            for seg in epoch.segments:
                if seg.last_seq <= after_seq:
                    continue
                for i in range(bisect_right(seg.seqs, after_seq), len(seg.seqs)):
                    if events_only and seg.kinds[i] != KIND_EVENT:
                        continue
                    seq = seg.seqs[i]
                    pending = seg.pending.get(seq)
                    yield seq, pending if pending is not None else (seg.path, seg.offsets[i], seg.lengths[i])

        notices = ((n.seq, n) for n in epoch.drops if n.seq > after_seq)
        seen: set[int] = set()
        for seq, source in heapq.merge(notices, from_segments(), key=lambda item: item[0]):
            if seq in seen:
                continue  # a drop notice takes the seq of the last record it covers
            seen.add(seq)
            yield seq, source
            if len(seen) >= limit:
                return

    def ack(self, boot_id: str, seq: int) -> None:
        with self._lock:
            epoch = self._epochs.get(boot_id)
            if epoch is None or seq <= epoch.acked:
                return
            epoch.acked = seq
            while epoch.segments and epoch.segments[0].last_seq <= seq and epoch.segments[0] is not self._active():
                self._forget_segment(epoch, epoch.segments.pop(0))
            epoch.drops = [n for n in epoch.drops if n.seq > seq]
            self._maybe_forget_epoch(epoch)
            self._work.notify()

    def take_drops(self) -> list[SpoolDrop]:
        with self._lock:
            drops, self._drops = self._drops, []
            return drops

    def counters(self) -> list[tuple[str, str, float]]:
        """The spool's own counters for the agent's /metrics: (name without _total, help, value)."""
        st = self.stats
        return [
            ("gpulse_agent_spool_appended_records", "Records appended to the spool.", st.appended),
            (
                "gpulse_agent_spool_dropped_records",
                "Records dropped unsent to stay within the spool budget (bytes or age), oldest first.",
                st.dropped_records,
            ),
            ("gpulse_agent_spool_dropped_bytes", "Bytes dropped unsent to stay within the budget.", st.dropped_bytes),
            (
                "gpulse_agent_spool_corrupt_records",
                "Damaged or torn records found at start, skipped and reported.",
                st.corrupt_records,
            ),
            ("gpulse_agent_spool_write_errors", "Spool writes that failed and were retried.", st.write_errors),
        ]

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every appended record is written (and fsynced unless the policy is never)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = (
                    any(s.unwritten for e in self._epochs.values() for s in e.segments) or self._notices or self._hellos
                )
                if not busy and not self._unlink and not self._writer_busy:
                    return True
                self._flush_requested = True
                self._work.notify()
            time.sleep(0.005)
        return False

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            self._closing = True
            self._work.notify()
        self._writer.join(30)
        self._closed = True
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    # -- budget -----------------------------------------------------------------------------------

    def _active(self) -> _Segment | None:
        if self._current is None or not self._current.segments:
            return None
        seg = self._current.segments[-1]
        return None if seg.sealed else seg

    def _enforce_budget(self, now: int) -> None:
        max_age_ns = int(self.config.max_age_seconds * 1e9)
        while True:
            oldest = self._oldest_segment()
            if oldest is None:
                return
            epoch, seg = oldest
            if self._bytes > self.config.max_bytes:
                reason = "byte budget"
            elif self.config.max_age_seconds > 0 and seg.newest_ns < now - max_age_ns:
                reason = "age budget"
            else:
                return
            epoch.segments.remove(seg)
            unacked = [s for s in seg.seqs if s > epoch.acked]
            if unacked:
                notice = _drop_notice(unacked[0], unacked[-1], len(unacked), seg.size, reason, now)
                epoch.drops = _merge_notices([*epoch.drops, notice])
                self._notices.append((epoch.directory / "drops.log", _framed_notice(notice)))
                self.stats.dropped_records += len(unacked)
                self.stats.dropped_bytes += seg.size
                self._drops.append(SpoolDrop(epoch.boot_id, unacked[0], unacked[-1], len(unacked), seg.size, reason))
                log.warning(
                    "spool over budget: oldest records dropped",
                    boot_id=epoch.boot_id,
                    first_seq=unacked[0],
                    last_seq=unacked[-1],
                    records=len(unacked),
                    reason=reason,
                )
            self._forget_segment(epoch, seg)

    def _oldest_segment(self) -> tuple[_Epoch, _Segment] | None:
        active = self._active()
        for epoch in self._epochs.values():
            for seg in epoch.segments:
                if seg is not active:
                    return epoch, seg
                if self._bytes > self.config.max_bytes:
                    seg.sealed = True  # the next append opens a new segment, this one can then go
                return None
        return None

    def _forget_segment(self, epoch: _Epoch, seg: _Segment) -> None:
        seg.gone = True
        self._bytes -= seg.size
        seg.pending.clear()
        seg.unwritten.clear()
        self._unlink.append(seg.path)

    def _maybe_forget_epoch(self, epoch: _Epoch) -> None:
        if epoch is self._current or epoch.segments or epoch.drops:
            return
        del self._epochs[epoch.boot_id]
        self._unlink.append(epoch.directory)

    # -- the writer thread ------------------------------------------------------------------------

    _writer_busy = False
    _flush_requested = False
    _partial: dict[Path, int]

    def _write_loop(self) -> None:
        fds: dict[Path, int] = {}
        dirty: set[Path] = set()
        last_sync = time.monotonic()
        interval = self.config.fsync_interval_seconds
        while True:
            with self._lock:
                while not self._closing and not self._has_work() and not (dirty and self._sync_due(last_sync)):
                    timeout = None if not dirty or self.config.fsync == "never" else interval
                    self._work.wait(timeout)
                    if dirty and self._sync_due(last_sync):
                        break
                closing = self._closing
                batches = [
                    (seg, [(s, seg.pending[s]) for s in seg.unwritten])
                    for e in self._epochs.values()
                    for seg in e.segments
                    if seg.unwritten
                ]
                sealed = [s.path for e in self._epochs.values() for s in e.segments if s.sealed and not s.unwritten]
                unlink, self._unlink = self._unlink, []
                notices, self._notices = self._notices, []
                hellos, self._hellos = self._hellos, {}
                dirs, self._dirty_dirs = self._dirty_dirs, set()
                flush_requested, self._flush_requested = self._flush_requested, False
                self._writer_busy = True
            wrote = False
            try:
                for seg, items in batches:
                    written = self._write_segment(fds, seg, items)
                    if written:
                        dirty.add(seg.path)
                        wrote = True
                        with self._lock:
                            for seq, _ in items[:written]:
                                seg.pending.pop(seq, None)
                            del seg.unwritten[:written]
                for path, data in notices:
                    self._append_file(path, data)
                    dirty.add(path)
                for path, data in list(hellos.items()):
                    if path.parent.is_dir():  # else its epoch was sent and forgotten meanwhile
                        _write_atomic(path, data)
                    del hellos[path]
                for path in unlink:
                    fd = fds.pop(path, None)
                    if fd is not None:
                        os.close(fd)
                    dirty.discard(path)
                    if path.is_dir():
                        _remove_tree(path)
                    else:
                        path.unlink(missing_ok=True)
                policy = self.config.fsync
                if policy != "never" and (
                    policy == "always" or closing or flush_requested or self._sync_due(last_sync)
                ):
                    for path in list(dirty):
                        fd = fds.get(path)
                        if fd is not None:
                            self.sync(fd)
                    for d in dirs:
                        _fsync_dir(d)
                    dirs = set()
                    dirty.clear()
                    last_sync = time.monotonic()
                    self.stats.fsyncs += 1
                if policy == "never":
                    dirty.clear()
                    dirs = set()
                with self._lock:
                    self._dirty_dirs |= dirs
                for path in sealed:
                    fd = fds.get(path)
                    if fd is not None and path not in dirty:
                        os.close(fds.pop(path))
            except OSError as exc:
                self.stats.write_errors += 1
                log.error("spool write failed; retrying", error=str(exc))
                with self._lock:
                    for path, data in hellos.items():  # not written: again, unless a newer one waits
                        self._hellos.setdefault(path, data)
                time.sleep(0.5)
            finally:
                with self._lock:
                    self._writer_busy = False
            if wrote and self.on_written is not None:
                self.on_written()
            if closing:
                with self._lock:
                    done = not self._has_work()
                if done:
                    for fd in fds.values():
                        os.close(fd)
                    return

    def _has_work(self) -> bool:
        return bool(
            self._unlink
            or self._notices
            or self._hellos
            or self._flush_requested
            or any(s.unwritten for e in self._epochs.values() for s in e.segments)
        )

    def _sync_due(self, last_sync: float) -> bool:
        return self.config.fsync != "never" and time.monotonic() - last_sync >= self.config.fsync_interval_seconds

    def _write_segment(self, fds: dict[Path, int], seg: _Segment, items: list[tuple[int, bytes]]) -> int:
        """Write ``items`` in order; returns how many were written whole."""
        if seg.gone:
            return 0
        fd = fds.get(seg.path)
        if fd is None:
            fd = fds[seg.path] = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        blob = b"".join(data for _, data in items)
        # A write that failed part-way (ENOSPC) is resumed where it stopped, so no record is written twice.
        done = self._partial.pop(seg.path, 0)
        view = memoryview(blob)[done:]
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
                done += n
        except OSError:
            self._partial[seg.path] = done
            raise
        return len(items)

    def _append_file(self, path: Path, data: bytes) -> None:
        if not path.parent.exists():
            return  # the epoch is gone: its notices went with it
        with path.open("ab") as fh:
            fh.write(data)
            fh.flush()
            # Always synced, whatever the policy: a notice must be on disk before the segment it
            # replaces is deleted, or a crash in between would turn a counted drop into a silent one.
            self.sync(fh.fileno())


def _framed_notice(notice: pb.AgentMessage) -> bytes:
    return frame_record(KIND_DROP, notice.seq, notice.SerializeToString())


def _merge_notices(notices: list[pb.AgentMessage]) -> list[pb.AgentMessage]:
    """Overlapping or adjacent drop notices become one, which takes the seq of its last record."""
    out: list[pb.AgentMessage] = []
    for notice in sorted(notices, key=lambda n: (n.event.spool_drop.first_seq, n.event.spool_drop.last_seq)):
        cur = notice.event.spool_drop
        if not out or cur.first_seq > out[-1].event.spool_drop.last_seq + 1:
            out.append(notice)
            continue
        prev = out[-1].event.spool_drop
        extra = cur.records if cur.first_seq > prev.last_seq else max(0, cur.last_seq - prev.last_seq)
        reason = prev.reason if cur.reason in prev.reason.split(", ") else f"{prev.reason}, {cur.reason}"
        out[-1] = _drop_notice(
            prev.first_seq,
            max(prev.last_seq, cur.last_seq),
            prev.records + extra,
            prev.bytes + cur.bytes,
            reason,
            max(out[-1].event.unix_ns, notice.event.unix_ns),
        )
    return out


def _runs(seqs: list[int]) -> Iterator[tuple[int, int]]:
    start = prev = seqs[0]
    for seq in seqs[1:]:
        if seq != prev + 1:
            yield start, prev
            start = seq
        prev = seq
    yield start, prev


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_tree(path: Path) -> None:
    for child in path.iterdir() if path.exists() else ():
        child.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError, OSError):
        path.rmdir()
