"""Reports over the ledger: hourly usage summed by job, user, account, host or model, with cost and waste."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.ledger.book import JobRecord

BY = ("job", "user", "account", "host", "model")
UNALLOCATED = "(unallocated)"


@dataclass(frozen=True, slots=True)
class Prices:
    per_kwh: float = 0.0
    per_gpu_hour: float = 0.0
    currency: str = "USD"


def _group(row: Mapping[str, Any], by: str) -> str:
    if not row["kind"]:
        return UNALLOCATED
    if by == "job":
        return f"{row['kind']}:{row['job_id']}"
    return str(row[by]) or "(none)"


def summarise(usage: Iterable[Mapping[str, Any]], jobs: Iterable[JobRecord], by: str, prices: Prices) -> dict[str, Any]:
    """Groups (most allocated first) and totals; unallocated GPU-hours are their own group and total."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}; got {by!r}")
    sums: dict[str, dict[str, float]] = {}
    for row in usage:
        g = sums.setdefault(_group(row, by), dict.fromkeys(("gpu_s", "busy_s", "idle_s", "energy_j", "gap_s"), 0.0))
        g["gpu_s"] += row["allocated_s"]
        g["busy_s"] += row["busy_s"]
        g["idle_s"] += row["idle_s"]
        g["energy_j"] += row["energy_j"]
        g["gap_s"] += row["gap_s"]
    details = _job_details(jobs) if by == "job" else {}
    groups = [
        _figures(name, s, prices, allocated=name != UNALLOCATED) | details.get(name, {}) for name, s in sums.items()
    ]
    groups.sort(key=lambda g: (g["name"] == UNALLOCATED, -g["allocated_gpu_hours"], g["name"]))
    allocated = [g for g in groups if g["name"] != UNALLOCATED]
    totals = {
        key: round(sum(g[key] for g in allocated), 6)
        for key in ("allocated_gpu_hours", "busy_gpu_hours", "idle_gpu_hours", "energy_kwh", "cost", "waste_cost")
    }
    unalloc = next((g for g in groups if g["name"] == UNALLOCATED), None)
    totals["unallocated_gpu_hours"] = unalloc["gpu_hours"] if unalloc else 0.0
    totals["unallocated_energy_kwh"] = unalloc["energy_kwh"] if unalloc else 0.0
    totals["stranded_gpu_hours"] = round(totals["unallocated_gpu_hours"] + totals["idle_gpu_hours"], 6)
    return {"by": by, "currency": prices.currency, "groups": groups, "totals": totals}


def _figures(name: str, s: Mapping[str, float], prices: Prices, *, allocated: bool) -> dict[str, Any]:
    hours, kwh = s["gpu_s"] / 3600, s["energy_j"] / 3.6e6
    idle_h = s["idle_s"] / 3600
    return {
        "name": name,
        "gpu_hours": round(hours, 6),
        "allocated_gpu_hours": round(hours, 6) if allocated else 0.0,
        "busy_gpu_hours": round(s["busy_s"] / 3600, 6),
        "idle_gpu_hours": round(idle_h, 6),
        "gap_gpu_hours": round(s["gap_s"] / 3600, 6),
        "energy_kwh": round(kwh, 6),
        "cost": round(kwh * prices.per_kwh + (hours * prices.per_gpu_hour if allocated else 0.0), 4),
        "waste_cost": round(idle_h * prices.per_gpu_hour, 4),
    }


def _job_details(jobs: Iterable[JobRecord]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for job in jobs:
        name = f"{job.kind}:{job.job_id}"
        d = out.setdefault(
            name,
            {"user": job.user, "account": job.account, "start_ns": job.start_ns, "end_ns": job.end_ns, "hosts": []},
        )
        d["start_ns"] = min(d["start_ns"], job.start_ns)
        d["end_ns"] = None if job.end_ns is None or d["end_ns"] is None else max(d["end_ns"], job.end_ns)
        d["hosts"].append({"host": job.host, "gpus": sorted(job.gpus), "model": job.model})
        d["peak_power_watts"] = max(d.get("peak_power_watts", 0.0), job.peak_w)
        d["mean_power_watts"] = round(job.mean_power_w, 3)
        d["busy_source"] = job.busy_source
        d["energy_gaps"] = d.get("energy_gaps", 0) + job.gaps
    return out
