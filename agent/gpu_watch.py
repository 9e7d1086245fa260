"""What the agent does with each tick's GPU readings besides spooling them: health and workloads.

The sampler hands over every tick's rows and the backend's events; this turns them into the events
that must go out at once (a health change) and, every ``slow_every`` ticks, into workload changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from agent.health import HealthChecker, HealthThresholds, HealthTracker
from agent.records import GpuInfo, GpuProcessInfo, MigInstance, Rows
from agent.sources.workload import KUBELET_POD_RESOURCES, PodResourcesClient, WorkloadResolver, WorkloadTracker
from protos import telemetry_pb2 as pb

__all__ = ["GpuWatch", "PushesEvents", "default_gpu_watch"]


@runtime_checkable
class PushesEvents(Protocol):
    """A backend that can say when an event (an XID, a lost GPU) is waiting, rather than at the next tick.

    The agent sets ``on_event``; the backend calls it from any thread, then the agent drains events.
    """

    on_event: Callable[[], None] | None


class GpuWatch:
    """Health checks over every GPU row and event, and workload attribution on the slow tier."""

    def __init__(
        self,
        gpus: list[GpuInfo],
        field_ids: tuple[int, ...],
        *,
        thresholds: HealthThresholds | None = None,
        resolver: WorkloadResolver | None = None,
        slow_every: int = 10,
    ) -> None:
        self.gpus = gpus
        self.checker = HealthChecker(field_ids, thresholds)
        self.health = HealthTracker()
        self.resolver = resolver
        self.workloads = WorkloadTracker()
        self.slow_every = max(1, slow_every)
        self._ticks = 0

    def observe(self, unix_ns: int, values: Rows, events: list[pb.Event]) -> list[pb.Event]:
        """Health-change events for this tick, after taking in its XIDs and lost GPUs."""
        t = unix_ns / 1e9
        for event in events:
            kind = event.WhichOneof("kind")
            if kind == "xid":
                self.checker.observe_xid(
                    event.xid.gpu_index, event.xid.xid, event.unix_ns / 1e9 if event.unix_ns else t
                )
            elif kind == "gpu_lost":
                self.checker.mark_lost(event.gpu_lost.gpu_index, event.gpu_lost.reason)
            elif kind == "inventory":
                self.checker.mark_back(event.inventory.gpu.index)  # only a GPU that answers has an inventory
        out = []
        for info in self.gpus:
            if info.index >= len(values):
                continue
            health = self.checker.evaluate(info, t, values[info.index])
            change = self.health.update(info.index, health, unix_ns)
            if change is not None:
                out.append(change)
        self._ticks += 1
        return out

    def processes_due(self) -> bool:
        """Whether this tick reads processes (the first tick, then every ``slow_every``)."""
        return (self._ticks - 1) % self.slow_every == 0

    def attribute(
        self,
        unix_ns: int,
        processes: dict[int, list[GpuProcessInfo]],
        mig: dict[int, list[MigInstance]] | None = None,
    ) -> list[pb.Event]:
        """Workload events for GPUs whose processes, their jobs or MIG layout changed. Blocking: /proc reads."""
        if self.resolver is not None:
            processes = self.resolver.resolve(processes, {g.index: g.uuid for g in self.gpus})
        return self.workloads.update(processes, len(self.gpus), unix_ns, mig)


def default_gpu_watch(
    gpus: list[GpuInfo],
    field_ids: tuple[int, ...],
    *,
    thresholds: HealthThresholds | None = None,
    slow_every: int = 10,
) -> GpuWatch:
    """The agent's watch: this host's /proc, and the kubelet's pod-resources API where its socket exists."""
    pods = PodResourcesClient() if KUBELET_POD_RESOURCES.exists() else None
    return GpuWatch(
        gpus, field_ids, thresholds=thresholds, resolver=WorkloadResolver(pod_resources=pods), slow_every=slow_every
    )
