"""The ledger's SQLite file: jobs, hourly usage and each GPU's last counter reading, kept across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from collector.ledger.book import USAGE_COLUMNS, JobRecord, Ledger

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    host TEXT NOT NULL, kind TEXT NOT NULL, job_id TEXT NOT NULL, start_ns INTEGER NOT NULL,
    name TEXT NOT NULL, user TEXT NOT NULL, account TEXT NOT NULL, model TEXT NOT NULL,
    last_ns INTEGER NOT NULL, end_ns INTEGER, gpus TEXT NOT NULL,
    allocated_s REAL NOT NULL, busy_s REAL NOT NULL, idle_s REAL NOT NULL, energy_j REAL NOT NULL,
    estimated_j REAL NOT NULL, gap_s REAL NOT NULL, gaps INTEGER NOT NULL, resets INTEGER NOT NULL,
    peak_w REAL NOT NULL, sm_s REAL NOT NULL,
    PRIMARY KEY (host, kind, job_id, start_ns)
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (end_ns);
CREATE TABLE IF NOT EXISTS usage (
    hour_ns INTEGER NOT NULL, host TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
    job_id TEXT NOT NULL, user TEXT NOT NULL, account TEXT NOT NULL,
    allocated_s REAL NOT NULL, busy_s REAL NOT NULL, idle_s REAL NOT NULL, energy_j REAL NOT NULL,
    gap_s REAL NOT NULL,
    PRIMARY KEY (hour_ns, host, model, kind, job_id, user, account)
);
CREATE TABLE IF NOT EXISTS meters (
    uuid TEXT PRIMARY KEY, host TEXT NOT NULL, last_ns INTEGER NOT NULL, energy_j REAL
);
"""

_JOB_COLUMNS = (
    "host, kind, job_id, start_ns, name, user, account, model, last_ns, end_ns, gpus, allocated_s, busy_s, "
    "idle_s, energy_j, estimated_j, gap_s, gaps, resets, peak_w, sm_s"
)


class LedgerDb:
    """One SQLite file; every flush is one transaction, so a crash leaves the last flush whole."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.executescript("PRAGMA journal_mode=WAL;" + _SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def load_open_jobs(self) -> list[JobRecord]:
        rows = self.conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE end_ns IS NULL").fetchall()
        return [_job(row) for row in rows]

    def load_meters(self) -> dict[str, tuple[str, int, float]]:
        rows = self.conn.execute("SELECT uuid, host, last_ns, energy_j FROM meters").fetchall()
        return {uuid: (host, last_ns, float("nan") if e is None else e) for uuid, host, last_ns, e in rows}

    def flush(self, ledger: Ledger, meters: list[tuple[str, str, int, float]]) -> None:
        """Write the jobs that changed, add the usage since the last flush, and the counters' positions."""
        jobs = [ledger.jobs[key] for key in ledger.dirty if key in ledger.jobs]
        updates = ", ".join(f"{c} = usage.{c} + excluded.{c}" for c in USAGE_COLUMNS)
        with self.conn:
            self.conn.executemany(
                f"INSERT OR REPLACE INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 21)})",
                [_row(job) for job in jobs],
            )
            self.conn.executemany(
                "INSERT INTO usage (hour_ns, host, model, kind, job_id, user, account, "
                f"{', '.join(USAGE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT (hour_ns, host, model, kind, job_id, user, account) DO UPDATE SET {updates}",
                [(*key, *values) for key, values in ledger.usage.items()],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO meters (uuid, host, last_ns, energy_j) VALUES (?, ?, ?, ?)",
                [(u, h, t, e if e == e else None) for u, h, t, e in meters],
            )
        ledger.usage.clear()
        ledger.dirty.clear()
        for key in [k for k, job in ledger.jobs.items() if job.end_ns is not None]:
            del ledger.jobs[key]  # ended and written: the file holds it now

    def usage_rows(self, from_ns: int, to_ns: int) -> list[dict[str, object]]:
        """Hourly usage whose hour starts in [from_ns, to_ns)."""
        cur = self.conn.execute(
            "SELECT hour_ns, host, model, kind, job_id, user, account, "
            f"{', '.join(USAGE_COLUMNS)} FROM usage WHERE hour_ns >= ? AND hour_ns < ?",
            (from_ns - from_ns % (3600 * 10**9), to_ns),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def jobs_between(self, from_ns: int, to_ns: int) -> list[JobRecord]:
        """Jobs that ran at some time in [from_ns, to_ns)."""
        rows = self.conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE start_ns < ? AND last_ns >= ?", (to_ns, from_ns)
        ).fetchall()
        return [_job(row) for row in rows]


def _row(job: JobRecord) -> tuple[object, ...]:
    return (
        job.host, job.kind, job.job_id, job.start_ns, job.name, job.user, job.account, job.model, job.last_ns,
        job.end_ns, ",".join(map(str, sorted(job.gpus))), job.allocated_s, job.busy_s, job.idle_s, job.energy_j,
        job.estimated_j, job.gap_s, job.gaps, job.resets, job.peak_w, job.sm_s,
    )  # fmt: skip


def _job(row: tuple[Any, ...]) -> JobRecord:
    (host, kind, job_id, start_ns, name, user, account, model, last_ns, end_ns, gpus, *numbers) = row
    job = JobRecord(
        host, kind, job_id, name, user, account, model, int(start_ns), int(last_ns),
        None if end_ns is None else int(end_ns), {int(g) for g in str(gpus).split(",") if g},
    )  # fmt: skip
    (job.allocated_s, job.busy_s, job.idle_s, job.energy_j, job.estimated_j, job.gap_s) = map(float, numbers[:6])
    job.gaps, job.resets = int(numbers[6]), int(numbers[7])
    job.peak_w, job.sm_s = float(numbers[8]), float(numbers[9])
    return job
