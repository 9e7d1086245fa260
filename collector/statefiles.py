"""Every SQLite database the collector keeps under ``state_dir``, and their backup and restore.

One list names them all, so a database added later (the job ledger, remediation actions) is
covered by ``gpulse state backup`` by adding its name here. Backups are taken online through
SQLite's backup API: a consistent copy of each database while the collector runs and writes.
A backup FILE is a tar archive of those copies and a manifest.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from collector.actions.service import STATE_FILE as REMEDIATION_FILE
from collector.alerting.service import STATE_FILE as ALERTING_FILE
from collector.ledger.config import LedgerConfig

__all__ = ["DATABASES", "BackupError", "StateFile", "backup", "databases", "restore"]

PROGRESS_FILE = "ingest-progress.sqlite"

# name -> file under state_dir. Add new databases here, and backup and restore cover them.
DATABASES: dict[str, str] = {
    "alerting": ALERTING_FILE,  # alerts, silences, outbox, notification log
    "ingest-progress": PROGRESS_FILE,  # what each agent boot has had applied
    "remediation": REMEDIATION_FILE,  # drains, approvals, the breaker, escalation counts, the action log
    "ledger": str(LedgerConfig().path),  # the job ledger, at its default place under state_dir
}
MANIFEST = "manifest.json"


class BackupError(Exception):
    """A backup file that cannot be restored; the message says why."""


@dataclass(frozen=True, slots=True)
class StateFile:
    name: str
    path: Path


def databases(state_dir: Path) -> list[StateFile]:
    return [StateFile(name, state_dir / file) for name, file in DATABASES.items()]


def backup(state_dir: Path, target: Path) -> list[str]:
    """Copy every database that exists into the archive ``target``, online; returns the names copied."""
    copied: list[str] = []
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gpulse-backup-") as scratch:
        archive = Path(scratch) / "backup.tar"
        with tarfile.open(archive, "w") as tar:
            for db in databases(state_dir):
                if not db.path.exists():
                    continue
                copy = Path(scratch) / db.path.name
                source = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True, timeout=30)
                dest = sqlite3.connect(copy)
                try:
                    # Pages in steps, so a large database never holds the writers' lock for long.
                    source.backup(dest, pages=256, sleep=0.005)
                finally:
                    dest.close()
                    source.close()
                tar.add(copy, arcname=db.path.name)
                copied.append(db.name)
            manifest = json.dumps(
                {"created_unix": time.time(), "databases": {n: DATABASES[n] for n in copied}}, indent=1
            ).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
        with archive.open("rb") as fh:
            os.fsync(fh.fileno())
        archive.replace(target)
    return copied


def restore(source: Path, state_dir: Path) -> list[str]:
    """Replace the databases in ``state_dir`` with those in the archive ``source`` (collector stopped)."""
    try:
        with tarfile.open(source, "r") as tar:
            staged = _stage(tar, source, state_dir)
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{source}: not a readable gpulse state backup: {exc}") from None
    for tmp, final in staged:
        for suffix in ("-wal", "-shm", "-journal"):  # the old database's logs must not be replayed onto it
            Path(f"{final}{suffix}").unlink(missing_ok=True)
        tmp.replace(final)
    return [name for name, file in DATABASES.items() if any(final.name == file for _, final in staged)]


def _member(tar: tarfile.TarFile, source: Path, name: str) -> bytes:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise BackupError(f"{source}: {name} is missing")
    return member.read()


def _stage(tar: tarfile.TarFile, source: Path, state_dir: Path) -> list[tuple[Path, Path]]:
    """Each database of the archive, checked and written beside its final place."""
    try:
        wanted = dict(json.loads(_member(tar, source, MANIFEST))["databases"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BackupError(f"{source}: {MANIFEST} unreadable: {exc}") from None
    unknown = sorted(set(wanted) - set(DATABASES))
    if unknown:
        raise BackupError(f"{source}: databases this collector does not know: {', '.join(unknown)}")
    state_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    for name, file in wanted.items():
        if file != DATABASES[name]:
            raise BackupError(f"{source}: database {name!r} is {file!r} here, expected {DATABASES[name]!r}")
        tmp = state_dir / f".{file}.restoring"
        tmp.write_bytes(_member(tar, source, file))
        check = sqlite3.connect(tmp)
        try:
            result = str(check.execute("PRAGMA integrity_check").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            result = str(exc)
        finally:
            check.close()
        if result != "ok":
            tmp.unlink()
            raise BackupError(f"{source}: {file} fails SQLite's integrity check: {result}")
        staged.append((tmp, state_dir / file))
    return staged
