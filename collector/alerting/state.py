"""Durable alerting state in one SQLite file: alerts, silences, the notification outbox and the notification log.

Writes are committed before the caller goes on (WAL, synchronous=FULL), so a collector killed at any
point restarts knowing what fired, what was already sent and what still has to be sent.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.alert import Alert

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    alert TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    silence TEXT NOT NULL,
    ends_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    coalesce_key TEXT NOT NULL,
    group_key TEXT NOT NULL,
    alerts TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    UNIQUE (receiver, coalesce_key)
);
CREATE TABLE IF NOT EXISTS nflog (
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    firing TEXT NOT NULL,
    max_severity INTEGER NOT NULL,
    last_notify_at REAL NOT NULL,
    PRIMARY KEY (receiver, group_key)
);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One pending delivery: these alerts, to this receiver, as part of this group's notification."""

    id: int
    receiver: str
    coalesce_key: str
    group_key: str
    alerts: tuple[Alert, ...]
    version: int
    attempts: int
    created_at: float
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class NflogEntry:
    """What a receiver was last told about a group: the firing fingerprints, the top severity, and when."""

    firing: frozenset[str]
    max_severity: int
    last_notify_at: float


class AlertingState:
    """The SQLite database under the collector's state directory."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they land together or not at all (an outbox row and its nflog entry).

        Nested use joins the outer transaction.
        """
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

    # -- alerts -------------------------------------------------------------------------------------
    def save_alert(self, alert: Alert) -> None:
        self._db.execute(
            "INSERT INTO alerts (fingerprint, alert) VALUES (?, ?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET alert = excluded.alert",
            (alert.fingerprint, json.dumps(alert.to_dict())),
        )

    def delete_alert(self, fingerprint: str) -> None:
        self._db.execute("DELETE FROM alerts WHERE fingerprint = ?", (fingerprint,))

    def load_alerts(self, on_malformed: Callable[[str, str], None] | None = None) -> list[Alert]:
        """The stored alerts; a row that no longer parses is deleted and reported, never fatal."""
        out = []
        for fp, text in self._db.execute("SELECT fingerprint, alert FROM alerts").fetchall():
            try:
                out.append(Alert.from_dict(json.loads(text)))
            except (ValueError, TypeError) as exc:
                self.delete_alert(fp)
                if on_malformed:
                    on_malformed(fp, str(exc))
        return out

    # -- silences -----------------------------------------------------------------------------------
    def save_silence(self, silence_id: str, record: dict[str, Any], ends_at: float) -> None:
        self._db.execute(
            "INSERT INTO silences (id, silence, ends_at) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET silence = excluded.silence, ends_at = excluded.ends_at",
            (silence_id, json.dumps(record), ends_at),
        )

    def load_silences(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self._db.execute("SELECT silence FROM silences")]

    def delete_silences_ended_before(self, cutoff: float) -> int:
        return self._db.execute("DELETE FROM silences WHERE ends_at < ?", (cutoff,)).rowcount

    # -- outbox -------------------------------------------------------------------------------------
    def enqueue(self, receiver: str, coalesce_key: str, group_key: str, alerts: list[Alert], now: float) -> bool:
        """Add a delivery; an undelivered one with the same key is replaced (returns True when it coalesced)."""
        payload = json.dumps([a.to_dict() for a in alerts])
        existing = self._db.execute(
            "SELECT id FROM outbox WHERE receiver = ? AND coalesce_key = ?", (receiver, coalesce_key)
        ).fetchone()
        if existing:
            # The newer state wins; the row keeps its place and its backoff, and the version bump
            # stops an in-flight send of the older state from deleting it.
            self._db.execute(
                "UPDATE outbox SET alerts = ?, group_key = ?, version = version + 1 WHERE id = ?",
                (payload, group_key, existing[0]),
            )
            return True
        self._db.execute(
            "INSERT INTO outbox (receiver, coalesce_key, group_key, alerts, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (receiver, coalesce_key, group_key, payload, now, now),
        )
        return False

    def due(
        self, now: float, limit: int = 256, on_malformed: Callable[[str, str], None] | None = None
    ) -> list[OutboxItem]:
        """Rows whose time has come. A row that no longer parses is deleted and reported with its receiver,
        so one damaged row cannot block the outbox."""
        rows = self._db.execute(
            "SELECT id, receiver, coalesce_key, group_key, alerts, version, attempts, created_at, next_attempt_at "
            "FROM outbox WHERE next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        items = []
        for r in rows:
            try:
                alerts = tuple(Alert.from_dict(a) for a in json.loads(r[4]))
            except (ValueError, TypeError, AttributeError) as exc:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (r[0],))
                if on_malformed:
                    on_malformed(r[1], str(exc))
                continue
            items.append(OutboxItem(r[0], r[1], r[2], r[3], alerts, *r[5:]))
        return items

    def delivered(self, item: OutboxItem) -> bool:
        """Remove a sent row, unless a newer state coalesced into it meanwhile (then it is sent next)."""
        cur = self._db.execute("DELETE FROM outbox WHERE id = ? AND version = ?", (item.id, item.version))
        if cur.rowcount == 0:
            self._db.execute("UPDATE outbox SET attempts = 0 WHERE id = ?", (item.id,))
        return cur.rowcount == 1

    def drop(self, item: OutboxItem) -> None:
        self._db.execute("DELETE FROM outbox WHERE id = ? AND version = ?", (item.id, item.version))

    def postpone(self, item: OutboxItem, until: float, error: str, *, count_attempt: bool = True) -> None:
        self._db.execute(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + ?, last_error = ? WHERE id = ?",
            (until, 1 if count_attempt else 0, error[:500], item.id),
        )

    def outbox_depth(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT receiver, COUNT(*) FROM outbox GROUP BY receiver").fetchall())

    # -- notification log ---------------------------------------------------------------------------
    def nflog_get(self, receiver: str, group_key: str) -> NflogEntry | None:
        row = self._db.execute(
            "SELECT firing, max_severity, last_notify_at FROM nflog WHERE receiver = ? AND group_key = ?",
            (receiver, group_key),
        ).fetchone()
        return None if row is None else NflogEntry(frozenset(json.loads(row[0])), int(row[1]), float(row[2]))

    def nflog_put(self, receiver: str, group_key: str, entry: NflogEntry) -> None:
        if not entry.firing:
            # Nothing left open for this receiver: forget the group, so the log does not grow forever.
            self._db.execute("DELETE FROM nflog WHERE receiver = ? AND group_key = ?", (receiver, group_key))
            return
        self._db.execute(
            "INSERT INTO nflog (receiver, group_key, firing, max_severity, last_notify_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (receiver, group_key) DO UPDATE SET firing = excluded.firing, "
            "max_severity = excluded.max_severity, last_notify_at = excluded.last_notify_at",
            (receiver, group_key, json.dumps(sorted(entry.firing)), entry.max_severity, entry.last_notify_at),
        )
