"""The remediation database (SQLite): actions, fault recurrences, the breaker, and the action log.

One file under the collector's state directory, so a restart neither repeats an action nor forgets
one, an escalation count survives, and a tripped breaker stays tripped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    node TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL,
    gpu TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    healthy_since REAL,
    drained_at REAL,
    note TEXT NOT NULL DEFAULT '',
    open INTEGER NOT NULL
);
-- At most one open action per host: two drains are one.
CREATE UNIQUE INDEX IF NOT EXISTS one_open_action_per_host ON actions(host) WHERE open = 1;
CREATE TABLE IF NOT EXISTS recurrences (
    fault TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS breaker (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    tripped_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS action_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    host TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

# States an action can be in. Open ones hold the host; the rest are history.
PENDING = "pending"  # waiting for `gpulse remediation approve ID`
APPROVED = "approved"  # approved, runs at the next step
DRY_RUN = "dry_run"  # would have drained
DRAINED = "drained"
WATCHING = "watching"  # someone else's drain holds the node (another collector, an operator): left alone
OPEN_STATES = frozenset({PENDING, APPROVED, DRY_RUN, DRAINED, WATCHING})
RESUMED = "resumed"
RELEASED = "released"  # an operator's drain took over: never undone by us
EXPIRED = "expired"  # the alert resolved before anyone approved
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    host: str
    node: str
    fingerprint: str
    alertname: str
    gpu: str
    reason: str
    state: str
    created_at: float
    updated_at: float
    healthy_since: float | None = None  # when the host's last actionable alert cleared
    drained_at: float | None = None  # when we drained it (or, in dry-run, would have)
    note: str = ""

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open": self.open}


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line of the action log: what happened, to which host, by whom, with what detail."""

    seq: int
    at: float
    event: str
    host: str
    actor: str
    detail: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "detail": dict(self.detail)}


_COLUMNS = (
    "id, host, node, fingerprint, alertname, gpu, reason, state, created_at, updated_at, "
    "healthy_since, drained_at, note"
)


class RemediationState:
    def __init__(self, path: Path, on_record: Callable[[LogRecord], object] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._on_record = on_record  # the audit log hears of every action and approval
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- actions ------------------------------------------------------------------------------------
    def save(self, action: Action) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO actions ({_COLUMNS}, open) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                action.id,
                action.host,
                action.node,
                action.fingerprint,
                action.alertname,
                action.gpu,
                action.reason,
                action.state,
                action.created_at,
                action.updated_at,
                action.healthy_since,
                action.drained_at,
                action.note,
                int(action.open),
            ),
        )

    def update(self, action: Action, **changes: Any) -> Action:
        changed = replace(action, **changes)
        self.save(changed)
        return changed

    def get(self, action_id: str) -> Action | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM actions WHERE id = ?", (action_id,)).fetchone()
        return Action(*row) if row else None

    def open_actions(self) -> list[Action]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM actions WHERE open = 1 ORDER BY created_at").fetchall()
        return [Action(*row) for row in rows]

    def recent(self, limit: int = 100) -> list[Action]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM actions ORDER BY created_at DESC, id LIMIT ?", (limit,)
        ).fetchall()
        return [Action(*row) for row in rows]

    def last_closed_at(self, host: str) -> float | None:
        """When the host's newest finished action ended (for the per-host cooldown)."""
        row = self._db.execute(
            "SELECT MAX(updated_at) FROM actions WHERE host = ? AND open = 0 AND state IN (?, ?, ?)",
            (host, RESUMED, RELEASED, FAILED),
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    def drains_since(self, since: float) -> int:
        """Hosts drained (or, in dry-run, that would have been) since ``since``: what the breaker counts."""
        row = self._db.execute("SELECT COUNT(DISTINCT host) FROM actions WHERE drained_at >= ?", (since,)).fetchone()
        return int(row[0])

    # -- recurrences --------------------------------------------------------------------------------
    def recurrence(self, fault: str) -> tuple[int, float]:
        row = self._db.execute("SELECT count, last_at FROM recurrences WHERE fault = ?", (fault,)).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    def set_recurrence(self, fault: str, count: int, at: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO recurrences (fault, count, last_at) VALUES (?,?,?)", (fault, count, at)
        )

    # -- breaker ------------------------------------------------------------------------------------
    def breaker(self) -> tuple[float, str] | None:
        row = self._db.execute("SELECT tripped_at, reason FROM breaker WHERE id = 1").fetchone()
        return (float(row[0]), str(row[1])) if row else None

    def trip(self, at: float, reason: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO breaker (id, tripped_at, reason) VALUES (1, ?, ?)", (at, reason))

    def reset_breaker(self) -> bool:
        return self._db.execute("DELETE FROM breaker WHERE id = 1").rowcount > 0

    # -- action log ---------------------------------------------------------------------------------
    def record(self, at: float, event: str, host: str, actor: str, detail: Mapping[str, Any]) -> LogRecord:
        """Append one record to the durable action log; returns it with its sequence number."""
        cursor = self._db.execute(
            "INSERT INTO action_log (at, event, host, actor, detail) VALUES (?,?,?,?,?)",
            (at, event, host, actor, json.dumps(dict(detail), sort_keys=True)),
        )
        record = LogRecord(int(cursor.lastrowid or 0), at, event, host, actor, dict(detail))
        if self._on_record is not None:
            self._on_record(record)
        return record

    def log(self, limit: int = 200) -> list[LogRecord]:
        rows = self._db.execute(
            "SELECT seq, at, event, host, actor, detail FROM action_log ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        return [LogRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in reversed(rows)]
