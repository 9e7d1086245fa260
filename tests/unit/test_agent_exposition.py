"""The agent's local /metrics: the newest tick under the collector's names, NaN left out."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.exposition import AgentMetrics, serve
from protos import telemetry_pb2 as pb
from protos.fields import CATALOG
from tests.kit import free_port, metric_value

TEMP, ENERGY, LOAD1 = CATALOG.gpu("temperature").id, CATALOG.gpu("energy_consumption").id, CATALOG.host("load1").id


class FakeSampler:
    host_id = "node-x"

    def __init__(self) -> None:
        self.hello: pb.Hello | None = pb.Hello(
            host_id="node-x",
            gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{i}", name="NVIDIA A100", pci_bus_id=f"0:{i}") for i in range(2)],
            host_field_ids=[LOAD1],
            gpu_field_ids=[TEMP, ENERGY],
        )
        self.latest: tuple[int, np.ndarray, np.ndarray] | None = (
            1_800_000_000 * 10**9,
            np.array([0.5]),
            np.array([[55.0, 1000.0], [np.nan, 2000.0]]),
        )
        self.xid_counts = {(1, 79): 2}


def render(source: FakeSampler) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentMetrics(source))
    return generate_latest(registry).decode()


def test_series_match_the_collectors_names_and_labels() -> None:
    text = render(FakeSampler())
    labels = {"host": "node-x", "gpu": "0", "uuid": "GPU-0", "model": "NVIDIA A100"}
    assert metric_value(text, "gpulse_gpu_temperature_celsius", **labels) == 55.0
    assert metric_value(text, "gpulse_gpu_energy_consumption_joules_total", **labels) == 1000.0
    assert metric_value(text, "gpulse_host_load1", host="node-x") == 0.5
    assert metric_value(text, "gpulse_gpu_xid_errors_total", gpu="1", xid="79") == 2
    assert metric_value(text, "gpulse_agent_last_sample_timestamp_seconds", host="node-x") == 1.8e9
    assert 'gpulse_gpu_temperature_celsius{gpu="1"' not in text  # NaN: not read, no series


def test_nothing_before_the_first_tick() -> None:
    source = FakeSampler()
    source.latest = None
    assert "gpulse_gpu_" not in render(source)


def test_served_over_http_and_stopped() -> None:
    port = free_port()
    stop = serve(FakeSampler(), f"127.0.0.1:{port}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert metric_value(body, "gpulse_gpu_temperature_celsius", gpu="0") == 55.0
    finally:
        stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_the_spools_drops_and_damage_are_counted_on_the_agent_too(tmp_path: Path) -> None:
    from agent.spool.disk import DiskSpool, DiskSpoolConfig

    source = FakeSampler()
    spool = DiskSpool(tmp_path, DiskSpoolConfig(max_bytes=65536, segment_bytes=4096))
    try:
        spool.open_epoch(pb.Hello(host_id="node-x", boot_id="boot-a", protocol_version=1))
        for _ in range(400):
            spool.append(pb.AgentMessage(batch=pb.Batch(frames=[pb.Frame(unix_ns=1, values=[1.0] * 64)])))
        source.spool = spool  # type: ignore[attr-defined]
        text = render(source)
    finally:
        spool.close()
    assert metric_value(text, "gpulse_agent_spool_appended_records_total", host="node-x") == 400
    dropped = metric_value(text, "gpulse_agent_spool_dropped_records_total", host="node-x")
    assert dropped is not None and dropped == spool.stats.dropped_records > 0
