"""Detection as a running part of the collector: the engine, its tick loop and its /metrics series."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from prometheus_client import CollectorRegistry

from collector.alert import AlertSink
from collector.detect.baseline import BaselineDetector
from collector.detect.config import DetectConfig
from collector.detect.engine import DetectionEngine
from collector.detect.exposition import DetectionCollector
from collector.detect.peers import PeerDetector
from collector.store import FleetStore

log = structlog.get_logger("gpulse.collector.detect")


class DetectionService:
    """Builds the engine from config (refusing bad rules at start), ticks it, and stops cleanly."""

    def __init__(self, store: FleetStore, sink: AlertSink, config: DetectConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.engine = DetectionEngine(
            store,
            sink,
            rule_paths=config.rules,
            interval=config.interval,
            peers=PeerDetector(min_peers=config.min_peers),
            baseline=BaselineDetector(half_life=config.baseline_half_life),
            reload_check_interval=config.reload_check_interval,
        )
        self.engine.paused = not config.enabled
        registry.register(DetectionCollector(self.engine))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.config.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="detection")
            log.info("detection started", rules=len(self.engine.rules.rules), interval=self.config.interval)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            try:
                self.engine.tick(time.time())
            except Exception as exc:  # a bug in one tick must not end detection for good
                log.exception("detection tick failed", error=repr(exc))
            next_tick += self.config.interval
            if next_tick < loop.time():
                next_tick = loop.time() + self.config.interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))

    def reload(self) -> bool:
        """Reload the rule files now (SIGHUP); a bad file keeps the running rules."""
        return self.engine.reload()

    async def shutdown(self) -> None:
        """Stop ticking; safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
