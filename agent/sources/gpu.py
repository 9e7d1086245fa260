"""The one GPU interface the rest of the agent sees, and the errors backends translate into.

Backends (nvml, sim, replay) raise only these errors: NVML's own exceptions never cross this line.
"""

from __future__ import annotations

from typing import Protocol

from agent.records import GpuInfo, GpuProcessInfo, MigInstance, Rows
from protos import telemetry_pb2 as pb


class GpuError(Exception):
    """Base for errors a GPU backend reports."""


class BackendUnavailable(GpuError):
    """The backend cannot start: no driver, no library, no GPUs, or a failed init."""


class GpuLost(GpuError):
    """A GPU has fallen off the bus or stopped answering."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"GPU {index} lost: {reason}")
        self.index = index
        self.reason = reason


class NotSupported(GpuError):
    """The GPU or driver does not offer this reading."""


class GpuBackend(Protocol):
    """A source of GPU inventory, per-tick values and immediate events."""

    name: str

    def open(self) -> list[GpuInfo]:
        """Initialise and return the inventory; raises BackendUnavailable."""
        ...

    @property
    def field_ids(self) -> tuple[int, ...]:
        """GPU field ids, in the column order of ``sample``."""
        ...

    def sample(self, unix_ns: int) -> Rows:
        """One row per GPU, one column per field id; NaN where nothing was read."""
        ...

    def processes(self) -> dict[int, list[GpuProcessInfo]]:
        """Compute processes per GPU index (slow tier)."""
        ...

    def mig_instances(self) -> dict[int, list[MigInstance]]:
        """MIG instances and their memory per GPU index, for GPUs with MIG on (slow tier)."""
        ...

    def drain_events(self) -> list[pb.Event]:
        """Events seen since the last call: XIDs, GPUs lost, inventory changes."""
        ...

    def close(self) -> None:
        """Release the backend; safe to call twice."""
        ...
