"""A bounded in-memory spool: for the demo and tests; it loses what it holds when the agent stops."""

from __future__ import annotations

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


class MemorySpool:
    def __init__(self, max_records: int = 3600) -> None:
        self.max_records = max_records
        self._epochs: dict[str, _Epoch] = {}
        self._current: str | None = None
        self._drops: list[SpoolDrop] = []

    def open_epoch(self, hello: pb.Hello) -> None:
        self._epochs[hello.boot_id] = _Epoch(hello)
        self._current = hello.boot_id

    def append(self, message: pb.AgentMessage) -> int:
        if self._current is None:
            raise RuntimeError("append before open_epoch")
        epoch = self._epochs[self._current]
        epoch.last_seq += 1
        message.seq = epoch.last_seq
        epoch.records.append(message)
        if sum(len(e.records) for e in self._epochs.values()) > self.max_records:
            self._drop_oldest()
        return epoch.last_seq

    def _drop_oldest(self) -> None:
        for boot_id, epoch in self._epochs.items():
            if epoch.records:
                dropped = epoch.records.popleft()
                self._drops.append(SpoolDrop(boot_id, dropped.seq, dropped.seq, 1, dropped.ByteSize(), "record budget"))
                return

    def epochs(self) -> list[str]:
        return list(self._epochs)

    def hello(self, boot_id: str) -> pb.Hello:
        return self._epochs[boot_id].hello

    def read(self, boot_id: str, after_seq: int, limit: int, *, events_only: bool = False) -> list[pb.AgentMessage]:
        out = []
        for record in self._epochs[boot_id].records:
            if record.seq <= after_seq or (events_only and not record.HasField("event")):
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def ack(self, boot_id: str, seq: int) -> None:
        epoch = self._epochs.get(boot_id)
        if epoch is None:
            return
        epoch.acked = max(epoch.acked, seq)
        while epoch.records and epoch.records[0].seq <= seq:
            epoch.records.popleft()
        if not epoch.records and boot_id != self._current and epoch.acked >= epoch.last_seq:
            del self._epochs[boot_id]

    def last_seq(self, boot_id: str) -> int:
        return self._epochs[boot_id].last_seq

    def acked_seq(self, boot_id: str) -> int:
        return self._epochs[boot_id].acked

    def take_drops(self) -> list[SpoolDrop]:
        drops, self._drops = self._drops, []
        return drops

    def close(self) -> None:
        return None
