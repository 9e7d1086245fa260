"""Malformed and hostile frames thrown at a real collector over gRPC, from an authenticated agent, while
a good agent keeps streaming: the collector must not crash, and the good stream must not notice."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos import telemetry_pb2 as pb
from tests import streams
from tests.kit import Collector, Pki, Service, metric_value, start_agent, start_collector, wait_for

HOST = "fuzz-host"
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
doubles = st.floats(allow_nan=True, allow_infinity=True)
text = st.text(max_size=64)

frames = st.builds(pb.Frame, unix_ns=i64, values=st.lists(doubles, max_size=64))
events = st.one_of(
    st.builds(pb.Event, unix_ns=i64, xid=st.builds(pb.XidEvent, gpu_index=u32, xid=u32, count=u32, message=text)),
    st.builds(pb.Event, unix_ns=i64, gpu_lost=st.builds(pb.GpuLostEvent, gpu_index=u32, reason=text)),
    st.builds(
        pb.Event,
        unix_ns=i64,
        workload=st.builds(
            pb.WorkloadEvent,
            gpu_index=u32,
            processes=st.lists(st.builds(pb.GpuProcess, pid=u32, name=text), max_size=8),
        ),
    ),
    st.builds(pb.Event, unix_ns=i64),
)
bodies = st.one_of(
    st.builds(
        lambda seq, f: pb.AgentMessage(seq=seq, batch=pb.Batch(frames=f)), i64.map(abs), st.lists(frames, max_size=4)
    ),
    st.builds(lambda seq, e: pb.AgentMessage(seq=seq, event=e), i64.map(abs), events),
    st.builds(lambda h: pb.AgentMessage(seq=1, hello=h), st.just(streams.hello_body(HOST))),  # a second hello
)
hostile_hellos = st.one_of(
    st.builds(lambda: streams.hello(HOST)),
    st.builds(lambda g: streams.hello(HOST, gpus=g), st.integers(0, 80)),
    st.builds(
        lambda h: pb.AgentMessage(hello=h),
        st.builds(
            pb.Hello,
            host_id=st.sampled_from([HOST, "good-host", ""]),
            boot_id=text,
            protocol_version=u32,
            host_field_ids=st.lists(u32, max_size=8),
            gpu_field_ids=st.lists(u32, max_size=8),
        ),
    ),
)
# Each stream: raw bytes (anything, including corrupt protobuf), a valid stream with bytes flipped,
# or a hello followed by hostile records.
raw_stream = st.lists(st.binary(max_size=512), min_size=1, max_size=4)


def _flip(payload: bytes, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(payload)
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data)


_valid = [streams.hello(HOST).SerializeToString(), streams.frame_message(1).SerializeToString()]
mutated_stream = st.builds(
    lambda hello_flips, frame_flips: [_flip(_valid[0], hello_flips), _flip(_valid[1], frame_flips)],
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
record_stream = st.builds(
    lambda h, rest: [h.SerializeToString(), *(m.SerializeToString() for m in rest)],
    hostile_hellos,
    st.lists(bodies, max_size=8),
)


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory, test_pki: Pki) -> Iterator[tuple[Collector, Service, Pki]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    collector = start_collector(tmp, test_pki)
    good = start_agent(tmp, test_pki, "good-host", [collector.target])
    try:
        wait_for(lambda: 'host="good-host"' in collector.metrics(), 20, what="good agent streaming")
        yield collector, good, test_pki
    finally:
        good.kill()
        collector.kill()


def throw(collector: Collector, kit: Pki, payloads: list[bytes]) -> None:
    cert, key = kit.agent(HOST)
    creds = streams.credentials(kit.ca, cert, key)
    with grpc.secure_channel(collector.target, creds, options=[("grpc.ssl_target_name_override", "collector")]) as ch:
        call = ch.stream_stream(
            "/gpulse.v1.Telemetry/Stream",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.CollectorMessage.FromString,
        )
        try:
            for _ in call(iter(payloads), timeout=5):
                pass
        except grpc.RpcError as exc:
            # Refusals are expected; the collector must never fail with an unhandled error.
            assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), exc.details()


@settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.one_of(raw_stream, mutated_stream, record_stream))
def test_hostile_streams_do_not_crash_or_disturb(arena: tuple[Collector, Service, Pki], payloads: list[bytes]) -> None:
    collector, _, kit = arena
    throw(collector, kit, payloads)
    assert collector.running


def test_the_good_agent_was_never_disturbed(arena: tuple[Collector, Service, Pki]) -> None:
    collector, good, _ = arena
    applied = metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0
    wait_for(
        lambda: (metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0) > applied,
        10,
        what="frames still applied after the fuzzing",
    )
    log = collector.log()
    assert log.count('"host_id": "good-host", "boot_id"') == 1, "the good agent's stream was never dropped"
    assert "Unexpected" not in log and "Traceback" not in log, "an error escaped the servicer"
    assert "collector stream failed" not in good.log()
    assert collector.running and good.running
