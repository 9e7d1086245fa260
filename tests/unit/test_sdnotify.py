"""The notify protocol, spoken to a real AF_UNIX datagram socket as systemd would listen on it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_status_reloading_stopping_reach_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path}, monotonic_us=lambda: 123456)
    assert notifier.ready("2 agents connected")
    assert received(sock) == {"READY": "1", "STATUS": "2 agents connected"}
    assert notifier.status("draining")
    assert received(sock) == {"STATUS": "draining"}
    assert notifier.reloading()
    assert received(sock) == {"RELOADING": "1", "MONOTONIC_USEC": "123456"}
    assert notifier.stopping()
    assert received(sock) == {"STOPPING": "1"}


def test_watchdog_pings_only_when_systemd_asked_for_them(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    assert notifier.watchdog_interval == 15.0
    assert notifier.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    assert Notifier({"NOTIFY_SOCKET": path}).watchdog() is False
    # WATCHDOG_PID names another process (e.g. a wrapper): its pings are not ours to send.
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None


def test_abstract_namespace_socket() -> None:
    name = f"gpulse-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == {"READY": "1"}


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False
    assert notifier.failures == 1
