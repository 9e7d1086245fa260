"""Prometheus remote write 1.0 from the collector: every applied frame, at its agent timestamp.

The pure core turns decoded frames into ``prometheus.WriteRequest`` bodies (protobuf, snappy block
compression). The shell appends every applied frame to a queue on disk (remote_write_queue.py),
which the collector fsyncs before it acknowledges the agent's records, and one asyncio task reads
the queue in order, posts with the three required headers, and moves the queue's cursor only once
the receiver accepted. 5xx, 429 and connection errors are retried with capped exponential backoff
(honouring Retry-After); a batch refused with another 4xx is split in halves until only the frames
refused are left, and those are dropped and counted: resending them would be refused again.

While the receiver is unreachable, frames wait on disk within a byte budget (oldest segment
dropped first, counted and logged with the time range lost), then go out in order with their
original timestamps: a partition, or a collector killed and restarted, leaves no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import cramjam
import numpy as np
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from collector.exporters.exposition.fleet import MAX_XID
from collector.exporters.exposition.text import ObjectArray, escape
from collector.exporters.remote_write_queue import QueueConfig, QueuedFrame, RemoteWriteQueue
from collector.store import FleetStore, HostRecord
from protos import remote_write_pb2 as rw
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG, FieldCatalog
from runtime.configfile import Section

__all__ = [
    "HEADERS",
    "PendingFrame",
    "RemoteWriteConfig",
    "RemoteWriter",
    "SeriesTable",
    "decode_write_request",
    "encode_write_request",
    "parse_config",
]

log = structlog.get_logger("gpulse.collector.remote_write")

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@dataclass(frozen=True, slots=True)
class RemoteWriteConfig:
    url: str
    timeout: float = 10.0
    max_samples_per_send: int = 5000
    max_pending_samples: int = 0  # 0: the queue is bounded by queue_max_bytes alone
    queue_max_bytes: int = 1024 * 1024 * 1024  # on disk, under state_dir/remote-write; past it the oldest go
    queue_segment_bytes: int = 16 * 1024 * 1024
    flush_interval: float = 1.0
    min_backoff: float = 0.1
    max_backoff: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. X-Scope-OrgID, Authorization
    external_labels: Mapping[str, str] = field(default_factory=dict)  # e.g. cluster, collector


# -- pure core ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesTable:
    """The label sets of one stream layout, in frame value order: host fields, then GPU x field."""

    labels: tuple[tuple[tuple[str, str], ...], ...]
    # Encoded TimeSeries heads (field tag, length, labels) per series, by the sample's encoded size.
    _heads: dict[int, ObjectArray] = field(default_factory=dict, compare=False, repr=False)

    def heads(self, sample_size: int) -> ObjectArray:
        """``heads[i]`` opens series i's TimeSeries for one sample of ``sample_size`` encoded bytes."""
        cached = self._heads.get(sample_size)
        if cached is None:
            heads = []
            for label_set in self.labels:
                body = b"".join(_field(1, _label(name, value)) for name, value in label_set)
                heads.append(b"\x0a" + _varint(len(body) + sample_size) + body)
            cached = self._heads[sample_size] = np.array(heads, dtype=object)
        return cached

    @classmethod
    def for_record(
        cls, record: HostRecord, external: Mapping[str, str], catalog: FieldCatalog = CATALOG
    ) -> SeriesTable:
        extra = tuple(external.items())
        out: list[tuple[tuple[str, str], ...]] = []
        for fid in record.layout.host_field_ids:
            out.append(_sorted((("__name__", catalog[fid].metric_name), ("host", record.host_id), *extra)))
        for gpu in record.gpus[: record.layout.gpu_count]:
            base = (("host", record.host_id), ("gpu", str(gpu.index)), ("uuid", gpu.uuid), ("model", gpu.model))
            for fid in record.layout.gpu_field_ids:
                out.append(_sorted((("__name__", catalog[fid].metric_name), *base, *extra)))
        return cls(tuple(out))


def _sorted(labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    # Remote write 1.0 requires labels sorted by name within each series.
    return tuple(sorted(labels))


@dataclass(frozen=True, slots=True)
class PendingFrame:
    """One frame waiting to be sent: its series table, its values (NaN: not read) and time in ms."""

    series: SeriesTable
    values: np.ndarray
    timestamp_ms: int

    @property
    def samples(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.values)))


def encode_write_request(frames: Iterable[PendingFrame]) -> tuple[bytes, int]:
    """A snappy-compressed WriteRequest for ``frames``, in frame order; returns it and its sample count.

    Each frame's values become one-sample TimeSeries, so a series that appears in several frames
    (a backlog after an outage) appears once per frame, in timestamp order, as receivers expect.
    NaN values are left out: they mean "not read", and a NaN sample would read as a real value.

    The protobuf is written by hand from cached per-series heads and a numpy byte matrix of
    samples: the generic encoder spends microseconds per sample, this spends a fraction of one.
    """
    parts: list[bytes] = []
    count = 0
    for frame in frames:
        present = np.flatnonzero(~np.isnan(frame.values))
        n = len(present)
        if not n:
            continue
        stamp = b"\x10" + _varint(frame.timestamp_ms)  # Sample.timestamp, field 2, varint
        inner = 1 + 8 + len(stamp)  # Sample.value (field 1, fixed64) then the timestamp
        size = 2 + inner  # TimeSeries.samples: field 2 tag, one length byte, the Sample
        samples = np.empty((n, size), dtype=np.uint8)
        samples[:, 0] = 0x12
        samples[:, 1] = inner
        samples[:, 2] = 0x09
        samples[:, 3:11] = frame.values[present].astype("<f8").view(np.uint8).reshape(n, 8)
        samples[:, 11:] = np.frombuffer(stamp, dtype=np.uint8)
        raw = samples.tobytes()
        heads = frame.series.heads(size)[present].tolist()
        chunk: list[bytes] = [b""] * (2 * n)
        chunk[0::2] = heads
        chunk[1::2] = [raw[i : i + size] for i in range(0, n * size, size)]
        parts.append(b"".join(chunk))
        count += n
    return bytes(cramjam.snappy.compress_raw(b"".join(parts))), count


def _varint(value: int) -> bytes:
    value &= 0xFFFF_FFFF_FFFF_FFFF  # int64 as protobuf writes it: two's complement, ten bytes if negative
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, name.encode()) + _field(2, value.encode())


def decode_write_request(body: bytes) -> rw.WriteRequest:
    """The inverse of :func:`encode_write_request`, for receivers in tests and tools."""
    request = rw.WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return request


class SendError(Exception):
    """A send that did not land; ``retryable`` says whether the same batch may be tried again."""

    def __init__(self, message: str, *, retryable: bool, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def classify(status: int, body: str, headers: Mapping[str, str]) -> SendError | None:
    """None for 2xx; otherwise the error, retryable for 5xx and 429 only."""
    if 200 <= status < 300:
        return None
    retryable = status >= 500 or status == 429
    retry_after = _retry_after(headers.get("Retry-After", "")) if status == 429 else None
    return SendError(
        f"receiver answered {status}: {body[:200]}", retryable=retryable, status=status, retry_after=retry_after
    )


def _retry_after(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def backoff_delay(attempt: int, minimum: float, maximum: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: a random delay up to min * 2**attempt, capped."""
    return rng.uniform(minimum, min(maximum, minimum * 2.0**attempt))


# -- metrics -----------------------------------------------------------------------------------------
class RemoteWriteMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.samples_sent = Counter(
            "gpulse_remote_write_samples_sent", "Samples the remote write receiver accepted.", registry=r
        )
        self.samples_dropped = Counter(
            "gpulse_remote_write_samples_dropped",
            "Samples given up on, by reason: queue_full (oldest dropped from the disk queue) or rejected (a 4xx).",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "gpulse_remote_write_requests",
            "Remote write requests by HTTP status ('error': no answer).",
            ["status"],
            registry=r,
        )
        self.retries = Counter("gpulse_remote_write_retries", "Remote write requests sent again.", registry=r)
        self.pending = Gauge(
            "gpulse_remote_write_pending_samples", "Samples queued for remote write, not yet accepted.", registry=r
        )
        self.last_success = Gauge(
            "gpulse_remote_write_last_success_timestamp_seconds",
            "When a remote write request last succeeded.",
            registry=r,
        )
        self.frames_skipped = Counter(
            "gpulse_remote_write_frames_skipped",
            "Applied frames older than the host's newest (an earlier boot's late spool), not sent.",
            registry=r,
        )
        self.oldest_pending = Gauge(
            "gpulse_remote_write_oldest_pending_timestamp_seconds",
            "Sample time of the oldest queued frame (0 when the queue is empty): how far behind the receiver is.",
            registry=r,
        )
        self.frames_already_queued = Counter(
            "gpulse_remote_write_frames_already_queued",
            "Frames applied again after a restart (resent before their acknowledgement) and queued already.",
            registry=r,
        )
        self.corrupt_segments = Counter(
            "gpulse_remote_write_queue_corrupt_segments",
            "Damaged queue segments found at start; the rest of each was skipped.",
            registry=r,
        )
        self.queue_bytes = Gauge(
            "gpulse_remote_write_queue_bytes", "Bytes of the remote write queue on disk.", registry=r
        )


# -- shell -------------------------------------------------------------------------------------------
class RemoteWriter:
    """Queues every decoded frame on disk and ships it; ``start()`` once, ``shutdown()`` (safe twice)."""

    def __init__(
        self,
        config: RemoteWriteConfig,
        store: FleetStore,
        registry: CollectorRegistry,
        *,
        directory: Path,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        catalog: FieldCatalog = CATALOG,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = RemoteWriteMetrics(registry)
        self.clock = clock
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.catalog = catalog
        self.queue = RemoteWriteQueue(
            directory,
            QueueConfig(config.queue_max_bytes, config.queue_segment_bytes, config.max_pending_samples),
            on_drop=lambda reason, samples: self.metrics.samples_dropped.labels(reason).inc(samples),
        )
        self.metrics.corrupt_segments.inc(self.queue.stats.corrupt_segments)
        # Read at scrape time, so they are right while the sender is stuck retrying one batch.
        self.metrics.pending.set_function(lambda: self.queue.pending_samples)
        self.metrics.oldest_pending.set_function(lambda: (self.queue.oldest_pending_ms() or 0) / 1e3)
        self.metrics.queue_bytes.set_function(lambda: self.queue.total_bytes)
        self._tables: dict[tuple[object, ...], SeriesTable] = {}
        self._event_tables: dict[tuple[tuple[str, str], ...], SeriesTable] = {}
        self._read_tables: dict[int, SeriesTable] = {}  # id(labels read back) -> table with cached heads
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False

    # IngestObserver side: called on the event loop right after each apply, so it must be cheap.
    def frame_applied(self, record: HostRecord, unix_ns: int) -> None:
        """Queue the frame just applied, read back from the store's rows in the frame's own layout."""
        if record.last_frame_ns != unix_ns:
            # Older than what the store holds (an earlier boot's spool drained late): its values
            # were not written, so they cannot be read back. Counted, never sent wrong.
            self.metrics.frames_skipped.inc()
            return
        store = self.store
        values = np.concatenate(
            (store.host_values.ravel()[record.host_positions], store.gpu_values.ravel()[record.gpu_positions])
        )
        # Per boot: an earlier boot's spool drained late has older times, and was never queued.
        self._enqueue(f"{record.host_id}/{record.boot_id}", self._table(record), values, unix_ns // 1_000_000)

    def event_applied(self, record: HostRecord, event: pb.Event) -> None:
        """XIDs and lost GPUs live in events, not frames: send their series at the event's time."""
        kind = event.WhichOneof("kind")
        if kind not in ("xid", "gpu_lost"):
            return
        index = event.xid.gpu_index if kind == "xid" else event.gpu_lost.gpu_index
        if index >= len(record.gpus):
            return
        gpu = record.gpus[index]
        labels = [("host", record.host_id), ("gpu", str(gpu.index)), ("uuid", gpu.uuid), ("model", gpu.model)]
        if kind == "xid":
            code = event.xid.xid
            # The same bound as /metrics: codes past MAX_XID share one series.
            counts = self.store.xid_counts
            if 0 <= code <= MAX_XID:
                label, value = str(code), counts.get((gpu.row, code), 0)
            else:
                label = "other"
                value = sum(n for (row, c), n in counts.items() if row == gpu.row and not 0 <= c <= MAX_XID)
            labels += [("__name__", "gpulse_gpu_xid_errors_total"), ("xid", label)]
        else:
            labels.append(("__name__", "gpulse_gpu_lost"))
            value = 1
        key = _sorted((*labels, *self.config.external_labels.items()))
        table = self._event_tables.get(key)
        if table is None:
            if len(self._event_tables) > 65536:
                self._event_tables.clear()
            table = self._event_tables[key] = SeriesTable((key,))
        stamp_ms = (event.unix_ns or int(self.clock() * 1e9)) // 1_000_000
        self._enqueue(labels_text(key), table, np.array([float(value)]), stamp_ms)

    def _table(self, record: HostRecord) -> SeriesTable:
        # One table per host, boot, layout and GPU set: a GPU swapped under the same boot gets new labels.
        key = (record.host_id, record.boot_id, record.layout, tuple(g.uuid for g in record.gpus))
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) > 4 * 65536:  # bounded: forget tables of streams long gone
                self._tables.clear()
            table = self._tables[key] = SeriesTable.for_record(record, self.config.external_labels, self.catalog)
        return table

    def _enqueue(self, key: str, table: SeriesTable, values: np.ndarray, stamp_ms: int) -> None:
        samples = int(np.count_nonzero(~np.isnan(values)))
        if not self.queue.append(key, table.labels, values, stamp_ms, samples):
            self.metrics.frames_already_queued.inc()
            return
        self._wakeup.set()

    async def sync(self) -> None:
        """Make every frame queued so far durable: the ingest progress flush awaits this before acking."""
        await asyncio.to_thread(self.queue.sync)

    @property
    def pending_samples(self) -> int:
        return self.queue.pending_samples

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        self._task = asyncio.create_task(self._run(), name="remote-write")

    async def shutdown(self, grace: float = 5.0) -> None:
        """Send what is queued within ``grace`` seconds, then stop; what is left waits on disk for the next start."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        unsent = self.queue.pending_samples
        if unsent:
            log.warning("remote write stopped with samples unsent; they stay queued on disk", samples=unsent)
        await asyncio.to_thread(self.queue.close)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            frames = self.queue.read(self.config.max_samples_per_send)
            if not frames:
                if self._stopping:
                    return
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.config.flush_interval)
                continue
            if not await self._deliver(frames):
                self.queue.rewind()  # shutting down: left for the next start
                return

    def _pending(self, frames: list[QueuedFrame]) -> list[PendingFrame]:
        out = []
        for frame in frames:
            table = self._read_tables.get(id(frame.labels))
            if table is None or table.labels is not frame.labels:
                if len(self._read_tables) > 65536:
                    self._read_tables.clear()
                table = self._read_tables[id(frame.labels)] = SeriesTable(frame.labels)
            out.append(PendingFrame(table, frame.values, frame.timestamp_ms))
        return out

    async def _deliver(self, frames: list[QueuedFrame]) -> bool:
        """Send ``frames`` until accepted or refused; False only when shutdown interrupted a retry."""
        body, samples = encode_write_request(self._pending(frames))
        attempt = 0
        while True:
            try:
                await self._post(body)
            except SendError as exc:
                if not exc.retryable:
                    if len(frames) > 1:
                        # One stale or bad frame must not take the others with it: halve until found.
                        half = len(frames) // 2
                        return await self._deliver(frames[:half]) and await self._deliver(frames[half:])
                    self.metrics.samples_dropped.labels("rejected").inc(samples)
                    log.error(
                        "remote write frame refused; dropped",
                        status=exc.status,
                        error=str(exc),
                        samples=samples,
                        timestamp_ms=frames[0].timestamp_ms,
                        series=frames[0].key,
                    )
                    self.queue.commit(frames[-1].end)
                    return True
                if self._stopping:
                    return False
                delay = backoff_delay(attempt, self.config.min_backoff, self.config.max_backoff, self.rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.config.max_backoff))
                log.warning(
                    "remote write failed; retrying", error=str(exc), attempt=attempt + 1, delay_s=round(delay, 2)
                )
                self.metrics.retries.inc()
                attempt += 1
                await self.sleep(delay)
                continue
            self.metrics.samples_sent.inc(samples)
            self.metrics.last_success.set(self.clock())
            self.queue.commit(frames[-1].end)
            return True

    async def _post(self, body: bytes) -> None:
        assert self._session is not None
        headers = {**self.config.headers, **HEADERS}
        try:
            async with self._session.post(self.config.url, data=body, headers=headers) as response:
                text = await response.text(errors="replace")
                status = response.status
                response_headers = dict(response.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.metrics.requests.labels("error").inc()
            raise SendError(f"cannot reach {self.config.url}: {exc!r}", retryable=True) from None
        self.metrics.requests.labels(str(status)).inc()
        error = classify(status, text, response_headers)
        if error is not None:
            raise error


def labels_text(labels: tuple[tuple[str, str], ...]) -> str:
    """A series' labels as PromQL selector text, for logs and tests."""
    name = dict(labels).get("__name__", "")
    rest = ",".join(f'{k}="{escape(v)}"' for k, v in labels if k != "__name__")
    return f"{name}{{{rest}}}"


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_HEADERS = {h.lower() for h in HEADERS}


def parse_config(section: Section) -> RemoteWriteConfig | None:
    """The ``[remote_write]`` table; None when it is absent (remote write off)."""
    if not section.data:
        section.finish()
        return None
    url = section.require("url", str)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise section.error("url", f"must be an http:// or https:// URL, got {url!r}")
    per_send = section.get("max_samples_per_send", int, 5000)
    if per_send < 1:
        raise section.error("max_samples_per_send", f"must be at least 1, got {per_send}")
    pending = section.get("max_pending_samples", int, 0)
    if pending and pending < per_send:
        raise section.error(
            "max_pending_samples", f"must be 0 (no limit) or at least max_samples_per_send ({per_send}), got {pending}"
        )
    segment_bytes = section.get("queue_segment_bytes", int, 16 * 1024 * 1024)
    if segment_bytes < 64 * 1024:
        raise section.error("queue_segment_bytes", f"must be at least 65536, got {segment_bytes}")
    max_bytes = section.get("queue_max_bytes", int, 1024 * 1024 * 1024)
    if max_bytes < 4 * segment_bytes:
        raise section.error(
            "queue_max_bytes", f"must be at least 4 x queue_segment_bytes ({4 * segment_bytes}), got {max_bytes}"
        )
    min_backoff = section.positive("min_backoff", 0.1)
    max_backoff = section.positive("max_backoff", 30.0)
    if max_backoff < min_backoff:
        raise section.error("max_backoff", f"must be at least min_backoff ({min_backoff}), got {max_backoff}")
    headers = _string_table(section.section("headers"))
    for name in headers:
        if name.lower() in _RESERVED_HEADERS:
            raise section.error(f"headers.{name}", "is set by the remote write protocol and cannot be overridden")
    token = section.secret("bearer_token")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    labels = _string_table(section.section("external_labels"))
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise section.error(f"external_labels.{name}", "is not a valid Prometheus label name")
    config = RemoteWriteConfig(
        url=url,
        timeout=section.positive("timeout", 10.0),
        max_samples_per_send=per_send,
        max_pending_samples=pending,
        queue_max_bytes=max_bytes,
        queue_segment_bytes=segment_bytes,
        flush_interval=section.positive("flush_interval", 1.0),
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        headers=headers,
        external_labels=labels,
    )
    section.finish()
    return config


def _string_table(section: Section) -> dict[str, str]:
    return {key: section.require(key, str) for key in list(section.data)}
