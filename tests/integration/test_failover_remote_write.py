"""Failover between two collectors: both send the frames of the overlap, and they are the same
samples at the same timestamps; a receiver never sees two values for one timestamp."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from collector.exporters.remote_write import decode_write_request
from tests.kit import Collector, Pki, Service, collector_config, metric_value, start_agent, wait_for

Key = tuple[tuple[tuple[str, str], ...], int]


class RecordingReceiver:
    """Remote write on 127.0.0.1 that keeps every sample of every request, in the order received."""

    def __init__(self) -> None:
        self.samples: dict[Key, list[float]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = decode_write_request(body)
                with receiver.lock:
                    for series in request.timeseries:
                        labels = tuple(sorted((lab.name, lab.value) for lab in series.labels))
                        for sample in series.samples:
                            receiver.samples.setdefault((labels, sample.timestamp), []).append(sample.value)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    held = RecordingReceiver()
    yield held
    held.server.shutdown()


def test_both_collectors_send_the_overlap_as_the_same_samples(
    tmp: Path, test_pki: Pki, services: list[Service], receiver: RecordingReceiver
) -> None:
    collectors = []
    for side in ("a", "b"):
        (tmp / side).mkdir()
        config, grpc_port, http_port = collector_config(
            tmp / side, test_pki, remote_write={"url": receiver.url, "flush_interval": 0.2}
        )
        c = Collector(
            f"collector-{side}", config, tmp / f"{side}.log", ["collector"], grpc_port=grpc_port, http_port=http_port
        )
        services.append(c.start())
        collectors.append(c.wait_ready())
    agent = start_agent(tmp, test_pki, "node-fo", [c.target for c in collectors])
    services.append(agent)

    def applied(c: Collector) -> float:
        return metric_value(c.metrics(), "gpulse_collector_host_frames_applied_total", host="node-fo") or 0

    # The agent orders its targets by rendezvous hash (agent/placement.py), so either may be its first.
    wait_for(lambda: any(applied(c) >= 6 for c in collectors), what="frames through the agent's first collector")
    first, second = sorted(collectors, key=applied, reverse=True)
    first.signal(signal.SIGSTOP)  # frozen: what it has applied is neither acknowledged nor sent
    try:
        wait_for(lambda: applied(second) >= 4, 30, what="the agent failing over to the second collector")
    finally:
        first.signal(signal.SIGCONT)  # it wakes, applies what was in its socket, and sends it all
    time.sleep(2)
    agent.stop()
    for c in collectors:
        wait_for(lambda c=c: metric_value(c.metrics(), "gpulse_remote_write_pending_samples") == 0, 30)
    uptime = {
        ts: values
        for (labels, ts), values in receiver.samples.items()
        if ("__name__", "gpulse_host_uptime_seconds") in labels
    }
    overlap = [ts for ts, values in uptime.items() if len(values) > 1]
    assert overlap, "no frame went through both collectors: the failover was not exercised"
    # Never two different values for one timestamp, in any series.
    assert all(len(set(values)) == 1 for values in receiver.samples.values())
    # And no frame lost between the two: one sample per agent tick (0.5 s), no gap.
    stamps = sorted(uptime)
    assert all(b - a < 900 for a, b in itertools.pairwise(stamps)), stamps
