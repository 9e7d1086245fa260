"""Which collector an agent prefers: rendezvous (highest-random-weight) hashing on its host id.

Every agent ranks the same collector list by a hash of (host id, collector), so hosts spread evenly
over the collectors, each host always prefers the same one, and when a collector is added or removed
only the hosts that ranked it first move. Failover walks the rest of the ranking in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(host_id: str, target: str) -> int:
    """The rendezvous weight of ``target`` for ``host_id``: stable across processes and versions."""
    digest = hashlib.blake2b(f"{host_id}\x00{target}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(host_id: str, targets: Iterable[str]) -> tuple[str, ...]:
    """``targets`` in this host's order of preference, duplicates dropped; ties broken by name."""
    unique = dict.fromkeys(targets)
    return tuple(sorted(unique, key=lambda t: (-weight(host_id, t), t)))
