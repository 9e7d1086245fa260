"""A bounded in-memory spool: for the demo and tests; it loses what it holds when the agent stops.

Like the disk spool, a record dropped to stay within budget leaves a drop notice in its place (a
SpoolDropEvent carrying the seq of the last record it covers), so the collector learns of the hole,
counts it, and its acknowledged watermark moves past it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from agent.spool.base import SpoolDrop
from protos import telemetry_pb2 as pb


@dataclass
class _Epoch:
    hello: pb.Hello
    records: deque[pb.AgentMessage] = field(default_factory=deque)
    last_seq: int = 0
    acked: int = 0


def _is_notice(message: pb.AgentMessage) -> bool:
    return message.HasField("event") and message.event.HasField("spool_drop")


class MemorySpool:
    def __init__(self, max_records: int = 3600) -> None:
        self.max_records = max(2, max_records)
        self._epochs: dict[str, _Epoch] = {}
        self._current: str | None = None
        self._drops: list[SpoolDrop] = []
        self._count = 0
        self._lock = threading.Lock()  # the shipper may read from a worker thread

    def open_epoch(self, hello: pb.Hello) -> None:
        kept = pb.Hello()
        kept.CopyFrom(hello)  # the spool's own: the caller may go on changing theirs
        with self._lock:
            self._epochs[hello.boot_id] = _Epoch(kept)
            self._current = hello.boot_id

    def append(self, message: pb.AgentMessage) -> int:
        with self._lock:
            if self._current is None:
                raise RuntimeError("append before open_epoch")
            epoch = self._epochs[self._current]
            epoch.last_seq += 1
            message.seq = epoch.last_seq
            epoch.records.append(message)
            self._count += 1
            while self._count > self.max_records and self._drop_oldest():
                pass
            return epoch.last_seq

    def _drop_oldest(self) -> bool:
        for boot_id, epoch in self._epochs.items():
            records = epoch.records
            if len(records) < 2 and boot_id == self._current:
                return False
            if not records:
                continue
            if len(records) == 1 and _is_notice(records[0]):
                continue  # only a notice left in this epoch: it must stay
            notice = records.popleft() if _is_notice(records[0]) else None
            dropped = records.popleft()
            size = dropped.ByteSize()
            first = notice.event.spool_drop.first_seq if notice is not None else dropped.seq
            count = 1 + (notice.event.spool_drop.records if notice is not None else 0)
            total = size + (notice.event.spool_drop.bytes if notice is not None else 0)
            records.appendleft(
                pb.AgentMessage(
                    seq=dropped.seq,
                    event=pb.Event(
                        unix_ns=dropped.event.unix_ns if dropped.HasField("event") else 0,
                        spool_drop=pb.SpoolDropEvent(
                            first_seq=first, last_seq=dropped.seq, records=count, bytes=total, reason="record budget"
                        ),
                    ),
                )
            )
            self._count -= 1 if notice is None else 2
            self._count += 1
            self._drops.append(SpoolDrop(boot_id, dropped.seq, dropped.seq, 1, size, "record budget"))
            return True
        return False

    def epochs(self) -> list[str]:
        with self._lock:
            return list(self._epochs)

    def hello(self, boot_id: str) -> pb.Hello:
        with self._lock:
            return self._epochs[boot_id].hello

    def update_hello(self, hello: pb.Hello) -> None:
        with self._lock:
            if hello.boot_id != self._current:
                raise ValueError(f"update_hello for boot {hello.boot_id!r}, which is not the current epoch")
            current = pb.Hello()
            current.CopyFrom(hello)
            self._epochs[hello.boot_id].hello = current

    def read(self, boot_id: str, after_seq: int, limit: int, *, events_only: bool = False) -> list[pb.AgentMessage]:
        out: list[pb.AgentMessage] = []
        with self._lock:
            epoch = self._epochs.get(boot_id)
            if epoch is None:
                return out
            for record in epoch.records:
                if record.seq <= after_seq or (events_only and not record.HasField("event")):
                    continue
                out.append(record)
                if len(out) >= limit:
                    break
        return out

    def ack(self, boot_id: str, seq: int) -> None:
        with self._lock:
            epoch = self._epochs.get(boot_id)
            if epoch is None:
                return
            epoch.acked = max(epoch.acked, seq)
            while epoch.records and epoch.records[0].seq <= seq:
                epoch.records.popleft()
                self._count -= 1
            if not epoch.records and boot_id != self._current and epoch.acked >= epoch.last_seq:
                del self._epochs[boot_id]

    def last_seq(self, boot_id: str) -> int:
        with self._lock:
            return self._epochs[boot_id].last_seq

    def acked_seq(self, boot_id: str) -> int:
        with self._lock:
            return self._epochs[boot_id].acked

    def take_drops(self) -> list[SpoolDrop]:
        with self._lock:
            drops, self._drops = self._drops, []
            return drops

    def close(self) -> None:
        return None
