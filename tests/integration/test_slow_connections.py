"""3,000 slow connections spread over every port: /metrics keeps answering, the stream keeps flowing,
and the agent's memory grows by at most 10 MB."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

from tests.kit import Pki, Service, free_port, http_get, metric_value, start_agent, start_collector, wait_for

SLOW_PER_PORT = 1000
HOLD_S = 12.0  # past the 10 s header deadline, so the first slow wave is dropped and replaced


@contextlib.contextmanager
def many_files(needed: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, needed)), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def slow_connections(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    """Connections that send the start of a request and then nothing, as a slowloris client does."""
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        held.append(sock)
    time.sleep(0.5)
    for sock in held:
        with contextlib.suppress(OSError):
            sock.send(first_bytes)
    return held


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_slow_connections_on_every_port_starve_nothing(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    with many_files(4 * SLOW_PER_PORT + 1024):
        collector = start_collector(tmp, test_pki)
        services.append(collector)
        metrics_port = free_port()
        metrics = {"listen": f"127.0.0.1:{metrics_port}"}
        agent = start_agent(tmp, test_pki, "node-slow", [collector.target], metrics=metrics)
        services.append(agent)
        agent_url = f"http://127.0.0.1:{metrics_port}/metrics"

        def frames() -> float:
            return metric_value(collector.metrics(), "gpulse_collector_frames_applied_total") or 0.0

        wait_for(lambda: frames() > 0, what="frames from the agent")
        wait_for(lambda: "gpulse_gpu_temperature_celsius" in scrape(agent_url), what="the agent's /metrics")
        assert agent.process is not None
        process = psutil.Process(agent.process.pid)
        before = process.memory_info().rss
        held: list[socket.socket] = []
        try:
            held += slow_connections(metrics_port, SLOW_PER_PORT, b"GET /metrics HTTP/1.1\r\n")
            held += slow_connections(collector.http_port, SLOW_PER_PORT, b"GET /api/v1/fleet HTTP/1.1\r\n")
            held += slow_connections(collector.grpc_port, SLOW_PER_PORT, b"\x16\x03\x01")
            started, applied, slowest = time.monotonic(), frames(), 0.0
            peak = before
            while time.monotonic() - started < HOLD_S:
                asked = time.monotonic()
                assert "gpulse_gpu_temperature_celsius" in scrape(agent_url)
                assert "gpulse_collector_frames_applied_total" in http_get(collector.url("/metrics"))
                slowest = max(slowest, time.monotonic() - asked)
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.5)
            assert frames() > applied, "the stream stopped flowing under slow connections"
        finally:
            for sock in held:
                sock.close()
        grown = (peak - before) / 1e6
        assert grown <= 10.0, f"the agent grew by {grown:.1f} MB"
        assert slowest < 5.0
        assert process.num_threads() < 50
        refused = collector.metrics()
        dropped = sum(
            metric_value(refused, "gpulse_collector_http_refused_total", reason=r) or 0
            for r in ("header_timeout", "max_connections")
        )
        assert dropped >= SLOW_PER_PORT - 512, "the collector's HTTP port did not drop its slow connections"
