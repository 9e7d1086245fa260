"""What the collector has processed of each (host, boot), kept durably so a restart neither re-applies nor loses.

Streams mark records processed in memory as they apply them. A flusher writes the changed entries
to SQLite (WAL, synchronous=FULL) a few times a second, and only then may a stream acknowledge:
the watermark an agent is told is always one that survives a SIGKILL. Before it writes, the flush
awaits every durable sink (the remote-write queue's fsync): what is acknowledged is held there too.
Anything processed but not
yet durable when the collector dies is simply sent again and applied again: the counters roll back
with the watermark, so each record is counted exactly once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.ingest.sequence import SequenceTracker

log = structlog.get_logger("gpulse.collector.ingest.progress")

RETENTION_SECONDS = 8 * 86400.0  # a day past the oldest frame the collector accepts


@dataclass
class StreamProgress:
    """One (host, boot): which sequence numbers are processed, and what became of them."""

    host_id: str
    boot_id: str
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    applied_records: int = 0  # batches and events processed (a refused frame inside still counts here)
    applied_frames: int = 0
    dropped_records: int = 0  # named by the agent's drop notices and never applied here
    duplicates: int = 0
    elsewhere_records: int = 0  # acknowledged by another collector before the agent failed over here
    durable_watermark: int = 0
    updated_ns: int = 0
    # Keys of changed entries, shared with the book, so a flush finds them without scanning the fleet.
    changed: set[tuple[str, str]] = field(default_factory=set, repr=False)

    @property
    def dirty(self) -> bool:
        return (self.host_id, self.boot_id) in self.changed

    @dirty.setter
    def dirty(self, value: bool) -> None:
        if value:
            self.changed.add((self.host_id, self.boot_id))
        else:
            self.changed.discard((self.host_id, self.boot_id))

    def mark(self, seq: int) -> None:
        self.tracker.mark(seq)
        self.dirty = True

    def mark_elsewhere(self, through: int) -> None:
        """The agent says another collector processed everything through ``through``."""
        self.elsewhere_records += self.tracker.mark_range(1, through)
        self.dirty = True

    def mark_dropped(self, first: int, last: int) -> int:
        """Mark a range the agent dropped unsent as processed; returns how many were not processed yet."""
        newly = self.tracker.mark_range(first, last)
        self.dropped_records += newly
        self.dirty = True
        return newly


@dataclass(frozen=True, slots=True)
class _Snapshot:
    host_id: str
    boot_id: str
    watermark: int
    above: tuple[int, ...]
    applied_records: int
    applied_frames: int
    dropped_records: int
    duplicates: int
    elsewhere_records: int
    updated_ns: int


class ProgressStore:
    """Where progress lives on disk: one SQLite file, one row per (host, boot)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS progress ("
            " host_id TEXT NOT NULL, boot_id TEXT NOT NULL, watermark INTEGER NOT NULL, above TEXT NOT NULL,"
            " applied_records INTEGER NOT NULL, applied_frames INTEGER NOT NULL, dropped_records INTEGER NOT NULL,"
            " duplicates INTEGER NOT NULL, elsewhere_records INTEGER NOT NULL, updated_ns INTEGER NOT NULL,"
            " PRIMARY KEY (host_id, boot_id))"
        )

    def load(self, now_ns: int) -> list[StreamProgress]:
        """Everything still within retention; older boots are forgotten."""
        cutoff = now_ns - int(RETENTION_SECONDS * 1e9)
        self._db.execute("DELETE FROM progress WHERE updated_ns < ?", (cutoff,))
        rows = self._db.execute(
            "SELECT host_id, boot_id, watermark, above, applied_records, applied_frames, dropped_records,"
            " duplicates, elsewhere_records, updated_ns FROM progress"
        ).fetchall()
        out = []
        for host, boot, watermark, above, applied, frames, dropped, dups, elsewhere, updated in rows:
            tracker = SequenceTracker(watermark, above=json.loads(above))
            out.append(
                StreamProgress(
                    host, boot, tracker, applied, frames, dropped, dups, elsewhere, tracker.watermark, updated
                )
            )
        return out

    def save(self, snapshots: list[_Snapshot], forgotten: Iterable[tuple[str, str]] = ()) -> None:
        """Write ``snapshots`` and delete ``forgotten`` in one transaction; durable when this returns."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM progress WHERE host_id = ? AND boot_id = ?", list(forgotten))
            self._db.executemany(
                "INSERT OR REPLACE INTO progress VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        s.host_id,
                        s.boot_id,
                        s.watermark,
                        json.dumps(s.above),
                        s.applied_records,
                        s.applied_frames,
                        s.dropped_records,
                        s.duplicates,
                        s.elsewhere_records,
                        s.updated_ns,
                    )
                    for s in snapshots
                ],
            )

    def close(self) -> None:
        self._db.close()


class ProgressBook:
    """All streams' progress in memory, made durable by ``flush``; a store of None keeps it in memory only."""

    def __init__(
        self,
        store: ProgressStore | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        sinks: Iterable[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        # Each makes durable what was handed to it so far; awaited before progress is written.
        self.sinks = list(sinks)
        self.flushes = 0
        self._entries: dict[tuple[str, str], StreamProgress] = {}
        self._forgotten: list[tuple[str, str]] = []
        self._changed: set[tuple[str, str]] = set()
        self._flush_lock = asyncio.Lock()
        if store is not None:
            for entry in store.load(clock()):
                entry.changed = self._changed
                self._entries[(entry.host_id, entry.boot_id)] = entry
            if self._entries:
                log.info("ingest progress restored", streams=len(self._entries), path=str(store.path))

    def get(self, host_id: str, boot_id: str) -> StreamProgress:
        key = (host_id, boot_id)
        entry = self._entries.get(key)
        if entry is None:
            entry = StreamProgress(host_id, boot_id, updated_ns=self.clock(), changed=self._changed)
            self._entries[key] = entry
        return entry

    def has(self, host_id: str, boot_id: str) -> bool:
        return (host_id, boot_id) in self._entries

    def boots(self, host_id: str) -> list[str]:
        """This host's boots, least recently updated first."""
        mine = [e for e in self._entries.values() if e.host_id == host_id]
        return [e.boot_id for e in sorted(mine, key=lambda e: e.updated_ns)]

    def forget(self, host_id: str, boot_id: str) -> None:
        """Drop a boot's progress; its per-host counts stay, carried over to the host's remaining boots."""
        entry = self._entries.pop((host_id, boot_id), None)
        if entry is None:
            return
        self._changed.discard((host_id, boot_id))
        self._forgotten.append((host_id, boot_id))
        heir = next((e for e in self._entries.values() if e.host_id == host_id), None)
        if heir is None:
            heir = self.get(host_id, f"{boot_id}~carried")
        heir.applied_records += entry.applied_records
        heir.applied_frames += entry.applied_frames
        heir.dropped_records += entry.dropped_records
        heir.duplicates += entry.duplicates
        heir.elsewhere_records += entry.elsewhere_records
        heir.dirty = True

    def entries(self) -> Iterable[StreamProgress]:
        return self._entries.values()

    async def flush(self) -> None:
        """Make every change so far durable, then let streams acknowledge up to it."""
        async with self._flush_lock:
            now = self.clock()
            dirty = [self._entries[k] for k in self._changed if k in self._entries]
            self._changed.clear()
            forgotten, self._forgotten = self._forgotten, []
            if not dirty and not forgotten:
                return
            snapshots = []
            for e in dirty:
                e.updated_ns = now
                snapshots.append(
                    _Snapshot(
                        e.host_id,
                        e.boot_id,
                        e.tracker.watermark,
                        tuple(sorted(e.tracker.above)),
                        e.applied_records,
                        e.applied_frames,
                        e.dropped_records,
                        e.duplicates,
                        e.elsewhere_records,
                        now,
                    )
                )
            if self.store is not None or self.sinks:
                try:
                    # Every frame applied before these snapshots was handed to the sinks already.
                    for sink in self.sinks:
                        await sink()
                    if self.store is not None:
                        await asyncio.to_thread(self.store.save, snapshots, forgotten)
                except BaseException:
                    for e in dirty:
                        e.dirty = True  # try again next time; nothing is acknowledged meanwhile
                    self._forgotten.extend(forgotten)
                    raise
            for e, s in zip(dirty, snapshots, strict=True):
                e.durable_watermark = max(e.durable_watermark, s.watermark)
            self.flushes += 1

    async def run_flusher(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled; a failing disk holds acks back, it stops nothing."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except (OSError, sqlite3.Error) as exc:
                log.error("cannot persist ingest progress; acknowledgements wait", error=str(exc))


class ProgressExposition(Collector):
    """Per-host ingest accounting for /metrics, read from the book at scrape time (so it survives restarts)."""

    def __init__(self, book: ProgressBook) -> None:
        self.book = book

    def collect(self) -> Iterator[Metric]:
        families = {
            "applied_records": CounterMetricFamily(
                "gpulse_collector_host_records_applied",
                "Agent records (batches, events) applied, by host.",
                labels=["host"],
            ),
            "applied_frames": CounterMetricFamily(
                "gpulse_collector_host_frames_applied", "Frames applied to the fleet store, by host.", labels=["host"]
            ),
            "dropped_records": CounterMetricFamily(
                "gpulse_collector_host_records_dropped_by_agent",
                "Records the agent dropped unsent (budget, damage) and said so, by host.",
                labels=["host"],
            ),
            "duplicates": CounterMetricFamily(
                "gpulse_collector_host_duplicate_records",
                "Records received again after being processed, and ignored, by host.",
                labels=["host"],
            ),
        }
        totals: dict[str, dict[str, int]] = {}
        for e in list(self.book.entries()):
            host = totals.setdefault(e.host_id, dict.fromkeys(families, 0))
            for name in families:
                host[name] += getattr(e, name)
        for host_id, values in sorted(totals.items()):
            for name, family in families.items():
                family.add_metric([host_id], values[name])
        yield from families.values()
