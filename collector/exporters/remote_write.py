"""Prometheus remote write 1.0 from the collector: every applied frame, at its agent timestamp.

The pure core turns decoded frames into ``prometheus.WriteRequest`` bodies (protobuf, snappy block
compression). The shell is one asyncio task that batches, posts with the three required headers,
retries 5xx, 429 and connection errors with capped exponential backoff (honouring Retry-After),
and drops a batch the receiver refuses with any other 4xx: resending it would be refused again.

While the receiver is unreachable, frames wait in a bounded queue (oldest dropped first, and
counted), then go out in order with their original timestamps: a partition leaves no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import aiohttp
import cramjam
import numpy as np
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from collector.exporters.exposition.fleet import MAX_XID
from collector.exporters.exposition.text import ObjectArray, escape
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
    max_pending_samples: int = 2_000_000  # about 100 MB of queued frames; past it the oldest go
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
            "Samples given up on, by reason: queue_full (oldest dropped) or rejected (a 4xx).",
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
        self.pending = Gauge("gpulse_remote_write_pending_samples", "Samples queued for remote write.", registry=r)
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


# -- shell -------------------------------------------------------------------------------------------
class RemoteWriter:
    """Queues every decoded frame and ships it; ``start()`` once, ``shutdown()`` flushes (safe twice)."""

    def __init__(
        self,
        config: RemoteWriteConfig,
        store: FleetStore,
        registry: CollectorRegistry,
        *,
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
        self._queue: deque[PendingFrame] = deque()
        self._pending = 0
        self._inflight = 0
        self._tables: dict[tuple[object, ...], SeriesTable] = {}
        self._event_tables: dict[tuple[tuple[str, str], ...], SeriesTable] = {}
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
        self._enqueue(PendingFrame(self._table(record), values, unix_ns // 1_000_000))

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
        self._enqueue(PendingFrame(table, np.array([float(value)]), stamp_ms))

    def _table(self, record: HostRecord) -> SeriesTable:
        # One table per host, boot, layout and GPU set: a GPU swapped under the same boot gets new labels.
        key = (record.host_id, record.boot_id, record.layout, tuple(g.uuid for g in record.gpus))
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) > 4 * 65536:  # bounded: forget tables of streams long gone
                self._tables.clear()
            table = self._tables[key] = SeriesTable.for_record(record, self.config.external_labels, self.catalog)
        return table

    def _enqueue(self, frame: PendingFrame) -> None:
        samples = frame.samples
        self._queue.append(frame)
        self._pending += samples
        while self._pending > self.config.max_pending_samples and len(self._queue) > 1:
            dropped = self._queue.popleft()
            self._pending -= dropped.samples
            self.metrics.samples_dropped.labels("queue_full").inc(dropped.samples)
        self.metrics.pending.set(self._pending)
        if self._pending >= self.config.max_samples_per_send:
            self._wakeup.set()

    @property
    def pending_samples(self) -> int:
        return self._pending

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        self._task = asyncio.create_task(self._run(), name="remote-write")

    async def shutdown(self, grace: float = 5.0) -> None:
        """Send what is queued within ``grace`` seconds, then stop; what is left is counted as dropped."""
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
        unsent = self._pending + self._inflight
        if unsent:
            self.metrics.samples_dropped.labels("shutdown").inc(unsent)
            log.warning("remote write stopped with samples unsent", samples=unsent)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.config.flush_interval)
                self._wakeup.clear()
                continue
            batch = self._take_batch()
            await self._send_with_retry(batch)

    def _take_batch(self) -> list[PendingFrame]:
        batch: list[PendingFrame] = []
        samples = 0
        while self._queue and (not batch or samples + self._queue[0].samples <= self.config.max_samples_per_send):
            frame = self._queue.popleft()
            batch.append(frame)
            samples += frame.samples
        self._pending -= samples
        self.metrics.pending.set(self._pending)
        self.metrics.oldest_pending.set(self._queue[0].timestamp_ms / 1e3 if self._queue else 0)
        return batch

    async def _send_with_retry(self, batch: list[PendingFrame]) -> None:
        body, samples = encode_write_request(batch)
        self._inflight = samples
        try:
            await self._deliver(batch, body, samples)
        finally:
            self._inflight = 0

    async def _deliver(self, batch: list[PendingFrame], body: bytes, samples: int) -> None:
        attempt = 0
        while True:
            try:
                await self._post(body)
            except SendError as exc:
                if not exc.retryable:
                    self.metrics.samples_dropped.labels("rejected").inc(samples)
                    log.error("remote write batch refused; dropped", status=exc.status, error=str(exc), samples=samples)
                    return
                if self._stopping:
                    # Shutting down: give the batch back, keep trying until the grace period ends.
                    self._requeue(batch)
                    await self.sleep(self.config.min_backoff)
                    return
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
            return

    def _requeue(self, batch: list[PendingFrame]) -> None:
        for frame in reversed(batch):
            self._queue.appendleft(frame)
            self._pending += frame.samples
        self.metrics.pending.set(self._pending)

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
    pending = section.get("max_pending_samples", int, 2_000_000)
    if pending < per_send:
        raise section.error("max_pending_samples", f"must be at least max_samples_per_send ({per_send}), got {pending}")
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
