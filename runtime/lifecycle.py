"""Running an asyncio service under a supervisor: SIGTERM/SIGINT stop it, SIGHUP reloads it.

The service's main loop calls :meth:`Lifecycle.heartbeat` once per iteration; that is what pings the
systemd watchdog, so a hung loop (not merely a live process) gets restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable

import structlog

from runtime.sdnotify import Notifier

log = structlog.get_logger("gpulse.runtime")

ReloadHook = Callable[[], Awaitable[str]]


class Lifecycle:
    """What a main loop needs from its supervisor: when to stop, what to do on reload, how to report."""

    def __init__(
        self,
        notifier: Notifier | None = None,
        *,
        stop: asyncio.Event | None = None,
        status_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier or Notifier({})
        self.stop = stop or asyncio.Event()
        self.status_interval = status_interval
        self.clock = clock
        self.reloads = 0
        self.reload_failures = 0
        self._hooks: list[ReloadHook] = []
        self._last_ping = float("-inf")
        self._last_status = float("-inf")
        self._reload_lock = asyncio.Lock()

    @property
    def ping_interval(self) -> float:
        """How long a main loop may sleep between heartbeats."""
        return min(1.0, self.notifier.watchdog_interval or 1.0)

    def on_reload(self, hook: ReloadHook) -> None:
        """Register ``hook``; on SIGHUP it re-reads what it owns and returns a short summary."""
        self._hooks.append(hook)

    def ready(self, status: str) -> None:
        log.info("ready", status=status)
        self.notifier.ready(status)
        self._last_status = self.clock()

    def heartbeat(self, status: Callable[[], str] | None = None) -> None:
        """Called by the main loop each iteration: pings the watchdog, refreshes STATUS now and then."""
        now = self.clock()
        interval = self.notifier.watchdog_interval
        if interval is not None and now - self._last_ping >= interval / 2:
            self.notifier.watchdog()
            self._last_ping = now
        if status is not None and now - self._last_status >= self.status_interval:
            self.notifier.status(status())
            self._last_status = now

    async def reload(self) -> bool:
        """Run every reload hook; a hook that fails leaves the old settings in place and is reported."""
        async with self._reload_lock:
            self.notifier.reloading()
            log.info("reloading")
            summaries, failed = [], False
            for hook in self._hooks:
                try:
                    summaries.append(await hook())
                except Exception as exc:  # a bad config file must not take a running service down
                    failed = True
                    summaries.append(f"reload failed: {exc}")
                    log.error("reload failed; keeping the previous settings", error=str(exc))
            self.reloads += 1
            self.reload_failures += failed
            status = "; ".join(s for s in summaries if s) or "reloaded"
            self.notifier.ready(status)
            log.info("reloaded", status=status, ok=not failed)
            return not failed

    def stopping(self, status: str = "stopping") -> None:
        self.notifier.send(stopping=1, status=status)


def run_service(main: Callable[[Lifecycle], Awaitable[None]], notifier: Notifier | None = None) -> None:
    """Run ``main(lifecycle)``: SIGINT/SIGTERM set ``lifecycle.stop``, SIGHUP runs the reload hooks."""

    async def runner() -> None:
        lifecycle = Lifecycle(notifier or Notifier())
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[bool]] = set()

        def on_stop() -> None:
            if not lifecycle.stop.is_set():
                lifecycle.stopping()
                lifecycle.stop.set()

        def on_hup() -> None:
            task = loop.create_task(lifecycle.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_stop)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        try:
            await main(lifecycle)
        finally:
            for task in list(reloads):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(runner())


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; the first SIGINT/SIGTERM sets ``stop`` so it can finish cleanly."""
    run_service(lambda lifecycle: main(lifecycle.stop))
