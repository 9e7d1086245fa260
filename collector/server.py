"""The gRPC side of the collector: checks who is streaming, then applies their records to the store.

Each stream is bound to the host named in its client certificate. Records are processed in
arrival order and acknowledged by a small background task, a few times a second, with the highest
contiguous sequence processed; a record already processed is skipped, so replays are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
import structlog

from collector.identity import IdentityError, peer_identity
from collector.selfmetrics import CollectorMetrics
from collector.sequence import SequenceTracker
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from protos.codec import PROTOCOL_VERSION, FrameError, FrameLayout, decode_frame

log = structlog.get_logger("gpulse.collector.server")


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_future_seconds: float = 300.0
    max_age_seconds: float = 7 * 86400.0
    max_gpus_per_host: int = 64
    ack_interval_seconds: float = 0.1


class IngestObserver(Protocol):
    """Told of what was applied, in order: detection and exporters hang off this."""

    def frame_applied(self, record: HostRecord, unix_ns: int) -> None: ...

    def event_applied(self, record: HostRecord, event: pb.Event) -> None: ...


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class TelemetryService(pb_grpc.TelemetryServicer):
    def __init__(
        self,
        *,
        store: FleetStore,
        metrics: CollectorMetrics,
        collector_id: str,
        limits: IngestLimits | None = None,
        observers: list[IngestObserver] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.collector_id = collector_id
        self.limits = limits or IngestLimits()
        self.observers = observers or []
        self.clock = clock
        self._sequences: dict[tuple[str, str], SequenceTracker] = {}
        self._active: dict[str, object] = {}  # host_id -> token of its newest stream

    async def Stream(  # noqa: N802 - the name is the RPC's
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: grpc.aio.ServicerContext
    ) -> None:
        try:
            record, tracker = await self._open(request_iterator, context)
        except _Refused as refusal:
            self.metrics.streams_refused.labels(refusal.reason).inc()
            log.warning("stream refused", peer=context.peer(), reason=refusal.reason, error=str(refusal))
            await context.abort(refusal.code, str(refusal))
            return
        token = object()
        self._active[record.host_id] = token
        record.connected = True
        self.metrics.connected_agents.inc()
        log.info("agent connected", host_id=record.host_id, boot_id=record.boot_id, peer=context.peer())
        acker = asyncio.create_task(self._ack_loop(context, tracker))
        try:
            async for message in request_iterator:
                if self._active.get(record.host_id) is not token:
                    await context.abort(grpc.StatusCode.ABORTED, "superseded by a newer stream from this host")
                self._process(record, tracker, message)
        finally:
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
            self.metrics.connected_agents.dec()
            if self._active.get(record.host_id) is token:
                del self._active[record.host_id]
                record.connected = False
            log.info("agent disconnected", host_id=record.host_id)
        # The stream may already be gone; if so the next Welcome carries the same number.
        with contextlib.suppress(Exception):
            await context.write(pb.CollectorMessage(ack=pb.Ack(seq=tracker.watermark)))

    async def _open(
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: grpc.aio.ServicerContext
    ) -> tuple[HostRecord, SequenceTracker]:
        try:
            identity = peer_identity(context.auth_context())
        except IdentityError as exc:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, exc.reason, str(exc)) from None
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "no_hello", "stream closed before its hello") from None
        if not first.HasField("hello"):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "no_hello", "the first message must be a hello")
        hello = first.hello
        if hello.host_id != identity.host_id:
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                "identity_mismatch",
                f"hello host_id {hello.host_id!r} does not match certificate identity {identity.host_id!r}",
            )
        if hello.protocol_version != PROTOCOL_VERSION:
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "protocol_version",
                f"protocol version {hello.protocol_version} is not supported; this collector speaks {PROTOCOL_VERSION}",
            )
        if not hello.boot_id:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "bad_hello", "hello has no boot_id")
        try:
            layout = FrameLayout.from_hello(hello, max_gpus=self.limits.max_gpus_per_host)
        except FrameError as exc:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, exc.reason, str(exc)) from None
        current = self.store.hosts.get(hello.host_id)
        if current is not None and current.boot_id != hello.boot_id and hello.sent_unix_ns < current.hello.sent_unix_ns:
            # The agent is draining an earlier boot's spool: apply it without rebinding the host.
            record = self.store.replay_record(current, hello, layout)
        else:
            record = self.store.register(hello, layout)
        record.clock_skew_seconds = (hello.sent_unix_ns - self.clock()) / 1e9 if hello.sent_unix_ns else 0.0
        tracker = self._sequences.setdefault((hello.host_id, hello.boot_id), SequenceTracker())
        await context.write(
            pb.CollectorMessage(welcome=pb.Welcome(collector_id=self.collector_id, processed_seq=tracker.watermark))
        )
        return record, tracker

    async def _ack_loop(self, context: grpc.aio.ServicerContext, tracker: SequenceTracker) -> None:
        last = -1
        while True:
            await asyncio.sleep(self.limits.ack_interval_seconds)
            if tracker.watermark != last:
                last = tracker.watermark
                await context.write(pb.CollectorMessage(ack=pb.Ack(seq=last)))

    def _process(self, record: HostRecord, tracker: SequenceTracker, message: pb.AgentMessage) -> None:
        seq = message.seq
        if seq == 0:
            self.metrics.frames_rejected.labels("bad_seq").inc()
            log.warning("record without a sequence number refused", host_id=record.host_id)
            return
        if tracker.seen(seq):
            self.metrics.duplicates.inc()
            return
        kind = message.WhichOneof("body")
        if kind == "batch":
            self._apply_batch(record, message.batch)
        elif kind == "event":
            self._apply_event(record, message.event)
        else:
            self.metrics.frames_rejected.labels("unexpected_message").inc()
            log.warning("unexpected message refused", host_id=record.host_id, kind=kind, seq=seq)
        # Refused records count as processed too: resending them would only be refused again.
        tracker.mark(seq)

    def _apply_batch(self, record: HostRecord, batch: pb.Batch) -> None:
        now = self.clock()
        for frame in batch.frames:
            try:
                decoded = decode_frame(
                    frame,
                    record.layout,
                    now_ns=now,
                    max_future_ns=int(self.limits.max_future_seconds * 1e9),
                    max_age_ns=int(self.limits.max_age_seconds * 1e9),
                )
            except FrameError as exc:
                self.metrics.frames_rejected.labels(exc.reason).inc()
                log.warning("frame refused", host_id=record.host_id, reason=exc.reason, error=str(exc))
                continue
            if decoded.non_finite:
                self.metrics.values_rejected.labels("non_finite").inc(decoded.non_finite)
            self.store.apply_frame(record, decoded)
            self.metrics.frames_applied.inc()
            for observer in self.observers:
                observer.frame_applied(record, decoded.unix_ns)

    def _apply_event(self, record: HostRecord, event: pb.Event) -> None:
        kind = event.WhichOneof("kind")
        gpu_index = _event_gpu(event)
        if gpu_index is not None and gpu_index >= len(record.gpus):
            self.metrics.events_rejected.labels("unknown_gpu").inc()
            log.warning("event for an unknown GPU refused", host_id=record.host_id, kind=kind, gpu=gpu_index)
            return
        if kind == "xid":
            self.store.record_xid(record, event.xid.gpu_index, event.xid.xid, max(1, event.xid.count))
            log.warning(
                "xid", host_id=record.host_id, gpu=event.xid.gpu_index, xid=event.xid.xid, count=event.xid.count
            )
        elif kind == "gpu_lost":
            self.store.mark_lost(record, event.gpu_lost.gpu_index)
            log.error("gpu lost", host_id=record.host_id, gpu=event.gpu_lost.gpu_index, reason=event.gpu_lost.reason)
        elif kind == "health":
            h = event.health
            self.store.set_health(record, h.gpu_index, h.status, list(h.reasons))
        elif kind == "workload":
            record.workloads[event.workload.gpu_index] = list(event.workload.processes)
        elif kind == "nvlink":
            self.store.set_nvlink(record, event.nvlink.gpu_index, list(event.nvlink.links))
        elif kind == "inventory":
            self.store.update_gpu(record, event.inventory.gpu)
            inv = event.inventory
            log.info("gpu inventory changed", host_id=record.host_id, gpu=inv.gpu.index, what=inv.what)
        elif kind == "spool_drop":
            log.warning("agent spool dropped data", host_id=record.host_id, records=event.spool_drop.records)
        elif kind is None:
            self.metrics.events_rejected.labels("empty").inc()
            return
        self.metrics.events.labels(kind).inc()
        for observer in self.observers:
            observer.event_applied(record, event)


def _event_gpu(event: pb.Event) -> int | None:
    kind = event.WhichOneof("kind")
    if kind == "inventory":
        return int(event.inventory.gpu.index)
    if kind in ("xid", "gpu_lost", "health", "workload", "nvlink"):
        return int(getattr(event, kind).gpu_index)
    return None
