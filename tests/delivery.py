"""Exact delivery accounting for fault tests: what an agent produced against what the collector processed.

The collector keeps, per (host, boot), the contiguous watermark of processed sequence numbers and
how many records it applied and how many the agent's drop notices named. Sequence numbers are dense
per boot, so "every record 1..N was applied or dropped-and-counted, none twice" is exactly:
watermark = N, nothing processed above a hole, applied + dropped = watermark.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kit import Service, wait_for


@dataclass(frozen=True)
class BootProgress:
    watermark: int
    above: list[int]
    applied: int
    frames: int
    dropped: int
    duplicates: int
    elsewhere: int  # acknowledged by another collector before a failover


def collector_progress(state_dir: Path, host: str) -> dict[str, BootProgress]:
    """The collector's durable progress for ``host``, by boot id (what survives a SIGKILL)."""
    path = state_dir / "ingest-progress.sqlite"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT boot_id, watermark, above, applied_records, applied_frames, dropped_records, duplicates,"
            " elsewhere_records"
            " FROM progress WHERE host_id = ?",
            (host,),
        ).fetchall()
    finally:
        db.close()
    return {r[0]: BootProgress(r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows}


def agent_status(agent_state_dir: Path) -> dict[str, Any]:
    return json.loads((agent_state_dir / "status.json").read_text())


def check_accounting(progress: dict[str, BootProgress], produced: dict[str, int]) -> None:
    """Every boot: each record up to what it produced was applied once or dropped and counted."""
    missing = set(produced) - set(progress)
    assert not missing, f"boots the collector never heard of: {missing}"
    for boot, p in progress.items():
        # Each processed record counted once, whether below the watermark or above a hole still open.
        counted = p.applied + p.dropped + p.elsewhere
        assert counted == p.watermark + len(p.above), f"boot {boot}: counted {counted} records: {p}"
    for boot, n in produced.items():
        p = progress[boot]
        assert p.watermark >= n, f"boot {boot}: produced {n}, processed only {p.watermark}"
        assert p.above == [], f"boot {boot}: records processed above a hole {p.above[:10]}"


def drain_and_stop(agent: Service, agent_state_dir: Path, collector_state_dir: Path, host: str) -> dict[str, Any]:
    """Let the collector catch up, stop the agent cleanly, and return its final status."""

    def caught_up() -> bool:
        status = agent_status(agent_state_dir)
        progress = collector_progress(collector_state_dir, host)
        current = progress.get(status["boot_id"])
        old_done = all(
            e["boot_id"] in progress and progress[e["boot_id"]].watermark >= e["last_seq"]
            for e in status.get("recovered_epochs", [])
        )
        return old_done and current is not None and current.watermark >= status["records_produced"]

    wait_for(caught_up, timeout=60, interval=0.2, what="the collector to catch up with the agent")
    assert agent.stop() == 0
    final = agent_status(agent_state_dir)

    def delivered() -> bool:
        return collector_progress(collector_state_dir, host)[final["boot_id"]].watermark == final["records_produced"]

    if not _poll(delivered, 3.0):
        # What the stopped agent still held stays in its spool; the next start delivers it first.
        agent.start()
        wait_for(delivered, timeout=30, what="the last records of the stopped agent, from its spool")
        assert agent.stop() == 0
    return final


def _poll(condition: Callable[[], bool], seconds: float) -> bool:
    try:
        wait_for(condition, timeout=seconds)
    except AssertionError:
        return False
    return True
