"""The shipper against a real collector service: events first, original timestamps, flow control, keepalive."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc

from agent.config import BackoffConfig
from agent.daemon import Sampler
from agent.hello import build_hello
from agent.records import GpuInfo, HostInfo
from agent.shipper import Shipper
from agent.sources.host import HostSource
from agent.spool.disk import DiskSpool
from agent.spool.memory import MemorySpool
from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from protos.fields import CATALOG
from runtime.tls import TlsFiles, channel_credentials
from runtime.transport import CLIENT_KEEPALIVE_MS, SERVER_MIN_PING_INTERVAL_MS, channel_options
from tests.kit import Pki
from tests.threaded_collector import Recorder, ThreadedCollector

HOST_FIELDS = CATALOG.host_ids[:2]
GPU_FIELDS = CATALOG.gpu_ids[:2]


def hello(host: str) -> pb.Hello:
    return build_hello(
        host_id=host,
        boot_id=str(uuid.uuid4()),
        host=HostInfo(hostname=host),
        gpus=[GpuInfo(index=0, uuid="GPU-0", name="NVIDIA H100 80GB HBM3")],
        gpu_source="sim",
        host_field_ids=HOST_FIELDS,
        gpu_field_ids=GPU_FIELDS,
        interval=1.0,
    )


def frame(unix_ns: int) -> pb.AgentMessage:
    return pb.AgentMessage(batch=pb.Batch(frames=[pb.Frame(unix_ns=unix_ns, values=[1.0, 2.0, 3.0, 4.0])]))


def credentials(kit: Pki, host: str) -> grpc.ChannelCredentials:
    cert, key = kit.agent(host)
    return channel_credentials(TlsFiles(kit.ca, cert, key))


def shipper(kit: Pki, host: str, spool: MemorySpool | DiskSpool, targets: tuple[str, ...], **kw: int) -> Shipper:
    return Shipper(
        spool=spool,
        targets=targets,
        credentials=lambda: credentials(kit, host),
        backoff=BackoffConfig(initial=0.05, maximum=0.2),
        wakeup=asyncio.Event(),
        server_name="collector",
        **kw,  # type: ignore[arg-type]
    )


async def wait_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_after_a_connect_spooled_events_go_first_and_frames_keep_their_timestamps(
    test_pki: Pki, tmp_path: Path
) -> None:
    recorder = Recorder()
    spool = DiskSpool(tmp_path / "spool")
    spool.open_epoch(hello("node-ev"))
    start = time.time_ns() - 600 * 10**9  # sampled ten minutes ago, during an outage
    stamps = [start + i * 10**9 for i in range(300)]
    for ns in stamps:
        spool.append(frame(ns))
    spool.append(pb.AgentMessage(event=pb.Event(unix_ns=stamps[-1], xid=pb.XidEvent(gpu_index=0, xid=79, count=1))))
    with ThreadedCollector(test_pki, recorder) as collector:
        ship = shipper(test_pki, "node-ev", spool, (collector.target,))
        task = asyncio.create_task(ship.run())
        try:
            await wait_until(lambda: len(recorder.applied) == 301)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            spool.close()
    assert recorder.applied[0] == ("event:xid", stamps[-1])  # the XID did not wait behind 300 frames
    assert [ns for kind, ns in recorder.applied[1:]] == stamps  # replayed in order, original timestamps


async def test_a_slow_collector_slows_the_shipper_not_the_sampler(test_pki: Pki) -> None:
    recorder = Recorder(delay_seconds=0.1)  # applies at most 10 frames a second
    spool = MemorySpool(max_records=100_000)
    window = 16
    with ThreadedCollector(test_pki, recorder) as collector:
        ship = shipper(test_pki, "node-fc", spool, (collector.target,), max_in_flight=window)
        sampler = Sampler(
            host_id="node-fc",
            gpu=None,
            host=HostSource(),
            spool=spool,
            wakeup=ship.wakeup,
            interval=0.01,
            gpu_source="none",
        )
        sampler.start()
        shipping = asyncio.create_task(ship.run())
        in_flight = []
        for _ in range(150):
            await sampler.tick()  # the sampler's loop: it never waits for the shipper or the collector
            await asyncio.sleep(0.01)
            in_flight.append(ship.stats.sent - ship.stats.acked)
        shipping.cancel()
        await asyncio.gather(shipping, return_exceptions=True)
        applied = len(recorder.applied)
    assert ship.stats.acked > 0
    assert max(in_flight) <= window  # the shipper waits for acks, it does not flood the collector
    # The sampler ran on regardless: its records waited in the spool, not in the sampler.
    assert sampler.stats.ticks == 150
    assert applied + 2 * window < sampler.stats.ticks
    assert spool.last_seq(sampler.boot_id) == sampler.stats.ticks + sampler.stats.events


async def test_failover_to_the_next_collector_when_the_first_is_down(test_pki: Pki) -> None:
    recorder = Recorder()
    spool = MemorySpool()
    spool.open_epoch(hello("node-fo"))
    for i in range(10):
        spool.append(frame(time.time_ns() - (10 - i) * 10**9))
    dead = "127.0.0.1:1"  # nothing listens there
    with ThreadedCollector(test_pki, recorder) as collector:
        ship = shipper(test_pki, "node-fo", spool, (dead, collector.target))
        task = asyncio.create_task(ship.run())
        try:
            await wait_until(lambda: len(recorder.applied) == 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert ship.stats.errors and ship.stats.connects == 1


async def idle_stream(kit: Pki, target: str, *, keepalive_ms: int, idle_seconds: float) -> str:
    """Open a stream, stay idle, then use it: '' if it survived, else the error that ended it."""
    host = "node-ka"
    options = channel_options("collector", keepalive_ms=keepalive_ms, keepalive_timeout_ms=2_000)
    async with grpc.aio.secure_channel(target, credentials(kit, host), options=options) as channel:
        call = pb_grpc.TelemetryStub(channel).Stream()
        await call.write(pb.AgentMessage(hello=hello(host)))
        acks: asyncio.Queue[int] = asyncio.Queue()

        async def read() -> None:
            while (message := await call.read()) is not grpc.aio.EOF:
                if message.HasField("ack"):
                    acks.put_nowait(message.ack.seq)

        reader = asyncio.create_task(read())
        try:
            await asyncio.sleep(idle_seconds)
            if reader.done():
                exc = reader.exception()
                return str(exc.details()) if isinstance(exc, grpc.aio.AioRpcError) else f"stream ended: {exc}"
            await call.write(pb.AgentMessage(seq=1, batch=frame(time.time_ns()).batch))
            while await asyncio.wait_for(acks.get(), 5) != 1:
                pass
            return ""
        finally:
            reader.cancel()


async def test_keepalive_pings_over_a_long_idle_stream_are_accepted(test_pki: Pki) -> None:
    # The production ratio, scaled down: the client pings no faster than the server permits.
    assert CLIENT_KEEPALIVE_MS >= 2 * SERVER_MIN_PING_INTERVAL_MS
    with ThreadedCollector(test_pki, min_ping_interval_ms=200) as collector:
        assert await idle_stream(test_pki, collector.target, keepalive_ms=400, idle_seconds=6) == ""


async def test_keepalive_faster_than_the_server_permits_is_refused(test_pki: Pki) -> None:
    # The same test with mismatched settings fails with too_many_pings: the check above can fail.
    with ThreadedCollector(test_pki, min_ping_interval_ms=5_000) as collector:
        error = await idle_stream(test_pki, collector.target, keepalive_ms=400, idle_seconds=6)
    assert "too many pings" in error.lower(), error


async def test_a_replayed_record_is_applied_once_and_counted_as_a_duplicate(test_pki: Pki) -> None:
    recorder = Recorder()
    host = "node-dup"
    opening = hello(host)
    stamps = [time.time_ns() - (10 - i) * 10**9 for i in range(8)]

    async def send(seqs: range) -> int:
        """One stream: the Hello, then ``seqs``; returns the last acknowledged seq."""
        options = channel_options("collector")
        async with grpc.aio.secure_channel(collector.target, credentials(test_pki, host), options=options) as ch:
            call = pb_grpc.TelemetryStub(ch).Stream()
            await call.write(pb.AgentMessage(hello=opening))
            welcome = await call.read()
            for seq in seqs:
                await call.write(pb.AgentMessage(seq=seq, batch=frame(stamps[seq - 1]).batch))
            acked = welcome.welcome.processed_seq
            while acked < seqs[-1]:
                acked = (await call.read()).ack.seq
            call.cancel()
            return int(acked)

    with ThreadedCollector(test_pki, recorder) as collector:
        assert await send(range(1, 6)) == 5
        assert await send(range(1, 9)) == 8  # a reconnect that resends everything it still holds
        assert collector.service is not None
        progress = collector.service.progress.get(host, opening.boot_id)
    assert [ns for _, ns in recorder.applied] == stamps  # each frame applied once, in order
    assert progress.duplicates == 5 and progress.applied_frames == 8
