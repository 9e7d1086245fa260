"""The agent's main loop pings the watchdog while it runs, and stops pinging when a tick hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import grpc

from agent.config import BackoffConfig
from agent.daemon import Sampler, run_agent
from agent.shipper import Shipper
from agent.sources.host import HostSource
from agent.spool.memory import MemorySpool
from runtime.lifecycle import Lifecycle
from runtime.sdnotify import Notifier


def pings(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            count += sock.recv(4096) == b"WATCHDOG=1"
        except BlockingIOError:
            return count


async def test_a_hung_tick_stops_the_watchdog_pings(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}
    lifecycle = Lifecycle(Notifier(env))
    spool, wakeup = MemorySpool(), asyncio.Event()
    sampler = Sampler(
        host_id="h", gpu=None, host=HostSource(), spool=spool, wakeup=wakeup, interval=0.05, gpu_source="none"
    )
    shipper = Shipper(
        spool=spool,
        targets=("127.0.0.1:1",),  # nobody there: the shipper retries in the background
        credentials=grpc.ssl_channel_credentials,
        backoff=BackoffConfig(initial=0.1, maximum=0.2),
        wakeup=wakeup,
    )
    task = asyncio.create_task(run_agent(sampler, shipper, lifecycle.stop, lifecycle))
    try:
        await asyncio.sleep(0.8)
        assert pings(sock) >= 3, "a healthy loop pings every watchdog/4"

        hung = asyncio.Event()

        async def hang() -> None:
            hung.set()
            await asyncio.Event().wait()  # a tick that never returns (a stuck driver call, a deadlock)

        sampler.tick = hang  # type: ignore[method-assign]
        await asyncio.wait_for(hung.wait(), 2)
        pings(sock)  # discard what was sent before the hang
        await asyncio.sleep(0.8)  # twice the watchdog timeout
        assert pings(sock) == 0, "a hung loop must stop pinging so that systemd restarts the agent"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
