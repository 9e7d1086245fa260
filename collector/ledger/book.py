"""The ledger's books in memory: each job's running totals, hourly usage, and per-host and per-user counters.

Pure: the service feeds it metered steps with who owned each row, and flushes it to SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collector.ledger.meter import Step

HOUR_NS = 3600 * 10**9
OTHER = "__other__"  # the rollup label for users and accounts past the cardinality cap


@dataclass(frozen=True, slots=True)
class Owner:
    """A job holding a GPU, as attribution names it."""

    kind: str  # slurm, kubernetes, systemd, container; "unattributed" for a process of no known job
    id: str
    name: str = ""
    user: str = ""
    account: str = ""  # the Kubernetes namespace; empty where attribution does not say


@dataclass(frozen=True, slots=True)
class RowContext:
    host: str
    model: str
    gpu: int
    owners: tuple[Owner, ...]  # empty: nobody holds the GPU (unallocated)


@dataclass
class JobRecord:
    host: str
    kind: str
    job_id: str
    name: str
    user: str
    account: str
    model: str
    start_ns: int
    last_ns: int
    end_ns: int | None = None
    gpus: set[int] = field(default_factory=set)
    allocated_s: float = 0.0
    busy_s: float = 0.0
    idle_s: float = 0.0
    energy_j: float = 0.0
    estimated_j: float = 0.0
    gap_s: float = 0.0
    gaps: int = 0
    resets: int = 0
    peak_w: float = 0.0
    sm_s: float = 0.0  # GPU-seconds whose busy share came from SM activity

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.host, self.kind, self.job_id)

    @property
    def busy_source(self) -> str:
        """Which measure the busy figure rests on: sm_activity, utilization, or both over the job."""
        measured = self.allocated_s - self.gap_s
        if self.sm_s <= 0:
            return "utilization"
        return "sm_activity" if self.sm_s >= measured - 1e-6 else "sm_activity+utilization"

    @property
    def mean_power_w(self) -> float:
        """Energy over allocated GPU-seconds: the mean draw of one of the job's GPUs."""
        return self.energy_j / self.allocated_s if self.allocated_s > 0 else 0.0


UsageKey = tuple[int, str, str, str, str, str, str]  # hour start ns, host, model, kind, job id, user, account
# allocated, busy, idle, energy, gap seconds; unallocated rows have an empty kind and job id
USAGE_COLUMNS = ("allocated_s", "busy_s", "idle_s", "energy_j", "gap_s")
HOST_COUNTERS = ("energy_j", "allocated_s", "busy_s", "idle_s", "unallocated_s", "gap_s")
ROLLUP_COUNTERS = ("energy_j", "allocated_s", "busy_s", "idle_s")


class Rollup:
    """Counters per user (or account), with at most ``cap`` names; the rest share ``__other__``.

    A name keeps its series once admitted, so every series stays a true counter.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, values: tuple[float, ...]) -> None:
        if name not in self.values:
            name = name if len(self.values) < self.cap else OTHER
        totals = self.values.setdefault(name, [0.0] * len(ROLLUP_COUNTERS))
        for i, v in enumerate(values):
            totals[i] += v


class Ledger:
    def __init__(self, *, rollup_cap: int = 100) -> None:
        self.jobs: dict[tuple[str, str, str], JobRecord] = {}
        self.usage: dict[UsageKey, list[float]] = {}  # since the last flush
        self.hosts: dict[str, list[float]] = {}  # since the collector started
        self.users = Rollup(rollup_cap)
        self.accounts = Rollup(rollup_cap)
        self.dirty: set[tuple[str, str, str]] = set()

    def add(self, step: Step, contexts: list[RowContext], t_ns: list[int]) -> None:
        """Book one metered step; ``contexts`` and ``t_ns`` are aligned with ``step.rows``.

        Rows are summed per (host, model, owners) with numpy first, so the Python work is per job
        rather than per GPU.
        """
        # Keyed by the owners tuple's identity: cheap to hash, and the service hands the same tuple
        # to every GPU of a job; equal tuples that are not the same object only make more groups.
        groups: dict[tuple[str, str, int], int] = {}
        keys: list[tuple[str, str, tuple[Owner, ...]]] = []
        gpus: list[set[int]] = []
        times: list[int] = []
        gid = np.empty(len(contexts), dtype=np.int64)
        for i, ctx in enumerate(contexts):
            g = groups.setdefault((ctx.host, ctx.model, id(ctx.owners)), len(groups))
            if g == len(gpus):
                keys.append((ctx.host, ctx.model, ctx.owners))
                gpus.append(set())
                times.append(t_ns[i])
            gpus[g].add(ctx.gpu)
            times[g] = max(times[g], t_ns[i])
            gid[i] = g
        n = len(groups)
        gap_s = np.where(step.gap, step.dt, 0.0)

        def total(values: np.ndarray) -> list[float]:
            return np.bincount(gid, weights=values, minlength=n).tolist()

        dt, busy, idle, energy = total(step.dt), total(step.busy_s), total(step.idle_s), total(step.energy_j)
        estimated, gaps_s = total(step.estimated_j), total(gap_s)
        gaps, resets = total(step.gap.astype(np.float64)), total(step.reset.astype(np.float64))
        sm_s = total(np.where(step.sm, step.dt, 0.0))
        peak = np.zeros(n)
        np.maximum.at(peak, gid, np.nan_to_num(step.power_w))
        peaks = peak.tolist()
        for g, (host_id, model, owners) in enumerate(keys):
            host = self.hosts.setdefault(host_id, [0.0] * len(HOST_COUNTERS))
            host[0] += energy[g]
            host[5] += gaps_s[g]
            hour = times[g] - times[g] % HOUR_NS
            if not owners:
                host[4] += dt[g]
                self._usage((hour, host_id, model, "", "", "", ""), (dt[g], busy[g], 0.0, energy[g], gaps_s[g]))
                continue
            host[1] += dt[g]
            host[2] += busy[g]
            host[3] += idle[g]
            share = 1.0 / len(owners)  # GPUs shared by several jobs split what they did evenly
            part = (dt[g] * share, busy[g] * share, idle[g] * share, energy[g] * share, gaps_s[g] * share)
            for owner in owners:
                job = self._job(host_id, model, owner, times[g])
                job.last_ns = max(job.last_ns, times[g])
                job.end_ns = None
                job.gpus |= gpus[g]
                job.allocated_s += part[0]
                job.busy_s += part[1]
                job.idle_s += part[2]
                job.energy_j += part[3]
                job.estimated_j += estimated[g] * share
                job.gap_s += part[4]
                job.gaps += int(gaps[g])
                job.resets += int(resets[g])
                job.sm_s += sm_s[g] * share
                job.peak_w = max(job.peak_w, peaks[g])
                self.dirty.add(job.key)
                self._usage((hour, host_id, model, owner.kind, owner.id, owner.user, owner.account), part)
                rolled = (part[3], part[0], part[1], part[2])
                self.users.add(owner.user, rolled)
                self.accounts.add(owner.account, rolled)

    def _job(self, host: str, model: str, owner: Owner, t_ns: int) -> JobRecord:
        key = (host, owner.kind, owner.id)
        job = self.jobs.get(key)
        if job is None:
            job = JobRecord(host, owner.kind, owner.id, owner.name, owner.user, owner.account, model, t_ns, t_ns)
            self.jobs[key] = job
        return job

    def _usage(self, key: UsageKey, values: tuple[float, ...]) -> None:
        totals = self.usage.setdefault(key, [0.0] * len(USAGE_COLUMNS))
        for i, v in enumerate(values):
            totals[i] += v

    def close_jobs(self, now_ns: int, grace_ns: int, holding: set[tuple[str, str, str]]) -> list[JobRecord]:
        """End the jobs no GPU has shown for ``grace_ns``: a job restarting its processes stays one job."""
        ended = []
        for key, job in list(self.jobs.items()):
            if key in holding or job.end_ns is not None or now_ns - job.last_ns < grace_ns:
                continue
            job.end_ns = job.last_ns
            self.dirty.add(key)
            ended.append(job)
        return ended
