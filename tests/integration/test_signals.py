"""Under a real NOTIFY_SOCKET, as systemd runs them: READY/STATUS/WATCHDOG, SIGHUP reloads without
dropping streams, SIGTERM sends STOPPING, flushes and exits cleanly well within TimeoutStopSec."""

from __future__ import annotations

import signal
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import streams
from tests.kit import Collector, Pki, Service, agent_config, collector_config, free_port, wait_for, write_toml

TIMEOUT_STOP_SEC = 20.0  # systemd/gpulse-agent.service


class NotifyListener:
    """The service manager's end of the notify protocol."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))

    def seen(self, key: str, value: str = "1") -> int:
        return sum(1 for m in self.poll() if m.get(key) == value)

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": "2000000"}


@pytest.fixture
def listeners(tmp: Path) -> Iterator[list[NotifyListener]]:
    made: list[NotifyListener] = []
    yield made
    for listener in made:
        listener.sock.close()


def test_notify_reload_and_clean_stop(
    tmp: Path, test_pki: Pki, services: list[Service], listeners: list[NotifyListener]
) -> None:
    c_notify, a_notify = NotifyListener(tmp / "c.sock"), NotifyListener(tmp / "a.sock")
    listeners += [c_notify, a_notify]
    config, grpc_port, http_port = collector_config(tmp, test_pki)
    collector = Collector(
        "collector",
        config,
        tmp / "collector.log",
        ["collector"],
        env=c_notify.env(),
        grpc_port=grpc_port,
        http_port=http_port,
    )
    services.append(collector.start().wait_ready())
    agent = Service(
        "agent",
        agent_config(tmp, test_pki, "gpu-sig", [collector.target]),
        tmp / "agent.log",
        ["agent"],
        env=a_notify.env(),
    )
    services.append(agent.start())

    wait_for(lambda: c_notify.seen("READY") == 1 and a_notify.seen("READY") == 1, 20, what="READY=1 from both")
    wait_for(lambda: 'host="gpu-sig"' in collector.metrics(), 20, what="agent streaming")
    # The watchdog is pinged from the main loops, repeatedly.
    wait_for(lambda: c_notify.seen("WATCHDOG") >= 3 and a_notify.seen("WATCHDOG") >= 3, 20, what="watchdog pings")

    # SIGHUP: both reload, say so, and the stream between them stays up.
    data = tomllib.loads(config.read_text())
    write_toml(config, {**data, "log": {"level": "debug"}, "limits": {"max_series_per_host": 3}})
    collector.signal(signal.SIGHUP)
    agent.signal(signal.SIGHUP)
    wait_for(lambda: c_notify.seen("RELOADING") == 1 and a_notify.seen("RELOADING") == 1, 20, what="RELOADING=1")
    wait_for(lambda: c_notify.seen("READY") == 2 and a_notify.seen("READY") == 2, 20, what="READY=1 after reload")
    assert any("config reloaded" in m.get("STATUS", "") for m in c_notify.poll())
    assert any("config reloaded" in m.get("STATUS", "") for m in a_notify.poll())
    assert collector.running and agent.running
    assert collector.log().count('"agent connected"') == 1, "reload must not drop the stream"
    # The reloaded limits apply to new streams at once.
    cert, key = test_pki.agent("gpu-wide")
    wide = streams.exchange(collector.target, streams.credentials(test_pki.ca, cert, key), [streams.hello("gpu-wide")])
    assert wide.code.name == "RESOURCE_EXHAUSTED" and "at most 3 per host" in wide.details, wide

    # A broken config on reload: the old one stays, the service keeps running, STATUS says why.
    write_toml(config, {"tls": {"ca": "/nonexistent"}, "bogus": 1})
    collector.signal(signal.SIGHUP)
    wait_for(lambda: any("reload failed" in m.get("STATUS", "") for m in c_notify.poll()), 20, what="failed reload")
    assert collector.running and 'host="gpu-sig"' in collector.metrics()

    # SIGTERM: STOPPING=1, the spool is flushed to the collector, exit 0 well inside TimeoutStopSec.
    started = time.monotonic()
    assert agent.stop(timeout=TIMEOUT_STOP_SEC) == 0
    assert time.monotonic() - started < TIMEOUT_STOP_SEC
    assert a_notify.seen("STOPPING") == 1
    assert '"drained": true' in agent.log(), agent.log()[-2000:]
    assert collector.stop(timeout=TIMEOUT_STOP_SEC) == 0
    assert c_notify.seen("STOPPING") == 1


def test_sigterm_with_no_collector_stops_at_once_and_keeps_the_spool(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: the data stays spooled
    config = agent_config(tmp, test_pki, "gpu-alone", [dead])
    agent = Service("agent", config, tmp / "agent.log", ["agent"])
    services.append(agent.start())
    spool = tmp / "agent-gpu-alone" / "spool"
    wait_for(lambda: spool.exists() and any(p.stat().st_size for p in spool.rglob("*") if p.is_file()), 20)
    started = time.monotonic()
    assert agent.stop(timeout=TIMEOUT_STOP_SEC) == 0
    assert time.monotonic() - started < TIMEOUT_STOP_SEC
    assert any(p.stat().st_size for p in spool.rglob("*") if p.is_file()), "spooled data must survive the stop"
