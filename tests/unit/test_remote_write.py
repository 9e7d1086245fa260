"""Remote write 1.0: the body on the wire, which answers are retried, and backfill after a partition."""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector.exporters.remote_write import (
    HEADERS,
    PendingFrame,
    RemoteWriteConfig,
    RemoteWriter,
    SeriesTable,
    backoff_delay,
    classify,
    decode_write_request,
    encode_write_request,
    parse_config,
)
from collector.exporters.remote_write_queue import QueueConfig
from collector.ingest.decode import decode_frame
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout, encode_frame
from protos.fields import CATALOG
from runtime.configfile import ConfigError, Section
from tests.kit import free_port

T0 = 1_800_000_000 * 10**9
TEMP = CATALOG.gpu("temperature").id
UTIL = CATALOG.gpu("utilization").id
LOAD1 = CATALOG.host("load1").id


def host(store: FleetStore, name: str = "node-a", gpus: int = 2) -> HostRecord:
    hello = pb.Hello(
        host_id=name,
        boot_id="b1",
        gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{name}-{i}", name="NVIDIA H100") for i in range(gpus)],
        host_field_ids=[LOAD1],
        gpu_field_ids=[TEMP, UTIL],
    )
    return store.register(hello, FrameLayout.from_hello(hello))


def apply(store: FleetStore, writer: RemoteWriter, record: HostRecord, t_ns: int, temp: float) -> None:
    gpu = np.array([[temp + i, np.nan] for i in range(len(record.gpus))])  # utilisation not read: NaN
    frame = decode_frame(
        encode_frame(t_ns, np.array([1.5]), gpu), record.layout, now_ns=t_ns, max_future_ns=1, max_age_ns=1
    )
    store.apply_frame(record, frame)
    writer.frame_applied(record, t_ns)


class Receiver:
    """A remote write receiver on 127.0.0.1 answering from a script of statuses (then 204)."""

    def __init__(self, statuses: list[int] | None = None, retry_after: str = "") -> None:
        self.statuses = list(statuses or [])
        self.retry_after = retry_after
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 204
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
        return web.Response(status=status, text="" if status == 204 else f"status {status}", headers=headers)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/api/v1/write", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def samples(self) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for _, body in self.requests:
            for series in decode_write_request(body).timeseries:
                labels = {lab.name: lab.value for lab in series.labels}
                key = f"{labels['__name__']}/{labels['host']}/{labels.get('gpu', '')}"
                out.setdefault(key, []).extend((s.timestamp, s.value) for s in series.samples)
        return out


def writer_for(url: str, store: FleetStore, **overrides: object) -> RemoteWriter:
    options: dict[str, object] = {"url": url, "flush_interval": 0.05, "min_backoff": 0.01, "max_backoff": 0.05}
    options.update(overrides)
    directory = Path(tempfile.mkdtemp(prefix="gpulse-rw-"))
    return RemoteWriter(
        RemoteWriteConfig(**options), store, CollectorRegistry(), directory=directory, rng=random.Random(1)
    )  # type: ignore[arg-type]


def queued(writer: RemoteWriter) -> list[PendingFrame]:
    """What the writer has queued on disk, read back as it would send it."""
    return writer._pending(writer.queue.read(10**9))


async def until(condition: object, within: float = 10.0) -> None:
    assert callable(condition)
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_body_is_snappy_protobuf_with_required_headers_sorted_labels_and_no_nan() -> None:
    receiver = await Receiver().start()
    store = FleetStore()
    writer = writer_for(receiver.url, store, external_labels={"cluster": "eu1"})
    writer.start()
    record = host(store)
    apply(store, writer, record, T0, 40.0)
    await until(lambda: receiver.requests)
    await writer.shutdown()
    await receiver.stop()
    headers, body = receiver.requests[0]
    for name, value in HEADERS.items():
        assert headers[name] == value
    request = decode_write_request(body)
    names = [[lab.name for lab in ts.labels] for ts in request.timeseries]
    assert all(n == sorted(n) for n in names)
    got = receiver.samples()
    assert got["gpulse_gpu_temperature_celsius/node-a/1"] == [(T0 // 10**6, 41.0)]
    assert got["gpulse_host_load1/node-a/"] == [(T0 // 10**6, 1.5)]
    assert not any(k.startswith("gpulse_gpu_utilization_ratio") for k in got)  # NaN: not read, not sent
    labels = {lab.name: lab.value for lab in request.timeseries[0].labels}
    assert labels["cluster"] == "eu1"


async def test_5xx_and_429_are_retried_until_accepted_and_each_sample_lands_once() -> None:
    receiver = await Receiver([500, 503, 429], retry_after="0").start()
    store = FleetStore()
    writer = writer_for(receiver.url, store)
    writer.start()
    record = host(store)
    apply(store, writer, record, T0, 40.0)
    await until(lambda: writer.metrics.samples_sent._value.get() > 0)
    await writer.shutdown()
    await receiver.stop()
    assert len(receiver.requests) == 4
    assert writer.metrics.retries._value.get() == 3
    assert all(body == receiver.requests[0][1] for _, body in receiver.requests)  # the same batch, resent


async def test_other_4xx_is_never_retried_and_counts_the_samples_dropped() -> None:
    receiver = await Receiver([400]).start()
    store = FleetStore()
    writer = writer_for(receiver.url, store)
    writer.start()
    record = host(store)
    apply(store, writer, record, T0, 40.0)
    await until(lambda: writer.metrics.samples_dropped.labels("rejected")._value.get() == 3)
    apply(store, writer, record, T0 + 10**9, 41.0)  # the writer goes on with the next batch
    await until(lambda: len(receiver.requests) == 2)
    await writer.shutdown()
    await receiver.stop()
    assert writer.metrics.retries._value.get() == 0


async def test_samples_queued_during_a_partition_arrive_with_their_original_timestamps() -> None:
    receiver = Receiver()  # not listening yet: connection refused
    store = FleetStore()
    writer = writer_for(receiver.url, store)
    writer.start()
    record = host(store)
    for i in range(5):
        apply(store, writer, record, T0 + i * 10**9, 40.0 + i)
    await until(lambda: writer.metrics.requests.labels("error")._value.get() >= 2)
    await receiver.start()
    await until(lambda: writer.pending_samples == 0 and writer.metrics.samples_sent._value.get() == 15)
    await writer.shutdown()
    await receiver.stop()
    temps = receiver.samples()["gpulse_gpu_temperature_celsius/node-a/0"]
    assert temps == [(T0 // 10**6 + i * 1000, 40.0 + i) for i in range(5)]


async def test_a_full_queue_drops_the_oldest_and_counts_them() -> None:
    store = FleetStore()
    writer = writer_for("http://127.0.0.1:9/api/v1/write", store, max_pending_samples=6, max_samples_per_send=3)
    record = host(store)  # not started: nothing leaves the queue
    writer.queue.config = QueueConfig(segment_bytes=1, max_pending_samples=6)  # one frame per segment
    for i in range(4):
        apply(store, writer, record, T0 + i * 10**9, 40.0)
    assert writer.pending_samples == 6
    assert writer.metrics.samples_dropped.labels("queue_full")._value.get() == 6
    assert [f.timestamp_ms for f in queued(writer)] == [T0 // 10**6 + 2000, T0 // 10**6 + 3000]


def test_classify() -> None:
    assert classify(204, "", {}) is None
    assert classify(503, "", {}).retryable  # type: ignore[union-attr]
    too_many = classify(429, "", {"Retry-After": "7"})
    assert too_many is not None and too_many.retryable and too_many.retry_after == 7
    for status in (400, 401, 403, 404, 413):
        error = classify(status, "out of order sample", {})
        assert error is not None and not error.retryable and "out of order" in str(error)


def test_config_parses_and_refuses_bad_values() -> None:
    path = Path("collector.toml")
    assert parse_config(Section(path, "remote_write", {})) is None
    config = parse_config(
        Section(
            path,
            "remote_write",
            {"url": "https://mimir:9009/api/v1/push", "headers": {"X-Scope-OrgID": "gpu"}, "bearer_token": "s3"},
        )
    )
    assert config is not None and config.headers == {"X-Scope-OrgID": "gpu", "Authorization": "Bearer s3"}
    with pytest.raises(ConfigError, match=r"remote_write\.url: must be an http:// or https:// URL"):
        parse_config(Section(path, "remote_write", {"url": "mimir:9009"}))
    with pytest.raises(ConfigError, match=r"remote_write\.headers\.Content-Encoding: is set by the remote write"):
        parse_config(Section(path, "remote_write", {"url": "http://x/", "headers": {"Content-Encoding": "gzip"}}))
    with pytest.raises(ConfigError, match=r"remote_write\.external_labels\.__name__: is not a valid"):
        parse_config(Section(path, "remote_write", {"url": "http://x/", "external_labels": {"__name__": "x"}}))
    with pytest.raises(ConfigError, match=r"remote_write\.batch: unknown key"):
        parse_config(Section(path, "remote_write", {"url": "http://x/", "batch": 1}))


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-(2**62), max_value=2**62),
            st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_hand_written_protobuf_decodes_to_exactly_the_frames(frames: list[tuple[int, list[float]]]) -> None:
    table = SeriesTable(
        (
            (("__name__", "a"), ("host", "h")),
            (("__name__", "b"), ("host", "h"), ("x", "é" * 200)),  # multi-byte, long: lengths past one byte
            (("__name__", "c"),),
        )
    )
    pending = [PendingFrame(table, np.array(values), ts) for ts, values in frames]
    body, count = encode_write_request(pending)
    request = decode_write_request(body)
    expected = [(table.labels[i], ts, v) for ts, values in frames for i, v in enumerate(values) if not math.isnan(v)]
    got = [
        (tuple((lab.name, lab.value) for lab in series.labels), s.timestamp, s.value)
        for series in request.timeseries
        for s in series.samples
    ]
    assert got == expected and count == len(expected)


def test_a_gpu_swapped_under_the_same_boot_is_sent_with_its_new_uuid() -> None:
    store = FleetStore()
    writer = writer_for("http://127.0.0.1:9/api/v1/write", store)
    apply(store, writer, host(store), T0, 40.0)
    hello = pb.Hello(
        host_id="node-a",
        boot_id="b1",
        gpus=[pb.GpuInventory(index=0, uuid="GPU-new", name="NVIDIA H100"), pb.GpuInventory(index=1, uuid="GPU-x")],
        host_field_ids=[LOAD1],
        gpu_field_ids=[TEMP, UTIL],
    )
    apply(store, writer, store.register(hello, FrameLayout.from_hello(hello)), T0 + 10**9, 50.0)
    body, _ = encode_write_request(queued(writer))
    uuids = [{lab.name: lab.value for lab in ts.labels}.get("uuid") for ts in decode_write_request(body).timeseries]
    assert "GPU-node-a-0" in uuids and "GPU-new" in uuids


def test_backoff_grows_from_the_minimum_and_stays_under_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(30.0, 0.1 * 2.0**attempt)
        delays = [backoff_delay(attempt, 0.1, 30.0, rng) for _ in range(50)]
        assert all(0.1 <= d <= ceiling for d in delays)
    assert max(backoff_delay(10, 0.1, 30.0, rng) for _ in range(50)) > 5  # it really does back off


async def test_retry_after_is_honoured_on_429() -> None:
    receiver = await Receiver([429, 503], retry_after="7").start()
    store = FleetStore()
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    writer = RemoteWriter(
        RemoteWriteConfig(url=receiver.url, flush_interval=0.05, min_backoff=0.01, max_backoff=10.0),
        store,
        CollectorRegistry(),
        directory=Path(tempfile.mkdtemp(prefix="gpulse-rw-")),
        rng=random.Random(1),
        sleep=sleep,
    )
    writer.start()
    apply(store, writer, host(store), T0, 40.0)
    await until(lambda: len(receiver.requests) == 3)
    await writer.shutdown()
    await receiver.stop()
    assert delays[0] == 7  # Retry-After, within max_backoff
    assert 0.01 <= delays[1] <= 0.02  # then plain backoff, attempt 1


def test_xid_and_lost_events_are_sent_at_their_own_time_with_bounded_codes() -> None:
    store = FleetStore()
    writer = writer_for("http://127.0.0.1:9/api/v1/write", store, external_labels={"cluster": "c"})
    record = host(store)
    for code, at in ((79, T0), (79, T0 + 10**9), (123_456, T0 + 2 * 10**9)):
        event = pb.Event(unix_ns=at, xid=pb.XidEvent(gpu_index=1, xid=code, count=1))
        store.record_xid(record, 1, code, 1)  # what the server does before telling observers
        writer.event_applied(record, event)
    store.mark_lost(record, 0)
    writer.event_applied(record, pb.Event(unix_ns=T0 + 3 * 10**9, gpu_lost=pb.GpuLostEvent(gpu_index=0)))
    writer.event_applied(record, pb.Event(unix_ns=T0, xid=pb.XidEvent(gpu_index=9, xid=13)))  # no such GPU
    body, count = encode_write_request(queued(writer))
    got = [
        ({lab.name: lab.value for lab in ts.labels}, s.timestamp, s.value)
        for ts in decode_write_request(body).timeseries
        for s in ts.samples
    ]
    assert count == 4
    ms = T0 // 10**6
    assert [(lab["__name__"], lab.get("xid"), t, v) for lab, t, v in got] == [
        ("gpulse_gpu_xid_errors_total", "79", ms, 1),
        ("gpulse_gpu_xid_errors_total", "79", ms + 1000, 2),
        ("gpulse_gpu_xid_errors_total", "other", ms + 2000, 1),
        ("gpulse_gpu_lost", None, ms + 3000, 1),
    ]
    assert all(lab["cluster"] == "c" and lab["host"] == "node-a" for lab, _, _ in got)


async def test_oldest_pending_is_the_oldest_unsent_frame_while_the_receiver_is_down() -> None:
    store = FleetStore()
    writer = writer_for("http://127.0.0.1:9/api/v1/write", store)  # nothing listens: every send fails
    writer.start()
    record = host(store)

    def registry_value() -> float:
        return float(writer.metrics.oldest_pending.collect()[0].samples[0].value)

    assert registry_value() == 0
    for i in range(3):
        apply(store, writer, record, T0 + i * 10**9, 40.0)
    await until(lambda: writer.metrics.requests.labels("error")._value.get() >= 2)
    # The batch in flight is still pending: the gauge stays at the oldest frame while the queue grows.
    for i in range(3, 6):
        apply(store, writer, record, T0 + i * 10**9, 40.0)
    assert registry_value() == T0 / 1e9
    assert writer.metrics.pending.collect()[0].samples[0].value == 6 * 3
    await writer.shutdown(grace=0.1)
