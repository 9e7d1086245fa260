"""A simulated host driven into a real FleetStore and a LedgerService on the simulator's own clock."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from agent.sources.sim import LoadPattern, SimBackend
from collector.ingest.decode import DecodedFrame
from collector.ledger.config import LedgerConfig
from collector.ledger.service import LedgerService
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout
from protos.fields import CATALOG

T0 = 1_800_000_000 * 10**9
_POWER = CATALOG.gpu_ids.index(CATALOG.gpu("power_usage").id)
_UTIL = CATALOG.gpu_ids.index(CATALOG.gpu("utilization").id)
_ENERGY = CATALOG.gpu_ids.index(CATALOG.gpu("energy_consumption").id)


@dataclass
class SimHost:
    """One simulated host; ``true_j`` is the integral of the simulator's power per GPU, by job."""

    host_id: str
    gpus: int = 2
    pattern: LoadPattern = LoadPattern.MIXED
    store: FleetStore = field(default_factory=FleetStore)
    true_j: dict[str, float] = field(default_factory=dict)
    # Each stretch the simulator held a job's GPU at 0 utilisation, in seconds, as it scripted them.
    low_runs: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.t_ns = T0
        self.boot = 0
        self.sim = self._new_sim()
        self.record = self._register()
        self.jobs: dict[int, str] = {}

    def _new_sim(self) -> SimBackend:
        return SimBackend(self.host_id, count=self.gpus, pattern=self.pattern, seed=7, start_unix_ns=self.t_ns)

    def _register(self) -> HostRecord:
        inv = self.sim.open()
        hello = pb.Hello(
            host_id=self.host_id,
            boot_id=f"boot-{self.boot}",
            gpus=[pb.GpuInventory(index=g.index, uuid=g.uuid, name=g.name) for g in inv],
            host_field_ids=(),
            gpu_field_ids=CATALOG.gpu_ids,
        )
        return self.store.register(hello, FrameLayout.from_hello(hello))

    def attribute(self, gpu: int, job: str | None, *, user: str = "alice") -> None:
        """The scheduler places (or removes) a job on a GPU: a workload event as the agent sends it."""
        if job is None:
            self.jobs.pop(gpu, None)
            self.record.workloads[gpu] = []
            return
        self.jobs[gpu] = job
        self.record.workloads[gpu] = [
            pb.GpuProcess(pid=100 + gpu, name="python3", workload=pb.Workload(kind="slurm", id=job, user=user))
        ]

    def run(self, seconds: int, ledger: LedgerService | None, *, deliver: bool = True, counter: bool = True) -> None:
        """Sample once a second; frames go to the store (and the ledger ticks) only when delivered."""
        for _ in range(seconds):
            self.t_ns += 10**9
            rows = np.array(self.sim.sample(self.t_ns), dtype=np.float64)
            for gpu, job in self.jobs.items():
                self.true_j[job] = self.true_j.get(job, 0.0) + rows[gpu, _POWER] * 1.0
                runs = self.low_runs.setdefault(job, [0.0])
                if rows[gpu, _UTIL] == 0.0:
                    runs[-1] += 1.0
                elif runs[-1]:
                    runs.append(0.0)
            if not counter:
                rows[:, _ENERGY] = np.nan
            if deliver:
                self.store.apply_frame(self.record, DecodedFrame(self.t_ns, np.empty(0), rows, 0))
                if ledger is not None:
                    ledger.tick(self.t_ns / 1e9)

    def reboot(self, down_seconds: int) -> None:
        """The host goes down (no power, no samples) and comes back: a new boot, the counters from zero."""
        self.t_ns += down_seconds * 10**9
        self.boot += 1
        workloads = dict(self.record.workloads)
        self.sim = self._new_sim()
        self.record = self._register()
        self.record.workloads.update(workloads)


def ledger_for(host: SimHost, path: Path, **overrides: object) -> LedgerService:
    config = replace(LedgerConfig(path=path, idle_after=120.0, flush_interval=60.0), **overrides)
    return LedgerService(host.store, config, clock=lambda: host.t_ns / 1e9)
