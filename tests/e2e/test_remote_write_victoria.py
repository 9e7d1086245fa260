"""Remote write into the real VictoriaMetrics (single node): every frame the collector applied is
stored once at its agent timestamp, through a collector SIGKILL and a receiver that starts late."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.victoria_kit import VictoriaMetrics, start_victoria_metrics
from tests.kit import Collector, Pki, Service, collector_config, free_port, metric_value, start_agent, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def victoria_holder() -> Iterator[list[VictoriaMetrics]]:
    held: list[VictoriaMetrics] = []
    yield held
    for vm in held:
        vm.stop()


def test_samples_arrive_complete_at_agent_timestamps_through_a_collector_kill(
    tmp: Path, test_pki: Pki, services: list[Service], victoria_holder: list[VictoriaMetrics]
) -> None:
    port = free_port()
    remote_write = {"url": f"http://127.0.0.1:{port}/api/v1/write", "flush_interval": 0.2, "max_backoff": 0.5}
    config, grpc_port, http_port = collector_config(tmp, test_pki, remote_write=remote_write)
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], grpc_port=grpc_port, http_port=http_port
    )
    services.append(collector.start())
    collector.wait_ready()
    agent = start_agent(tmp, test_pki, "node-vm", [collector.target])
    services.append(agent)

    def applied() -> float:
        return metric_value(collector.metrics(), "gpulse_collector_host_frames_applied_total", host="node-vm") or 0

    wait_for(lambda: applied() >= 6, what="frames applied while the receiver is not up yet")
    collector.kill()  # frames acknowledged but never sent: they must survive in the queue on disk
    time.sleep(1.5)
    collector.start().wait_ready()
    victoria_holder.append(start_victoria_metrics(tmp / "vm", port))
    vm = victoria_holder[0]
    wait_for(lambda: applied() >= 16, what="more frames after the restart")
    agent.stop()
    wait_for(lambda: metric_value(collector.metrics(), "gpulse_remote_write_pending_samples") == 0, 30)
    expected = int(applied())
    newest = metric_value(collector.metrics(), "gpulse_host_last_frame_timestamp_seconds", host="node-vm")
    assert newest is not None

    def stored() -> list[tuple[int, float]] | None:
        samples = vm.export('gpulse_host_uptime_seconds{host="node-vm"}')
        return samples if len(samples) >= expected else None

    samples = wait_for(stored, 30, interval=0.5, what="every applied frame in VictoriaMetrics")
    stamps = [t for t, _ in samples]
    assert len(stamps) == expected and len(set(stamps)) == expected  # complete, none twice
    # At the agent's own timestamp: /metrics prints it in seconds, rounded, so within a millisecond.
    assert min(abs(t - newest * 1000) for t in stamps) <= 1, (newest, stamps[-3:])
    text = collector.metrics()
    assert metric_value(text, "gpulse_remote_write_samples_dropped_total", reason="rejected") in (None, 0)
