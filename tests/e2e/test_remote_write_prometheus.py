"""Remote write into the real Prometheus: series, labels, and the agents' own timestamps, even for
samples queued while the receiver was down."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.prometheus_kit import Prometheus, start_prometheus
from tests.kit import Collector, Pki, Service, collector_config, free_port, metric_value, start_agent, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def prometheus_holder() -> Iterator[list[Prometheus]]:
    held: list[Prometheus] = []
    yield held
    for prometheus in held:
        prometheus.stop()


def test_backfilled_samples_keep_their_timestamps(
    tmp: Path, test_pki: Pki, services: list[Service], prometheus_holder: list[Prometheus]
) -> None:
    port = free_port()
    remote_write = {
        "url": f"http://127.0.0.1:{port}/api/v1/write",
        "flush_interval": 0.2,
        "min_backoff": 0.05,
        "max_backoff": 0.5,
    }
    config, grpc_port, http_port = collector_config(tmp, test_pki, remote_write=remote_write)
    with config.open("a") as fh:  # a nested table, which the kit's TOML writer does not do
        fh.write('[remote_write.external_labels]\ncluster = "e2e"\n')
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], grpc_port=grpc_port, http_port=http_port
    )
    # First partition: agent to collector. The agent samples and spools while no collector is up.
    faults = [{"kind": "xid", "gpu": 1, "at": 0.5, "xid": 48}]
    agent = start_agent(tmp, test_pki, "node-rw", [collector.target], sim={"count": 2, "faults": faults})
    services.append(agent)
    time.sleep(2.0)
    collector_started_ms = time.time() * 1000
    services.append(collector.start())
    collector.wait_ready()

    # Second partition: collector to receiver. Prometheus is down: frames queue, the writer retries.
    def queued_while_down() -> bool:
        text = collector.metrics()
        errors = metric_value(text, "gpulse_remote_write_requests_total", status="error") or 0
        return errors >= 2 and (metric_value(text, "gpulse_remote_write_pending_samples") or 0) > 0

    wait_for(queued_while_down, what="remote write failing while the receiver is down")
    receiver_started_ms = time.time() * 1000
    prometheus = start_prometheus(
        tmp / "prometheus",
        {"global": {"scrape_interval": "15s"}, "scrape_configs": []},
        "--web.enable-remote-write-receiver",
        port=port,
    )
    prometheus_holder.append(prometheus)

    def both_gpus() -> list[dict[str, object]] | None:
        result = prometheus.query('gpulse_gpu_temperature_celsius{host="node-rw"}')
        return result if len(result) == 2 else None

    series = wait_for(both_gpus, 30, what="remote-written GPU series in Prometheus")
    labels = series[0]["metric"]
    assert set(labels) == {"__name__", "host", "gpu", "uuid", "model", "cluster"}
    assert labels["cluster"] == "e2e" and labels["model"] == "NVIDIA H100 80GB HBM3"

    # The collector's newest frame time, to the millisecond, must be a sample time in Prometheus.
    def newest_frame_stored() -> bool:
        newest = metric_value(collector.metrics(), "gpulse_host_last_frame_timestamp_seconds", host="node-rw")
        assert newest is not None
        wait_for(lambda: not metric_value(collector.metrics(), "gpulse_remote_write_pending_samples"), 15)
        window = prometheus.query('gpulse_host_uptime_seconds{host="node-rw"}[10m]')
        stamps = {round(float(t) * 1000) for t, _ in window[0]["values"]}
        return round(newest * 1000) in stamps

    wait_for(newest_frame_stored, 30, interval=0.5, what="the newest frame's own timestamp in Prometheus")
    window = prometheus.query('gpulse_host_uptime_seconds{host="node-rw"}[10m]')[0]["values"]
    stamps = [float(t) * 1000 for t, _ in window]
    # Samples that waited out either partition kept their agent times: the oldest predate even
    # the collector's start, and everything queued predates the receiver's.
    assert stamps[0] < collector_started_ms - 1000, (stamps[0], collector_started_ms)
    assert stamps[0] < receiver_started_ms - 500, (stamps[0], receiver_started_ms)
    # One sample per agent tick (0.5 s), in order, no duplicates and no gap from either outage.
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps and all(300 <= g <= 1500 for g in gaps), gaps
    # Events travel too: the XID injected during the first partition, at its agent time.
    xid = prometheus.query('gpulse_gpu_xid_errors_total{host="node-rw", gpu="1", xid="48"}[10m]')
    assert xid and float(xid[0]["values"][0][1]) >= 1, xid
    assert float(xid[0]["values"][0][0]) * 1000 < collector_started_ms
    text = collector.metrics()
    assert metric_value(text, "gpulse_remote_write_samples_dropped_total", reason="rejected") in (None, 0)
