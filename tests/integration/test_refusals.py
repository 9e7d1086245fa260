"""Streams that must be refused, while the collector keeps serving a good agent meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from protos.fields import CATALOG
from tests.kit import Collector, Pki, Service, metric_value, start_agent, start_collector, wait_for

OPTIONS = [("grpc.ssl_target_name_override", "collector")]


@pytest.fixture
def serving(tmp: Path, test_pki: Pki, services: list[Service]) -> Collector:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    services.append(start_agent(tmp, test_pki, "good-node", [collector.target]))
    wait_for(lambda: metric_value(collector.metrics(), "gpulse_host_up", host="good-node") == 1, what="good agent")
    return collector


def open_stream(channel: grpc.Channel, host_id: str) -> list[pb.CollectorMessage]:
    hello = pb.Hello(
        host_id=host_id,
        boot_id="boot-1",
        protocol_version=1,
        sent_unix_ns=time.time_ns(),
        host_field_ids=CATALOG.host_ids,
    )
    stub = pb_grpc.TelemetryStub(channel)
    return list(stub.Stream(iter([pb.AgentMessage(hello=hello)]), timeout=5))


def assert_good_agent_still_served(collector: Collector) -> None:
    before = metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0
    wait_for(
        lambda: (metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0) > before + 1,
        what="frames from the good agent to keep arriving",
    )
    assert metric_value(collector.metrics(), "gpulse_host_up", host="good-node") == 1


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_client_without_certificate_is_refused(serving: Collector, test_pki: Pki) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=test_pki.ca.read_bytes())
    with grpc.secure_channel(serving.target, creds, options=OPTIONS) as channel:
        error = refused(lambda: open_stream(channel, "intruder"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert_good_agent_still_served(serving)


def test_certificate_from_another_ca_is_refused(serving: Collector, test_pki: Pki, tmp: Path) -> None:
    other = Pki.create(tmp / "other-pki")
    cert, key = other.agent("good-node")  # even claiming a known host's name
    creds = grpc.ssl_channel_credentials(test_pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes())
    with grpc.secure_channel(serving.target, creds, options=OPTIONS) as channel:
        error = refused(lambda: open_stream(channel, "good-node"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert_good_agent_still_served(serving)


def test_valid_certificate_for_another_host_is_refused(serving: Collector, test_pki: Pki) -> None:
    cert, key = test_pki.agent("node-x")
    creds = grpc.ssl_channel_credentials(test_pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes())
    with grpc.secure_channel(serving.target, creds, options=OPTIONS) as channel:
        error = refused(lambda: open_stream(channel, "good-node"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'good-node'" in error.details() and "'node-x'" in error.details()
    text = serving.metrics()
    assert metric_value(text, "gpulse_collector_streams_refused_total", reason="identity_mismatch") == 1
    assert "identity_mismatch" in serving.log()
    assert_good_agent_still_served(serving)


def test_plaintext_is_refused(serving: Collector) -> None:
    with grpc.insecure_channel(serving.target) as channel:
        error = refused(lambda: open_stream(channel, "good-node"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert_good_agent_still_served(serving)
