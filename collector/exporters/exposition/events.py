"""Tallies of agent events that the fleet store does not keep but dashboards and rules need.

Hangs off the ingest path as an ``IngestObserver``: per-host records the agent's spool had to drop
(so a rule can page on a host losing data), and each GPU's latest XID (dcgm-exporter publishes it).
"""

from __future__ import annotations

from collector.store import HostRecord
from protos import telemetry_pb2 as pb

__all__ = ["EventTallies"]


class EventTallies:
    """Counts kept per host id and per (host id, GPU uuid), so they survive reconnects and new boots."""

    def __init__(self) -> None:
        self.spool_dropped_records: dict[str, int] = {}
        self.spool_drops: dict[str, int] = {}
        self.last_xid: dict[tuple[str, str], int] = {}

    def frame_applied(self, record: HostRecord, unix_ns: int) -> None:
        return None

    def event_applied(self, record: HostRecord, event: pb.Event) -> None:
        kind = event.WhichOneof("kind")
        if kind == "spool_drop":
            host = record.host_id
            self.spool_dropped_records[host] = self.spool_dropped_records.get(host, 0) + event.spool_drop.records
            self.spool_drops[host] = self.spool_drops.get(host, 0) + 1
        elif kind == "xid" and event.xid.gpu_index < len(record.gpus):
            self.last_xid[(record.host_id, record.gpus[event.xid.gpu_index].uuid)] = event.xid.xid
