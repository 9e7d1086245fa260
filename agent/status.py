"""The agent's accounting in a small JSON file under its state dir: what it produced, dropped and shipped.

Written atomically (temporary file, then rename) every few seconds and at shutdown, so an operator
or a test can compare it with the collector's per-host counters: produced = applied + dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.daemon import Sampler
from agent.shipper import Shipper
from agent.spool.disk import DiskSpool

STATUS_FILE = "status.json"


def agent_accounting(sampler: Sampler, shipper: Shipper, now: Callable[[], float] = time.time) -> dict[str, Any]:
    """The agent's counts as one JSON-ready dict."""
    spool = sampler.spool
    boot = sampler.boot_id
    current_last = spool.last_seq(boot) if boot in spool.epochs() else 0
    status: dict[str, Any] = {
        "host_id": sampler.host_id,
        "boot_id": boot,
        "updated_unix": now(),
        "records_produced": current_last,  # seqs 1..records_produced of this boot exist
        "frames_produced": sampler.stats.ticks,
        "events_produced": sampler.stats.events,
        "spool_dropped_records": sampler.stats.spool_dropped_records,
        "shipper": {
            "connected_to": shipper.stats.connected_to,
            "connects": shipper.stats.connects,
            "sent": shipper.stats.sent,
            "acked": shipper.stats.acked,
            "errors": dict(shipper.stats.errors),
        },
        "spool": {"kind": type(spool).__name__, "epochs": spool.epochs()},
    }
    if isinstance(spool, DiskSpool):
        st = spool.stats
        status["spool"].update(
            bytes=spool.size_bytes,
            appended=st.appended,
            dropped_records=st.dropped_records,
            dropped_bytes=st.dropped_bytes,
            corrupt_records=st.corrupt_records,
            write_errors=st.write_errors,
            fsyncs=st.fsyncs,
        )
        status["recovered_epochs"] = [
            {"boot_id": r.boot_id, "last_seq": r.last_seq, "records": r.records, "corrupt_records": r.corrupt_records}
            for r in spool.recovered
        ]
    return status


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace ``path`` atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
    tmp.replace(path)


async def publish_status(path: Path, sampler: Sampler, shipper: Shipper, interval: float = 1.0) -> None:
    """Rewrite the status file every ``interval`` seconds until cancelled, and once more on the way out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(OSError, KeyError):
                await asyncio.to_thread(write_status, path, agent_accounting(sampler, shipper))
    finally:
        with contextlib.suppress(OSError, KeyError):
            write_status(path, agent_accounting(sampler, shipper))
