from __future__ import annotations

import asyncio
from dataclasses import dataclass

from collector.ingest.acks import AckTicker


@dataclass
class FakeProgress:
    durable_watermark: int = 0
    pending: int = 0  # processed but not yet durable


class FakeBook:
    def __init__(self, progresses: list[FakeProgress]) -> None:
        self.progresses = progresses
        self.flushes = 0
        self.fail = False

    async def flush(self) -> None:
        self.flushes += 1
        if self.fail:
            raise OSError("disk full")
        for p in self.progresses:
            p.durable_watermark = max(p.durable_watermark, p.pending)


async def wait_ticks(ticker: AckTicker, n: int) -> None:
    target = ticker.ticks + n
    while ticker.ticks < target:  # noqa: ASYNC110 - polling a counter the ticker bumps
        await asyncio.sleep(0.001)


async def test_one_flush_per_tick_for_all_streams_and_only_moved_streams_are_woken() -> None:
    progresses = [FakeProgress() for _ in range(500)]
    book = FakeBook(progresses)
    ticker = AckTicker(book.flush, interval=lambda: 0.005)
    slots = [ticker.open(p) for p in progresses]
    progresses[7].pending = 3
    await wait_ticks(ticker, 1)
    assert book.flushes == ticker.ticks  # not one flush per stream
    woken = [i for i, s in enumerate(slots) if s.due.is_set()]
    assert woken == [7]
    assert slots[7].take() == 3
    assert slots[7].take() is None  # already acknowledged: nothing to write again
    await wait_ticks(ticker, 2)
    assert not any(s.due.is_set() for s in slots)  # idle streams are never woken
    for slot in slots:
        ticker.close(slot)


async def test_acknowledgements_wait_while_flushing_fails() -> None:
    progress = FakeProgress(pending=5)
    book = FakeBook([progress])
    book.fail = True
    ticker = AckTicker(book.flush, interval=lambda: 0.005)
    slot = ticker.open(progress)
    while book.flushes < 3:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    assert not slot.due.is_set() and progress.durable_watermark == 0  # nothing acknowledged beyond durable
    book.fail = False
    await wait_ticks(ticker, 1)
    assert slot.take() == 5
    ticker.close(slot)


async def test_timer_stops_with_the_last_stream_and_restarts_with_the_next() -> None:
    book = FakeBook([])
    ticker = AckTicker(book.flush, interval=lambda: 0.002)
    slot = ticker.open(FakeProgress())
    await wait_ticks(ticker, 1)
    ticker.close(slot)
    await asyncio.sleep(0)
    flushes = book.flushes
    await asyncio.sleep(0.02)
    assert book.flushes == flushes  # no streams: no timer, no flushes
    slot = ticker.open(FakeProgress(pending=1))
    await wait_ticks(ticker, 1)
    assert book.flushes > flushes
    ticker.close(slot)
