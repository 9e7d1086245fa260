"""The chaos run of issue 16, against the real Prometheus: 3 agents, the collector SIGKILLed 4 times
(once right after a backlog replay), an agent SIGKILLed twice, a 70 s black-hole partition; every
sample the agents produced is in Prometheus's storage, once, at its agent timestamp.

Return times (collector restart -> every agent streaming; partition healed -> every agent
streaming) are printed as one JSON line for BENCHMARKS.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.prometheus_kit import Prometheus, start_prometheus
from tests.kit import (
    Collector,
    Pki,
    Service,
    collector_config,
    free_port,
    metric_value,
    start_agent,
    wait_for,
)
from tests.proxy import BlackHoleProxy

pytestmark = [pytest.mark.e2e, pytest.mark.long]

HOSTS = ("chaos-1", "chaos-2", "chaos-3")
SERIES = "gpulse_host_uptime_seconds"  # a host field read on every tick: one sample per frame


@pytest.fixture
def prometheus_holder() -> Iterator[list[Prometheus]]:
    held: list[Prometheus] = []
    yield held
    for prometheus in held:
        prometheus.stop()


def applied(collector: Collector) -> dict[str, float]:
    text = collector.metrics()
    return {h: metric_value(text, "gpulse_collector_host_frames_applied_total", host=h) or 0 for h in HOSTS}


def stopping(agent: Service) -> tuple[bool, int]:
    """(drained, acknowledged seq) from the agent's own last log line."""
    for line in reversed(agent.log().splitlines()):
        if '"agent stopping"' in line:
            entry = json.loads(line)
            return bool(entry["drained"]), int(entry["acked"])
    raise AssertionError(f"{agent.name} did not log its stop")


def until_all_stream(collector: Collector, since: dict[str, float], timeout: float = 30) -> float:
    """Seconds until every host has had a new frame applied beyond ``since``."""
    start = time.monotonic()

    def moved() -> bool:
        now = applied(collector)
        return all(now[h] > since[h] for h in HOSTS)

    wait_for(moved, timeout, interval=0.05, what="every agent streaming again")
    return time.monotonic() - start


def test_nothing_lost_or_doubled_through_kills_and_a_partition(
    tmp: Path, test_pki: Pki, services: list[Service], prometheus_holder: list[Prometheus]
) -> None:
    prom_port = free_port()
    remote_write = {
        "url": f"http://127.0.0.1:{prom_port}/api/v1/write",
        "flush_interval": 0.2,
        "min_backoff": 0.05,
        "max_backoff": 1.0,
    }
    prometheus = start_prometheus(
        tmp / "prometheus",
        {"global": {"scrape_interval": "15s"}, "scrape_configs": []},
        "--web.enable-remote-write-receiver",
        port=prom_port,
    )
    prometheus_holder.append(prometheus)
    config, grpc_port, http_port = collector_config(tmp, test_pki, remote_write=remote_write)
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], grpc_port=grpc_port, http_port=http_port
    )
    services.append(collector.start())
    collector.wait_ready()
    proxy = BlackHoleProxy(grpc_port)
    metrics_ports = {h: free_port() for h in HOSTS}

    def agent(host: str) -> Service:
        started = start_agent(
            tmp,
            test_pki,
            host,
            [proxy.target],
            metrics={"listen": f"127.0.0.1:{metrics_ports[host]}"},
            backoff={},  # the shipped defaults
        )
        services.append(started)
        return started

    agents = {h: agent(h) for h in HOSTS}
    restarts: list[float] = []
    start_ms = time.time() * 1000

    def restart_collector() -> None:
        collector.start().wait_ready()
        ready = time.monotonic()
        before = applied(collector)  # restored from its progress database
        until_all_stream(collector, before)
        restarts.append(time.monotonic() - ready)

    def kill_and_restart_collector(down: float) -> None:
        collector.kill()
        time.sleep(down)
        restart_collector()

    until_all_stream(collector, dict.fromkeys(HOSTS, 0.0))
    time.sleep(3)
    kill_and_restart_collector(down=2)  # 1
    agents["chaos-1"].kill()  # agent kill 1: what it spooled and had not shipped waits on its disk
    time.sleep(1)
    agents["chaos-1"] = agent("chaos-1")
    time.sleep(3)
    # 2, then 3 right after the backlog replay: the restarted collector dies as soon as every agent
    # has had frames of its 8 s backlog applied, before it has sent them on.
    collector.kill()
    time.sleep(8)
    restart_collector()
    kill_and_restart_collector(down=1)  # 3
    time.sleep(2)
    proxy.partition()
    time.sleep(30)
    agents["chaos-1"].kill()  # agent kill 2, mid-partition
    agents["chaos-1"] = agent("chaos-1")
    time.sleep(40)
    before = applied(collector)
    proxy.heal()
    healed = until_all_stream(collector, before)
    time.sleep(3)
    kill_and_restart_collector(down=2)  # 4
    time.sleep(3)

    # Settle: agents drained, the collector's queue empty, then compare.
    for host in HOSTS:
        agents[host].stop()  # graceful: everything spooled is acknowledged first
    produced = {h: stopping(agents[h]) for h in ("chaos-2", "chaos-3")}

    def settled() -> bool:
        text = collector.metrics()
        return metric_value(text, "gpulse_remote_write_pending_samples") == 0

    wait_for(settled, 60, interval=0.5, what="the remote write queue drained")
    text = collector.metrics()
    counts = applied(collector)
    window = f"[{int((time.time() * 1000 - start_ms) / 1000) + 60}s]"
    for host in HOSTS:
        result = prometheus.query(f'{SERIES}{{host="{host}"}}{window}')
        stamps = [float(t) for series in result for t, _ in series["values"]]
        # 0 lost, 0 doubled: exactly the frames the collector applied (its counts survive restarts
        # and roll back with what was not acknowledged), each once, in order.
        assert len(stamps) == counts[host], (host, len(stamps), counts[host])
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for host, (drained, last_seq) in produced.items():
        # Never killed, so one boot: its last sequence number is every record it produced, and the
        # collector applied each exactly once.
        records = metric_value(text, "gpulse_collector_host_records_applied_total", host=host)
        assert drained and records == last_seq, (host, drained, last_seq, records)
    assert metric_value(text, "gpulse_remote_write_samples_dropped_total", reason="queue_full") in (None, 0)
    assert metric_value(text, "gpulse_collector_host_records_dropped_by_agent_total", host="chaos-2") in (None, 0)
    rejected = metric_value(text, "gpulse_remote_write_samples_dropped_total", reason="rejected") or 0
    print(json.dumps({"restart_return_s": restarts, "partition_return_s": healed, "rejected": rejected}))
    assert max(restarts) < 3.0, restarts
    assert healed < 5.0, healed
