"""The gRPC side of the collector: checks who is streaming, then applies their records to the store.

Each stream is bound to the host named in its client certificate. Records are processed in
arrival order; a shared ticker (collector/ingest/acks.py) acknowledges the highest contiguous sequence that
is processed and durable; a record already processed is skipped, so replays are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
import structlog
from cryptography import x509
from google.protobuf.message import DecodeError, Message

from collector.ingest.acks import AckSlot, AckTicker
from collector.ingest.decode import decode_frame
from collector.ingest.progress import ProgressBook, ProgressExposition, StreamProgress
from collector.ingest.ratelimit import TokenBucket
from collector.ingest.skew import ClockSkew
from collector.ingest.text import clean_message
from collector.selfmetrics import CollectorMetrics
from collector.store import FleetStore, HostRecord
from collector.trust.identity import IdentityError, PeerIdentity, peer_identity
from collector.trust.revocation import RevocationList
from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from protos.codec import PROTOCOL_VERSION, FrameError, FrameLayout

log = structlog.get_logger("gpulse.collector.ingest.server")
LOG_EVERY_S = 60.0
# Every fixed reason a stream is refused for, here or in the TLS handshake (collector/trust/handshakes.py).
REFUSAL_REASONS = (
    "plaintext", "tls_version", "tls_handshake", "expired", "not_yet_valid", "wrong_usage", "wrong_ca",
    "no_client_cert", "no_tls", "no_identity", "ca_certificate", "untrusted_issuer", "san_cn_mismatch",
    "revoked", "identity_mismatch", "no_hello", "bad_hello", "malformed", "protocol_version",
    "message_too_large", "too_many_series", "too_many_hosts", "rate_limited",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_future_seconds: float = 300.0
    max_age_seconds: float = 7 * 86400.0
    max_gpus_per_host: int = 64
    ack_interval_seconds: float = 0.1
    # Against an agent that is authenticated but broken or hostile; each refusal is counted by reason.
    max_message_bytes: int = 4 * 1024 * 1024
    max_hosts: int = 10_000
    max_series_per_host: int = 20_000  # values per frame: host fields + GPUs x GPU fields
    max_boots_per_host: int = 16  # sequence trackers kept per host; a reboot loop must not grow memory
    records_per_second: float = 200.0  # sustained, per host, across reconnects
    records_burst: float = 20_000.0  # room for a spool replay after an outage


class MessageTooLarge(Exception):
    """An agent message over ``IngestLimits.max_message_bytes``; raised before it is parsed."""


def add_telemetry_service(service: TelemetryService, server: grpc.aio.Server) -> None:
    """Register ``service`` with a deserializer that checks the size first, so an oversized message is
    refused and counted by the servicer (gRPC's own limit, set higher, only cancels the call silently)."""

    def deserialize(data: bytes) -> pb.AgentMessage:
        limit = service.limits.max_message_bytes
        if len(data) > limit:
            raise MessageTooLarge(f"message of {len(data)} bytes; at most {limit} are accepted")
        return pb.AgentMessage.FromString(data)

    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            service.Stream,
            request_deserializer=deserialize,
            response_serializer=pb.CollectorMessage.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("gpulse.v1.Telemetry", handlers),))


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
        revocation: RevocationList | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        progress: ProgressBook | None = None,
        issuers: Callable[[], Sequence[x509.Certificate]] | None = None,
        on_refused: Callable[[str, str], None] = lambda reason, peer: None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.collector_id = collector_id
        self.limits = limits or IngestLimits()
        self.observers = observers or []
        self.clock = clock
        # What each (host, boot) has had processed; acknowledgements never run ahead of what it has made durable.
        self.progress = progress or ProgressBook(clock=clock)
        metrics.registry.register(ProgressExposition(self.progress))
        self._acks = AckTicker(self.progress.flush, lambda: self.limits.ack_interval_seconds)
        self._active: dict[str, object] = {}  # host_id -> token of its newest stream
        self.revocation = revocation
        self.issuers = issuers  # the CA bundle a client certificate must be issued by directly
        self.on_refused = on_refused  # told (reason, peer) of every refusal: the audit log's summary
        self.monotonic = monotonic
        self._logged: dict[tuple[str, str], float] = {}  # (peer address, reason) -> when last logged
        for reason in REFUSAL_REASONS:
            metrics.streams_refused.labels(reason)  # 0 from the start: dashboards show 0, not "no data"
        self._buckets: dict[str, TokenBucket] = {}

    def _note_refusal(self, refusal: _Refused, **where: str) -> _Refused:
        """Every refusal is counted by reason; logged with what was wrong, once a minute per peer and reason,
        so 500 hosts with an expired certificate do not flood the log but each is named."""
        self.metrics.streams_refused.labels(refusal.reason).inc()
        peer = where.get("peer", where.get("host_id", "")).rpartition(":")[0] or where.get("host_id", "")
        self.on_refused(refusal.reason, peer)
        key, now = (peer, refusal.reason), self.monotonic()
        if now - self._logged.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            if len(self._logged) > 10_000:
                self._logged.clear()  # bounded: a scan from many addresses must not grow memory
            self._logged[key] = now
            log.warning("stream refused", **where, reason=refusal.reason, error=str(refusal))
        return refusal

    def _refuse_midstream(self, host_id: str, reason: str, code: grpc.StatusCode, message: str) -> _Refused:
        return self._note_refusal(_Refused(code, reason, message), host_id=host_id)

    def _bucket(self, host_id: str) -> TokenBucket:
        bucket = self._buckets.get(host_id)
        if bucket is None or bucket.rate != self.limits.records_per_second or bucket.burst != self.limits.records_burst:
            bucket = TokenBucket(self.limits.records_per_second, self.limits.records_burst, self.monotonic)
            self._buckets[host_id] = bucket
        return bucket

    async def Stream(  # noqa: N802 - the name is the RPC's
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: grpc.aio.ServicerContext
    ) -> None:
        try:
            record, progress, identity = await self._open(request_iterator, context)
        except _Refused as refusal:
            self._note_refusal(refusal, peer=context.peer())
            await context.abort(refusal.code, str(refusal))
            return
        token = object()
        self._active[record.host_id] = token
        record.connected = True
        # From the Hello's send stamp, then from every message's: a clock that drifts or jumps
        # mid-stream shows (and alerts) without waiting for a reconnect.
        skew = ClockSkew()
        if _hello_sent_now(record.hello):
            record.clock_skew_seconds = skew.observe(record.hello.sent_unix_ns, self.clock())
        self.metrics.connected_agents.inc()
        log.info("agent connected", host_id=record.host_id, boot_id=record.boot_id, peer=context.peer())
        self.metrics.agent_certificate_expiry.labels(record.host_id).set(identity.not_after_unix)
        ack_slot = self._acks.open(progress)
        acker = asyncio.create_task(self._ack_loop(context, ack_slot))
        bucket = self._bucket(record.host_id)
        ended: _Refused | None = None
        try:
            async for message in request_iterator:
                if self._active.get(record.host_id) is not token:
                    await context.abort(grpc.StatusCode.ABORTED, "superseded by a newer stream from this host")
                if self.revocation is not None and self.revocation.is_revoked(identity.serial):
                    ended = self._refuse_midstream(
                        record.host_id, "revoked", grpc.StatusCode.PERMISSION_DENIED, "client certificate was revoked"
                    )
                    break
                if not bucket.take():
                    ended = self._refuse_midstream(
                        record.host_id,
                        "rate_limited",
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"more than {self.limits.records_per_second:g} records/s "
                        f"(burst {self.limits.records_burst:g}) from this host; slow down and retry",
                    )
                    break
                if message.sent_unix_ns:
                    record.clock_skew_seconds = skew.observe(message.sent_unix_ns, self.clock())
                self._process(record, progress, message)
        except MessageTooLarge as exc:
            ended = self._refuse_midstream(
                record.host_id, "message_too_large", grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
            )
        except DecodeError as exc:
            ended = self._refuse_midstream(
                record.host_id, "malformed", grpc.StatusCode.INVALID_ARGUMENT, f"undecodable message: {exc}"
            )
        finally:
            # Bookkeeping before any await: when the agent cancels the call, gRPC cancels this task
            # again while it waits here, and whatever came after that wait would never run.
            acker.cancel()
            self._acks.close(ack_slot)
            self.metrics.connected_agents.dec()
            if self._active.get(record.host_id) is token:
                del self._active[record.host_id]
                record.connected = False
            log.info("agent disconnected", host_id=record.host_id)
            await asyncio.gather(acker, return_exceptions=True)
        # The stream may already be gone; if so the next Welcome carries the same number.
        with contextlib.suppress(Exception):
            await self.progress.flush()
            await context.write(pb.CollectorMessage(ack=pb.Ack(seq=progress.durable_watermark)))
        if ended is not None:
            await context.abort(ended.code, str(ended))

    async def _open(
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: grpc.aio.ServicerContext
    ) -> tuple[HostRecord, StreamProgress, PeerIdentity]:
        revoked = self.revocation.is_revoked if self.revocation is not None else None
        try:
            identity = peer_identity(
                context.auth_context(),
                revoked=revoked,
                now=self.clock() / 1e9,
                issuers=self.issuers() if self.issuers is not None else (),
            )
        except IdentityError as exc:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, exc.reason, str(exc)) from None
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "no_hello", "stream closed before its hello") from None
        except DecodeError as exc:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "malformed", f"undecodable first message: {exc}") from None
        except MessageTooLarge as exc:
            raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "message_too_large", str(exc)) from None
        if not first.HasField("hello"):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "no_hello", "the first message must be a hello")
        hello = first.hello
        self._clean(hello, identity.host_id)
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
        if layout.width > self.limits.max_series_per_host:
            raise _Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too_many_series",
                f"hello declares {layout.width} series; at most {self.limits.max_series_per_host} per host",
            )
        current = self.store.hosts.get(hello.host_id)
        if current is None and len(self.store.hosts) >= self.limits.max_hosts:
            raise _Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too_many_hosts",
                f"the collector already holds {self.limits.max_hosts} hosts; host {hello.host_id!r} not admitted",
            )
        if current is not None and current.boot_id != hello.boot_id and _boot_start(hello) < _boot_start(current.hello):
            # The agent is draining an earlier boot's spool: apply it without rebinding the host.
            record = self.store.replay_record(current, hello, layout)
        else:
            record = self.store.register(hello, layout)
        progress = self._progress(hello.host_id, hello.boot_id)
        if hello.resume_after_seq > progress.tracker.watermark:
            # Another collector acknowledged these before the agent failed over here: they will not come.
            progress.mark_elsewhere(hello.resume_after_seq)
        await self.progress.flush()  # so the Welcome can name everything processed so far
        await context.write(
            pb.CollectorMessage(
                welcome=pb.Welcome(collector_id=self.collector_id, processed_seq=progress.durable_watermark)
            )
        )
        return record, progress, identity

    def _progress(self, host_id: str, boot_id: str) -> StreamProgress:
        if not self.progress.has(host_id, boot_id):
            # Forget the oldest boots of this host: an agent in a reboot loop must not grow memory.
            boots = self.progress.boots(host_id)
            for old in boots[: max(0, len(boots) - self.limits.max_boots_per_host + 1)]:
                self.progress.forget(host_id, old)
        return self.progress.get(host_id, boot_id)

    async def _ack_loop(self, context: grpc.aio.ServicerContext, slot: AckSlot) -> None:
        # The shared ticker flushes and wakes this stream only when its durable watermark moved.
        while True:
            await slot.due.wait()
            watermark = slot.take()
            if watermark is not None:
                await context.write(pb.CollectorMessage(ack=pb.Ack(seq=watermark)))

    def _clean(self, message: Message, host_id: str) -> None:
        """Cut and strip the agent's strings before anything reads them (see collector/ingest/text.py)."""
        changed = clean_message(message)
        if changed:
            self.metrics.text_cleaned.inc(changed)
            log.warning("agent text cut or stripped of control characters", host_id=host_id, fields=changed)

    def _process(self, record: HostRecord, progress: StreamProgress, message: pb.AgentMessage) -> None:
        if message.HasField("event"):
            self._clean(message.event, record.host_id)
        seq = message.seq
        if seq == 0:
            self.metrics.frames_rejected.labels("bad_seq").inc()
            log.warning("record without a sequence number refused", host_id=record.host_id)
            return
        if _is_drop_notice(message):
            self._apply_drop_notice(record, progress, message)
            return
        if progress.tracker.seen(seq):
            self.metrics.duplicates.inc()
            progress.duplicates += 1
            progress.dirty = True
            return
        kind = message.WhichOneof("body")
        if kind == "batch":
            progress.applied_frames += self._apply_batch(record, message.batch)
            progress.applied_records += 1
        elif kind == "event":
            self._apply_event(record, message.event)
            progress.applied_records += 1
        else:
            self.metrics.frames_rejected.labels("unexpected_message").inc()
            log.warning("unexpected message refused", host_id=record.host_id, kind=kind, seq=seq)
        # Refused records count as processed too: resending them would only be refused again.
        progress.mark(seq)

    def _apply_drop_notice(self, record: HostRecord, progress: StreamProgress, message: pb.AgentMessage) -> None:
        """The agent lost ``first..last`` unsent (budget or damage): those will never come, so mark them.

        The notice takes the seq of the last record it covers, which may already have arrived; marking
        is idempotent, and only the records not processed before are counted as dropped.
        """
        drop = message.event.spool_drop
        newly = progress.mark_dropped(drop.first_seq, drop.last_seq)
        if newly == 0:
            self.metrics.duplicates.inc()
            progress.duplicates += 1
            return
        log.warning(
            "agent spool dropped data",
            host_id=record.host_id,
            boot_id=progress.boot_id,
            first_seq=drop.first_seq,
            last_seq=drop.last_seq,
            records=newly,
            reason=drop.reason,
        )
        self.metrics.events.labels("spool_drop").inc()
        # Observers sum `records`: tell them only what is new here, as a later notice may cover
        # (merged) ranges an earlier one already reported.
        event = pb.Event()
        event.CopyFrom(message.event)
        event.spool_drop.records = newly
        for observer in self.observers:
            observer.event_applied(record, event)

    def _apply_batch(self, record: HostRecord, batch: pb.Batch) -> int:
        """Apply the frames that pass the checks; returns how many did."""
        applied = 0
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
            applied += 1
            for observer in self.observers:
                observer.frame_applied(record, decoded.unix_ns)
        return applied

    def _apply_earlier_boot_event(self, record: HostRecord, event: pb.Event, kind: str | None) -> None:
        """An event of an earlier boot, drained after the host's current boot connected.

        What its GPUs' health, links, inventory and jobs were then is not what they are now, and
        must not overwrite it. Its XIDs happened, so they count, on the GPU they happened to (found
        by UUID: after a reboot a GPU may be gone and the others renumbered); but detection does
        not hear of them, or it would page now for what the reboot already dealt with ("reboot
        required" for a host that has just rebooted).
        """
        if kind != "xid":
            self.metrics.events_rejected.labels("superseded_by_newer_boot").inc()
            log.info("earlier boot's event not applied", host_id=record.host_id, kind=kind, boot_id=record.boot_id)
            return
        current = self.store.hosts.get(record.host_id)
        index = event.xid.gpu_index
        uuid = record.hello.gpus[index].uuid if index < len(record.hello.gpus) else None
        meta = next((m for m in current.gpus if m.uuid == uuid), None) if current is not None and uuid else None
        if current is None or meta is None:
            self.metrics.events_rejected.labels("gpu_not_present").inc()
            log.warning("earlier boot's xid for a GPU no longer present", host_id=record.host_id, uuid=uuid)
            return
        self.store.record_xid(current, meta.index, event.xid.xid, max(1, event.xid.count))
        self.metrics.events.labels("xid").inc()
        log.warning("xid of an earlier boot", host_id=record.host_id, gpu=meta.index, xid=event.xid.xid)

    def _apply_event(self, record: HostRecord, event: pb.Event) -> None:
        kind = event.WhichOneof("kind")
        if record.replayed and kind not in ("spool_drop", None):
            self._apply_earlier_boot_event(record, event, kind)
            return
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


def _is_drop_notice(message: pb.AgentMessage) -> bool:
    """A spool drop notice covering a range that ends at its own seq (the spools write them so)."""
    if not message.HasField("event") or not message.event.HasField("spool_drop"):
        return False
    drop = message.event.spool_drop
    return 0 < drop.first_seq <= drop.last_seq == message.seq


def _hello_sent_now(hello: pb.Hello) -> bool:
    """Whether ``sent_unix_ns`` is when this Hello was sent. Agents that predate ``boot_unix_ns``
    stamped it once, at their start, and resent that Hello on every reconnect: on a resumed stream
    it is their uptime, not their clock's offset, and would read as skew."""
    return bool(hello.sent_unix_ns) and bool(hello.boot_unix_ns or not hello.resume_after_seq)


def _boot_start(hello: pb.Hello) -> int:
    """When the Hello's boot started; agents before ``boot_unix_ns`` stamped their boot's start as
    ``sent_unix_ns``."""
    return hello.boot_unix_ns or hello.sent_unix_ns


def _event_gpu(event: pb.Event) -> int | None:
    kind = event.WhichOneof("kind")
    if kind == "inventory":
        return int(event.inventory.gpu.index)
    if kind in ("xid", "gpu_lost", "health", "workload", "nvlink"):
        return int(getattr(event, kind).gpu_index)
    return None
