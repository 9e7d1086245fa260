"""Every database the collector keeps is in the backup, and comes back on restore."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from collector.actions.service import STATE_FILE as REMEDIATION_FILE
from collector.ledger.config import LedgerConfig
from collector.statefiles import DATABASES, backup, restore


def test_backup_and_restore_cover_remediation_and_the_ledger_with_the_rest(tmp_path: Path) -> None:
    live, fresh = tmp_path / "live", tmp_path / "fresh"
    live.mkdir()
    assert REMEDIATION_FILE in DATABASES.values() and str(LedgerConfig().path) in DATABASES.values()
    for name, file in DATABASES.items():
        with sqlite3.connect(live / file) as db:
            db.execute("CREATE TABLE t (name TEXT)")
            db.execute("INSERT INTO t VALUES (?)", (name,))
    copied = backup(live, tmp_path / "state.tar")
    assert sorted(copied) == sorted(DATABASES)
    assert sorted(restore(tmp_path / "state.tar", fresh)) == sorted(DATABASES)
    for name, file in DATABASES.items():
        with sqlite3.connect(fresh / file) as db:
            assert db.execute("SELECT name FROM t").fetchall() == [(name,)]
