"""The ledger's /metrics series: counters per host and for the fleet, capped rollups per user and account.

No series carries a job id except the bounded ``gpulse_ledger_top_idle_job_gpu_seconds`` gauge
(at most ``top_jobs`` series): the per-second telemetry stays free of job ids.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.ledger.book import HOST_COUNTERS, ROLLUP_COUNTERS, Rollup
from collector.ledger.service import LedgerService

_NAMES = {
    "energy_j": ("energy_joules", "Energy the GPUs used"),
    "allocated_s": ("allocated_gpu_seconds", "GPU-seconds held by a job"),
    "busy_s": ("busy_gpu_seconds", "GPU-seconds of work: activity (SM activity, else utilisation) x time"),
    "idle_s": ("idle_gpu_seconds", "GPU-seconds held by a job while idle (below idle_threshold for over idle_after)"),
    "unallocated_s": ("unallocated_gpu_seconds", "GPU-seconds no job held"),
    "gap_s": ("gap_gpu_seconds", "GPU-seconds between samples further apart than max_gap (activity unknown)"),
}


class LedgerCollector(Collector):
    def __init__(self, service: LedgerService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        ledger = self.service.ledger
        for i, key in enumerate(HOST_COUNTERS):
            suffix, help_text = _NAMES[key]
            fleet = CounterMetricFamily(f"gpulse_ledger_fleet_{suffix}", f"{help_text}, whole fleet.")
            fleet.add_metric([], sum(v[i] for v in ledger.hosts.values()))
            yield fleet
            per_host = CounterMetricFamily(f"gpulse_ledger_host_{suffix}", f"{help_text}, per host.", labels=["host"])
            for host, values in sorted(ledger.hosts.items()):
                per_host.add_metric([host], values[i])
            yield per_host
        yield from _rollup("user", ledger.users)
        yield from _rollup("account", ledger.accounts)
        states = GaugeMetricFamily(
            "gpulse_ledger_gpus", "GPUs by what they did at their last sample.", labels=["host", "state"]
        )
        for host, counts in sorted(self.service.gpu_states().items()):
            for state, n in counts.items():
                states.add_metric([host, state], n)
        yield states
        top = GaugeMetricFamily(
            "gpulse_ledger_top_idle_job_gpu_seconds",
            "Idle GPU-seconds of the running jobs idle longest (at most [ledger] top_jobs series).",
            labels=["job_kind", "job_id", "user", "host"],
        )
        for job in self.service.top_idle_jobs():
            top.add_metric([job.kind, job.job_id, job.user, job.host], job.idle_s)
        yield top
        refused = CounterMetricFamily(
            "gpulse_ledger_energy_readings_refused",
            "Energy counter readings that rose faster than any GPU draws; power was used for those intervals.",
        )
        refused.add_metric([], self.service.energy_refused)
        yield refused


def _rollup(label: str, rollup: Rollup) -> Iterator[Metric]:
    for i, key in enumerate(ROLLUP_COUNTERS):
        suffix, help_text = _NAMES[key]
        family = CounterMetricFamily(
            f"gpulse_ledger_{label}_{suffix}",
            f"{help_text}, per {label} (at most [ledger] rollup_cap {label}s, the rest as __other__).",
            labels=[label],
        )
        for name, values in sorted(rollup.values.items()):
            family.add_metric([name], values[i])
        yield family
