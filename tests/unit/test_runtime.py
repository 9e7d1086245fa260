"""The service lifecycle: watchdog heartbeats from the main loop, and reloads that fail safely."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from runtime.lifecycle import Lifecycle
from runtime.sdnotify import Notifier


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def listener(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def notifier_for(sock: socket.socket, watchdog_usec: int = 10_000_000) -> Notifier:
    env = {"NOTIFY_SOCKET": sock.getsockname(), "WATCHDOG_USEC": str(watchdog_usec), "WATCHDOG_PID": str(os.getpid())}
    return Notifier(env, monotonic_us=lambda: 42)


async def test_heartbeat_pings_the_watchdog_at_most_every_quarter_timeout(listener: socket.socket) -> None:
    clock = Clock()
    lifecycle = Lifecycle(notifier_for(listener), clock=clock, status_interval=100.0)
    lifecycle.heartbeat()
    clock.now = 1.0
    lifecycle.heartbeat()  # too soon for another ping
    clock.now = 2.6
    lifecycle.heartbeat()
    assert drain(listener) == ["WATCHDOG=1", "WATCHDOG=1"]
    assert lifecycle.ping_interval <= 1.0


async def test_a_loop_that_stops_calling_heartbeat_stops_the_pings(listener: socket.socket) -> None:
    clock = Clock()
    lifecycle = Lifecycle(notifier_for(listener), clock=clock)
    lifecycle.heartbeat()
    clock.now = 60.0  # the loop hung: no heartbeat call, so nothing is sent and systemd will restart us
    assert drain(listener) == ["WATCHDOG=1"]


async def test_heartbeat_refreshes_status_now_and_then(listener: socket.socket) -> None:
    clock = Clock()
    lifecycle = Lifecycle(notifier_for(listener, 0), clock=clock, status_interval=10.0)
    lifecycle.ready("starting")
    lifecycle.heartbeat(lambda: "3 agents")
    clock.now = 11.0
    lifecycle.heartbeat(lambda: "4 agents")
    assert drain(listener) == ["READY=1\nSTATUS=starting", "STATUS=4 agents"]


async def test_reload_sends_reloading_then_ready_with_the_summary(listener: socket.socket) -> None:
    lifecycle = Lifecycle(notifier_for(listener, 0))

    async def hook() -> str:
        return "3 rules"

    lifecycle.on_reload(hook)
    assert await lifecycle.reload()
    assert drain(listener) == ["RELOADING=1\nMONOTONIC_USEC=42", "READY=1\nSTATUS=3 rules"]


async def test_a_failed_reload_keeps_running_and_says_why(listener: socket.socket) -> None:
    lifecycle = Lifecycle(notifier_for(listener, 0))
    applied = []

    async def bad() -> str:
        raise ValueError("/etc/gpulse/agent.toml: interval: must be greater than 0")

    async def good() -> str:
        applied.append(True)
        return "ok"

    lifecycle.on_reload(bad)
    lifecycle.on_reload(good)
    assert not await lifecycle.reload()
    assert applied == [True]
    assert lifecycle.reload_failures == 1
    messages = drain(listener)
    assert messages[-1].startswith("READY=1\nSTATUS=reload failed: /etc/gpulse/agent.toml: interval")
