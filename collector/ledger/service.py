"""The ledger as a running part of the collector: meters the store each tick, books it, flushes to SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import numpy as np
import structlog

from collector.ledger.book import JobRecord, Ledger, Owner, RowContext
from collector.ledger.config import LedgerConfig
from collector.ledger.db import LedgerDb
from collector.ledger.meter import GpuMeter
from collector.store import FleetStore
from protos import telemetry_pb2 as pb

log = structlog.get_logger("gpulse.collector.ledger")

_SM_ACTIVITY = "sm_activity"  # read where the catalog and the GPU have it; utilisation otherwise


def owners_of(processes: list[pb.GpuProcess]) -> tuple[Owner, ...]:
    """The distinct jobs among a GPU's processes; a process of no known job still holds the GPU."""
    seen: dict[tuple[str, str], Owner] = {}
    for p in processes:
        w = p.workload
        kind = w.kind or "unattributed"
        account = w.namespace if w.kind == "kubernetes" else ""
        seen.setdefault((kind, w.id), Owner(kind, w.id, w.name or p.name, w.user, account))
    return tuple(sorted(seen.values(), key=lambda o: (o.kind, o.id)))


class LedgerService:
    """Owns the meter, the books and the file; ``tick`` is the whole of its work, so tests drive it."""

    def __init__(self, store: FleetStore, config: LedgerConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.meter = GpuMeter(
            idle_threshold=config.idle_threshold, idle_after=config.idle_after, max_gap=config.max_gap
        )
        self.ledger = Ledger(rollup_cap=config.rollup_cap)
        self.db = LedgerDb(config.path)
        for job in self.db.load_open_jobs():
            self.ledger.jobs[job.key] = job
        self.saved = self.db.load_meters()
        self.row_uuid: dict[int, str] = {}
        # row -> (its process list, held so that `is` tells a replaced list; its context)
        self.row_owners: dict[int, tuple[list[pb.GpuProcess], RowContext]] = {}
        self.current: dict[int, RowContext] = {}
        self.energy_refused = 0  # counter readings not believed (faster than max_watts)
        self._interned: dict[tuple[Owner, ...], tuple[Owner, ...]] = {}
        self._columns = {
            name: store.gpu_columns.get(store.catalog.gpu(name).id) if _has(store, name) else None
            for name in ("energy_consumption", "power_usage", "utilization", _SM_ACTIVITY)
        }
        self._last_flush = self.clock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def tick(self, now: float | None = None) -> None:
        """Meter every GPU whose host sent a frame since the last tick; end quiet jobs; flush when due."""
        now = self.clock() if now is None else now
        store = self.store
        self.meter.ensure(len(store.gpu_values))
        rows: list[int] = []
        contexts: list[RowContext] = []
        t_ns: list[int] = []
        restart: list[int] = []
        for record in store.hosts.values():
            host_t = int(store.host_time_ns[record.slot])
            for meta in record.gpus:
                row = meta.row
                if self.row_uuid.get(row) != meta.uuid:
                    self._adopt(row, meta.uuid)
                if host_t <= self.meter.last_ns[row]:
                    continue
                processes = record.workloads.get(meta.index, [])
                cached = self.row_owners.get(row)
                if cached is None or cached[0] is not processes:
                    found = owners_of(processes)
                    # One tuple per distinct set of owners, shared by its GPUs (the books group by it).
                    owners = self._interned.setdefault(found, found)
                    if cached is not None and cached[1].owners != owners:
                        restart.append(row)
                    cached = (processes, RowContext(record.host_id, meta.model, meta.index, owners))
                    self.row_owners[row] = cached
                ctx = cached[1]
                self.current[row] = ctx
                rows.append(row)
                contexts.append(ctx)
                t_ns.append(host_t)
        if restart:
            self.meter.restart_runs(np.array(restart, dtype=np.int64))
        if rows:
            r = np.array(rows, dtype=np.int64)
            step = self.meter.step(
                r,
                np.array(t_ns, dtype=np.int64),
                self._read(r, "energy_consumption"),
                self._read(r, "power_usage"),
                self._read(r, _SM_ACTIVITY),
                self._read(r, "utilization"),
            )
            self.ledger.add(step, contexts, t_ns)
            refused = int(step.implausible.sum())
            if refused:
                self.energy_refused += refused
                log.warning("implausible energy counter readings ignored", readings=refused)
        now_ns, grace_ns = int(now * 1e9), int(self.config.job_end_grace * 1e9)
        # A host that stopped sending holds nothing: its jobs end once the grace has passed.
        holding = {
            (c.host, o.kind, o.id)
            for row, c in self.current.items()
            if self.meter.last_ns[row] >= now_ns - grace_ns
            for o in c.owners
        }
        self.ledger.close_jobs(now_ns, grace_ns, holding)
        if now - self._last_flush >= self.config.flush_interval:
            self.flush()
            self._last_flush = now

    def _read(self, rows: np.ndarray, name: str) -> np.ndarray:
        col = self._columns[name]
        if col is None:
            return np.full(len(rows), np.nan)
        return np.asarray(self.store.gpu_values[rows, col], dtype=np.float64)

    def _adopt(self, row: int, uuid: str) -> None:
        """A GPU newly in this row: its counter's last position from the file, or nothing."""
        self.meter.forget(np.array([row], dtype=np.int64))
        self.row_owners.pop(row, None)
        self.row_uuid[row] = uuid
        saved = self.saved.pop(uuid, None)
        if saved is not None:
            self.meter.restore(row, saved[1], saved[2])

    def gpu_states(self) -> dict[str, dict[str, int]]:
        """Per host, how many GPUs were busy, idle (allocated) or unallocated at their last sample."""
        out: dict[str, dict[str, int]] = {}
        for row, ctx in self.current.items():
            counts = out.setdefault(ctx.host, {"unallocated": 0, "idle": 0, "allocated": 0})
            state = "unallocated" if not ctx.owners else "idle" if self.meter.idle[row] else "allocated"
            counts[state] += 1
        return out

    def top_idle_jobs(self) -> list[JobRecord]:
        running = [j for j in self.ledger.jobs.values() if j.end_ns is None and j.idle_s > 0]
        return sorted(running, key=lambda j: -j.idle_s)[: self.config.top_jobs]

    def flush(self) -> None:
        meters = [
            (uuid, self.current[row].host, int(self.meter.last_ns[row]), float(self.meter.last_energy[row]))
            for row, uuid in self.row_uuid.items()
            if row in self.current and self.meter.last_ns[row] > 0
        ]
        self.db.flush(self.ledger, meters)
        self._interned.clear()  # bounded by the jobs of one flush interval; later tuples group afresh

    def start(self) -> None:
        if self.config.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger")
            log.info("ledger started", path=str(self.config.path))

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # one bad tick must not end the ledger
                log.exception("ledger tick failed", error=repr(exc))
            await asyncio.sleep(self.config.interval)

    async def shutdown(self) -> None:
        """Stop ticking and write what is in memory; safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._closed:
            self.flush()
            self.db.close()
            self._closed = True


def _has(store: FleetStore, name: str) -> bool:
    try:
        store.catalog.gpu(name)
    except KeyError:
        return False
    return True
