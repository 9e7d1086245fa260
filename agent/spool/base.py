"""The spool protocol shared by the in-memory and on-disk spools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from protos import telemetry_pb2 as pb


@dataclass(frozen=True, slots=True)
class SpoolDrop:
    """Records dropped unsent to stay within budget: reported as an event and a metric."""

    boot_id: str
    first_seq: int
    last_seq: int
    records: int
    bytes: int
    reason: str


class Spool(Protocol):
    def open_epoch(self, hello: pb.Hello) -> None:
        """Start the current boot's log; earlier boots' unacknowledged records stay."""
        ...

    def append(self, message: pb.AgentMessage) -> int:
        """Give ``message`` the next sequence number of the current epoch, keep it, return the number."""
        ...

    def epochs(self) -> list[str]:
        """Boot ids holding records or still current, oldest first; the current one last."""
        ...

    def hello(self, boot_id: str) -> pb.Hello: ...

    def update_hello(self, hello: pb.Hello) -> None:
        """The current epoch's Hello, changed under the running agent (a GPU's inventory): every later
        connect sends this one, so a collector never goes back to what the GPUs were at start."""
        ...

    def read(self, boot_id: str, after_seq: int, limit: int, *, events_only: bool = False) -> list[pb.AgentMessage]:
        """Records with seq > after_seq in order, at most ``limit``."""
        ...

    def ack(self, boot_id: str, seq: int) -> None:
        """The collector processed everything up to ``seq``: delete it. An old epoch emptied is forgotten."""
        ...

    def last_seq(self, boot_id: str) -> int: ...

    def take_drops(self) -> list[SpoolDrop]:
        """Drops since the last call, so the daemon can report them."""
        ...

    def close(self) -> None:
        """Flush and release; safe to call twice."""
        ...
