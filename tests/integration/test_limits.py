"""Limits against an agent that is authenticated but broken or hostile: each refusal has a clear status
code and is counted, and the collector goes on serving everyone else."""

from __future__ import annotations

from pathlib import Path

from protos import telemetry_pb2 as pb
from tests import streams
from tests.kit import Collector, Pki, Service, metric_value, start_collector


def refused(collector: Collector, reason: str) -> float:
    return metric_value(collector.metrics(), "gpulse_collector_streams_refused_total", reason=reason) or 0.0


def send(collector: Collector, kit: Pki, host: str, messages: list[pb.AgentMessage]) -> streams.Outcome:
    cert, key = kit.agent(host)
    return streams.exchange(collector.target, streams.credentials(kit.ca, cert, key), messages, timeout=10)


def test_message_size_rate_series_and_host_caps(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    limits = {
        "max_message_bytes": 65536,
        "records_per_second": 1.0,
        "records_burst": 5.0,
        "max_series_per_host": 10,
        "max_hosts": 2,
    }
    collector = start_collector(tmp, test_pki, limits=limits)
    services.append(collector)

    huge = pb.AgentMessage(seq=1, batch=pb.Batch(frames=[pb.Frame(unix_ns=1, values=[0.0] * 20_000)]))
    outcome = send(collector, test_pki, "lim-big", [streams.hello("lim-big"), huge])
    assert outcome.code.name == "RESOURCE_EXHAUSTED", outcome
    assert refused(collector, "message_too_large") == 1

    burst = [streams.frame_message(seq) for seq in range(1, 30)]
    outcome = send(collector, test_pki, "lim-fast", [streams.hello("lim-fast"), *burst])
    assert outcome.code.name == "RESOURCE_EXHAUSTED" and "records/s" in outcome.details, outcome
    assert refused(collector, "rate_limited") == 1

    outcome = send(collector, test_pki, "lim-wide", [streams.hello("lim-wide", gpus=3)])  # 2 + 3 x 3 = 11 series
    assert outcome.code.name == "RESOURCE_EXHAUSTED" and "11 series" in outcome.details, outcome
    assert refused(collector, "too_many_series") == 1

    outcome = send(collector, test_pki, "lim-third", [streams.hello("lim-third")])  # two hosts already held
    assert outcome.code.name == "RESOURCE_EXHAUSTED" and "not admitted" in outcome.details, outcome
    assert refused(collector, "too_many_hosts") == 1

    # A host already admitted still streams, within its rate.
    outcome = send(collector, test_pki, "lim-big", [streams.hello("lim-big"), streams.frame_message(1)])
    assert outcome.welcomed and outcome.acked >= 1 and outcome.code.name == "OK", outcome
    assert collector.running
