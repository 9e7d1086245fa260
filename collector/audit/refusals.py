"""Refused streams in the audit log: summed by reason, one record a minute at most.

A fleet with an expired CA refuses thousands of streams a minute; the audit log gets one line saying
how many, for which reasons, from which peers (the first few), not thousands.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable

from collector.audit.log import AuditLog

EVERY_S = 60.0
PEERS_KEPT = 10


class RefusalSummary:
    def __init__(self, audit: AuditLog, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.audit = audit
        self.monotonic = monotonic
        self._lock = threading.Lock()  # refusals come from the event loop and from the stderr pump
        self._counts: Counter[str] = Counter()
        self._peers: list[str] = []
        self._last = -EVERY_S

    def refused(self, reason: str, peer: str = "") -> None:
        with self._lock:
            self._counts[reason] += 1
            if peer and peer not in self._peers and len(self._peers) < PEERS_KEPT:
                self._peers.append(peer)
            if self.monotonic() - self._last < EVERY_S:
                return
            self._last = self.monotonic()
            counts, peers = dict(self._counts), list(self._peers)
            self._counts.clear()
            self._peers.clear()
        self._write(counts, peers)

    def flush(self) -> None:
        """Write what is pending (at shutdown)."""
        with self._lock:
            counts, peers = dict(self._counts), list(self._peers)
            self._counts.clear()
            self._peers.clear()
        if counts:
            self._write(counts, peers)

    def _write(self, counts: dict[str, int], peers: list[str]) -> None:
        self.audit.record(
            actor="agents",
            source=",".join(peers),
            action="stream.refused",
            object=json.dumps(counts, sort_keys=True),
            result="denied",
        )
