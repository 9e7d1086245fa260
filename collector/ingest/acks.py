"""When streams are acknowledged: one timer and one durable flush per interval for all of them.

A timer and a flush per stream cost thousands of wakeups a second, and a flush that scans every
stream, once a fleet is thousands of hosts; here each interval flushes once and wakes only the
streams whose durable watermark moved since their last acknowledgement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

log = structlog.get_logger("gpulse.collector.ingest.acks")


class Progress(Protocol):
    @property
    def durable_watermark(self) -> int: ...


@dataclass(eq=False)
class AckSlot:
    """One open stream: its progress, and an event set when it has something new to acknowledge."""

    progress: Progress
    due: asyncio.Event = field(default_factory=asyncio.Event)
    acked: int = 0  # the last watermark the stream was told (its Welcome told it the first)

    def take(self) -> int | None:
        """The watermark to acknowledge now, or None if the stream already has it."""
        self.due.clear()
        watermark = self.progress.durable_watermark
        if watermark == self.acked:
            return None
        self.acked = watermark
        return watermark


class AckTicker:
    """Flushes progress every ``interval()`` seconds while any stream is open, then wakes those with news.

    ``interval`` is read each tick, so a reloaded limit applies without reopening streams.
    """

    def __init__(self, flush: Callable[[], Awaitable[None]], interval: Callable[[], float]) -> None:
        self.flush = flush
        self.interval = interval
        self.ticks = 0
        self._slots: set[AckSlot] = set()
        self._task: asyncio.Task[None] | None = None

    def open(self, progress: Progress) -> AckSlot:
        slot = AckSlot(progress, acked=progress.durable_watermark)
        self._slots.add(slot)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ack-ticker")
        return slot

    def close(self, slot: AckSlot) -> None:
        self._slots.discard(slot)
        if not self._slots and self._task is not None:
            self._task.cancel()  # nothing to acknowledge: no timer either
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval())
            try:
                await self.flush()
            except Exception as exc:  # a failing disk holds acknowledgements back; ingest goes on
                log.error("cannot persist ingest progress; acknowledgements wait", error=str(exc))
                continue
            self.ticks += 1
            for slot in self._slots:
                if slot.progress.durable_watermark != slot.acked:
                    slot.due.set()
