"""An append-only, hash-chained JSON-lines file of who did what, from where, with what result.

Fields follow a Kubernetes audit event (``stageTimestamp``, ``user``, ``sourceIPs``, ``verb``,
``objectRef``, ``responseStatus``, ``auditID``) in plain names. Each line carries the hash of the
one before it and its own, so an edited, removed or reordered line is found by ``verify``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditRecord:
    time: float
    actor: str  # basic-auth user, certificate CN, or the local user of a command
    source: str  # peer address, or "local"
    action: str  # e.g. "silence.add", "alert.post", "config.reload", "pki.issue"
    object: str  # what it acted on: a path, a silence id, a file
    result: str  # "success", "denied", "failure", or an HTTP status
    request_id: str
    seq: int = 0
    prev: str = GENESIS
    hash: str = ""


def _digest(record: AuditRecord) -> str:
    fields = asdict(record)
    fields.pop("hash")
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _last(path: Path) -> tuple[int, str]:
    """Sequence and hash of the last complete record of an existing file."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            lines = [line for line in fh.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return 0, GENESIS
    for line in reversed(lines):
        try:
            data = json.loads(line)
            return int(data["seq"]), str(data["hash"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line (crash mid-write): chain on from the one before
    return 0, GENESIS


class AuditLog:
    """Appends records; ``record(...)`` is the one call other features make."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        on_record: Callable[[AuditRecord], None] = lambda record: None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.on_record = on_record
        self._lock = threading.Lock()  # the stderr pump and the event loop both write
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._prev = _last(path)

    def record(
        self, *, actor: str, source: str, action: str, object: str, result: str, request_id: str = ""
    ) -> AuditRecord:
        with self._lock:
            request_id = request_id or uuid.uuid4().hex
            seq = self._seq + 1
            entry = AuditRecord(self.clock(), actor, source, action, object, result, request_id, seq, self._prev)
            entry = AuditRecord(**{**asdict(entry), "hash": _digest(entry)})
            line = json.dumps(asdict(entry), ensure_ascii=False) + "\n"
            # O_APPEND, 0600 from the start: nothing but appends, and no window where others can read it.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            self._seq, self._prev = entry.seq, entry.hash
        self.on_record(entry)
        return entry


def verify(lines: Iterable[str]) -> tuple[int, str]:
    """(records checked, "") for an intact chain, or (number of the first bad record, what is wrong)."""
    prev, expected, count = GENESIS, 1, 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            entry = AuditRecord(**data)
        except (ValueError, TypeError) as exc:
            return expected, f"line {number}: not an audit record ({exc})"
        if entry.seq != expected:
            return expected, f"line {number}: record {expected} is missing (found record {entry.seq})"
        if entry.prev != prev:
            return expected, f"line {number}: record {expected} does not follow the record before it"
        if _digest(entry) != entry.hash:
            return expected, f"line {number}: record {expected} was altered (its hash does not match)"
        prev, expected, count = entry.hash, expected + 1, count + 1
    return count, ""
