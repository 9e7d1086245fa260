"""Durable ingest progress: restored after a restart, acknowledged only once durable, counted per host."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.ingest.progress import ProgressBook, ProgressExposition, ProgressStore
from tests.kit import metric_value


def clock() -> int:
    return 1_800_000_000 * 10**9


async def test_progress_survives_a_restart_and_nothing_is_seen_twice(tmp_path: Path) -> None:
    book = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock)
    entry = book.get("node-1", "boot-a")
    for seq in (1, 2, 3, 5):
        entry.mark(seq)
    entry.applied_records, entry.applied_frames = 4, 4
    await book.flush()
    restored = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock).get("node-1", "boot-a")
    assert restored.tracker.watermark == 3 and restored.tracker.above == {5}
    assert restored.durable_watermark == 3 and restored.applied_frames == 4
    assert restored.tracker.seen(5) and not restored.tracker.seen(4)


async def test_the_acknowledgeable_watermark_waits_for_the_flush(tmp_path: Path) -> None:
    book = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock)
    entry = book.get("node-1", "boot-a")
    entry.mark(1)
    entry.mark(2)
    assert entry.tracker.watermark == 2 and entry.durable_watermark == 0
    await book.flush()
    assert entry.durable_watermark == 2


async def test_what_was_not_flushed_is_rolled_back_together_with_its_counts(tmp_path: Path) -> None:
    book = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock)
    entry = book.get("node-1", "boot-a")
    entry.mark(1)
    entry.applied_records = 1
    await book.flush()
    entry.mark(2)
    entry.applied_records = 2  # processed, then the collector is killed before the flush
    restored = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock).get("node-1", "boot-a")
    assert restored.tracker.watermark == 1 and restored.applied_records == 1


async def test_a_failing_disk_holds_the_acknowledgement_back(tmp_path: Path) -> None:
    class BrokenStore(ProgressStore):
        def save(self, *args: object, **kwargs: object) -> None:
            raise OSError("disk full")

    book = ProgressBook(BrokenStore(tmp_path / "p.sqlite"), clock=clock)
    entry = book.get("node-1", "boot-a")
    entry.mark(1)
    with pytest.raises(OSError, match="disk full"):
        await book.flush()
    assert entry.durable_watermark == 0 and entry.dirty


async def test_forgetting_a_boot_keeps_the_host_counts(tmp_path: Path) -> None:
    book = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock)
    old = book.get("node-1", "boot-a")
    old.applied_records = 10
    book.get("node-1", "boot-b").applied_records = 5
    book.forget("node-1", "boot-a")
    await book.flush()
    restored = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock)
    assert not restored.has("node-1", "boot-a")
    assert sum(e.applied_records for e in restored.entries()) == 15


def test_dropped_and_elsewhere_ranges_are_counted_once() -> None:
    entry = ProgressBook(clock=clock).get("node-1", "boot-a")
    entry.mark_elsewhere(10)
    entry.mark(11)
    assert entry.mark_dropped(11, 15) == 4  # 11 was applied already
    assert entry.mark_dropped(11, 15) == 0
    assert (entry.elsewhere_records, entry.dropped_records, entry.tracker.watermark) == (10, 4, 15)


def test_per_host_counters_are_exposed_by_host() -> None:
    book = ProgressBook(clock=clock)
    book.get("node-1", "a").applied_frames = 3
    book.get("node-1", "b").applied_frames = 4
    book.get("node-2", "c").mark_dropped(1, 2)
    registry = CollectorRegistry()
    registry.register(ProgressExposition(book))
    text = generate_latest(registry).decode()
    assert metric_value(text, "gpulse_collector_host_frames_applied_total", host="node-1") == 7
    assert metric_value(text, "gpulse_collector_host_records_dropped_by_agent_total", host="node-2") == 2


async def test_a_flush_with_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    book = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock)
    for host in range(100):
        book.get(f"node-{host}", "boot").mark(1)
    await book.flush()
    assert book.flushes == 1
    await book.flush()  # every stream calls this a few times a second: idle calls cost nothing
    assert book.flushes == 1
    book.get("node-7", "boot").mark(2)
    await book.flush()
    assert book.flushes == 2


async def test_progress_is_saved_only_after_every_durable_sink_synced(tmp_path: Path) -> None:
    order: list[str] = []
    fail = [True]

    async def sink() -> None:
        order.append("sink")
        if fail[0]:
            raise OSError("queue disk failing")

    book = ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock, sinks=[sink])
    entry = book.get("node-1", "boot-a")
    entry.mark(1)
    with pytest.raises(OSError):
        await book.flush()
    # The queue could not make its frames durable: nothing may be acknowledged, and nothing saved.
    assert entry.durable_watermark == 0
    assert not ProgressBook(ProgressStore(tmp_path / "p.sqlite"), clock=clock).has("node-1", "boot-a")
    fail[0] = False
    await book.flush()
    assert order == ["sink", "sink"] and entry.durable_watermark == 1
