"""Detection quality: the scenario library scored for recall, precision and latency, and false alerts on healthy fleets.

    .venv/bin/python -m bench.detection_eval                      # the library once, 1 healthy GPU-day
    .venv/bin/python -m bench.detection_eval --seeds 3 --healthy-gpu-days 200   # the figures in BENCHMARKS.md

Every scenario is a fleet of simulated hosts (sim H100s, seeded) with mixed load — steady training
with checkpoint dips, jobs that start and stop, bursty request-driven load, a sinusoidal inference
load, idle hosts — and a diurnal ambient swing, with one fault from the sim catalogue injected on
one GPU at a chosen severity. The store and the detection engine the collector runs (default rule
pack, peer and baseline detectors) are driven in-process on synthetic time at the agents' 1 s
interval, so hours of fleet time take seconds and nothing depends on the machine's speed.

Scoring, per fault kind:
- a scenario is detected when an alert (any severity) fires on the faulty GPU (or its host, for a
  host-level alert) after the fault starts; latency is from the fault's start to that firing;
- precision is the share of all firing alerts in that kind's scenarios that point at the faulty
  GPU after its fault started; anything on another GPU, or before the fault, is a false alert;
- healthy runs have no faults at all: every firing alert there is false, reported per 1,000
  GPU-days with a 95% upper bound (a run with no false alerts cannot show a rate below ~3 / N).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from agent.hello import build_hello
from agent.records import HostInfo
from agent.sources.sim import Fault, FaultKind, LoadPattern, SimBackend
from collector.alert import AlertState
from collector.detect.offline import OfflineFleet
from collector.detect.sinks import RecordingSink

HARD = (FaultKind.XID, FaultKind.GPU_LOST, FaultKind.DBE, FaultKind.REMAP_FAILURE, FaultKind.REMAP_PENDING)
GRAY = (FaultKind.STRAGGLER, FaultKind.THERMAL_RUNAWAY, FaultKind.HUNG)
SEVERITIES = (0.1, 0.5, 0.9)
# XID scenarios cycle through one code of each class of NVIDIA's catalogue that pages or tickets.
XID_CODES = (79, 48, 119, 74, 94, 62)
LOADED = (LoadPattern.TRAINING, LoadPattern.BURSTY, LoadPattern.INFERENCE, LoadPattern.MIXED)
FLEET_PATTERNS = (
    LoadPattern.TRAINING,
    LoadPattern.MIXED,
    LoadPattern.BURSTY,
    LoadPattern.INFERENCE,
    LoadPattern.IDLE,
    LoadPattern.TRAINING,
)
INTERVAL = 1.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: FaultKind | None  # None: a healthy fleet
    severity: float
    seed: int
    hosts: int = 6
    gpus: int = 8
    warmup: float = 300.0  # seconds before the fault: baselines learn, jobs settle
    after: float = 180.0  # seconds watched after the fault starts
    xid: int = 0


@dataclass
class Outcome:
    kind: str
    severity: float
    seed: int
    gpu_seconds: float
    detected: bool = False
    latency: float | None = None
    true_alerts: int = 0
    false_alerts: list[tuple[str, str]] = field(default_factory=list)  # (alertname, severity)


def _fleet(scenario: Scenario, rng: np.random.Generator) -> tuple[list[SimBackend], int, int]:
    """Hosts with mixed load; returns them and the faulty (host, gpu)."""
    patterns = [FLEET_PATTERNS[(h + scenario.seed) % len(FLEET_PATTERNS)] for h in range(scenario.hosts)]
    loaded = [h for h, p in enumerate(patterns) if p in LOADED]
    fault_host = int(rng.choice(loaded))
    fault_gpu = int(rng.integers(0, scenario.gpus))
    sims = []
    for h, pattern in enumerate(patterns):
        faults = []
        if scenario.kind is not None and h == fault_host:
            faults.append(
                Fault(scenario.kind, fault_gpu, at=scenario.warmup, severity=scenario.severity, xid=scenario.xid)
            )
        sims.append(
            SimBackend(
                f"s{scenario.seed}-h{h:02d}",
                count=scenario.gpus,
                pattern=pattern,
                seed=scenario.seed,
                faults=faults,
            )
        )
    return sims, fault_host, fault_gpu


def run_scenario(scenario: Scenario) -> Outcome:
    kind_salt = zlib.crc32(scenario.kind.value.encode()) % 1000 if scenario.kind else 0  # stable across runs
    rng = np.random.default_rng(scenario.seed * 7919 + kind_salt)
    sims, fault_host, fault_gpu = _fleet(scenario, rng)
    sink = RecordingSink()
    fleet = OfflineFleet(sink, interval=INTERVAL)
    start = 1_700_000_000.0 + float(rng.uniform(0, DAY))  # any time of day: the diurnal swing varies
    records = []
    for sim in sims:
        hello = build_hello(
            host_id=sim.host_id,
            boot_id="eval",
            host=HostInfo(sim.host_id),
            gpus=sim.open(),
            gpu_source="sim",
            host_field_ids=(),
            gpu_field_ids=sim.field_ids,
            interval=INTERVAL,
        )
        records.append(fleet.connect(hello))
    total = scenario.warmup + scenario.after
    no_host = np.zeros(0)
    steps = int(total / INTERVAL)
    for step in range(steps + 1):
        now = start + step * INTERVAL
        fleet.advance(now)
        unix_ns = int(now * 1e9)
        for sim, record in zip(sims, records, strict=True):
            fleet.frame(record, unix_ns, no_host, sim.sample(unix_ns))
            for event in sim.drain_events():
                fleet.event(record, event)
    fleet.advance(start + (steps + 1) * INTERVAL)
    fault_at = start + scenario.warmup
    outcome = Outcome(
        kind=scenario.kind.value if scenario.kind else "healthy",
        severity=scenario.severity,
        seed=scenario.seed,
        gpu_seconds=scenario.hosts * scenario.gpus * (steps + 1) * INTERVAL,
    )
    faulty_host = sims[fault_host].host_id
    for at, alert in sink.transitions():
        if alert.state is not AlertState.FIRING:
            continue
        on_faulty = (
            scenario.kind is not None
            and alert.labels.get("host") == faulty_host
            and alert.labels.get("gpu", str(fault_gpu)) == str(fault_gpu)
        )
        if on_faulty and at >= fault_at:
            outcome.true_alerts += 1
            if not outcome.detected:
                outcome.detected = True
                outcome.latency = at - fault_at
        else:
            outcome.false_alerts.append((alert.name, alert.labels["severity"]))
    return outcome


def library(seeds: int) -> list[Scenario]:
    """Each fault kind at each severity, ``seeds`` times over different fleets and fault sites."""
    out = []
    for kind in FaultKind:
        for s, severity in enumerate(SEVERITIES):
            for seed in range(seeds):
                xid = XID_CODES[(s * seeds + seed) % len(XID_CODES)] if kind is FaultKind.XID else 0
                out.append(Scenario(kind, severity, seed=100 * s + seed, xid=xid))
    return out


def healthy(gpu_days: float, *, hours_per_run: float = 2.0, hosts: int = 8, gpus: int = 8) -> list[Scenario]:
    """Fault-free fleets adding up to ``gpu_days``, in runs of up to a few simulated hours each."""
    seconds = min(hours_per_run * 3600.0, gpu_days * DAY / (hosts * gpus))
    runs = max(1, math.ceil(gpu_days * DAY / (hosts * gpus * seconds)))
    return [
        Scenario(None, 0.0, seed=10_000 + i, hosts=hosts, gpus=gpus, warmup=0.0, after=seconds) for i in range(runs)
    ]


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(outcomes: Iterable[Outcome]) -> dict[str, object]:
    by_kind: dict[str, list[Outcome]] = {}
    healthy_runs: list[Outcome] = []
    for o in outcomes:
        (healthy_runs if o.kind == "healthy" else by_kind.setdefault(o.kind, [])).append(o)
    rows = []
    for kind in [k.value for k in FaultKind if k.value in by_kind]:
        group = by_kind[kind]
        latencies = [o.latency for o in group if o.latency is not None]
        true = sum(o.true_alerts for o in group)
        false = sum(len(o.false_alerts) for o in group)
        hard = FaultKind(kind) in HARD
        target = INTERVAL if hard else (60.0 if FaultKind(kind) in GRAY else None)
        rows.append(
            {
                "fault": kind,
                "class": "hard" if hard else ("gray" if FaultKind(kind) in GRAY else "rule"),
                "scenarios": len(group),
                "recall": sum(o.detected for o in group) / len(group),
                "precision": true / (true + false) if true + false else None,
                "latency_p50_s": _percentile(latencies, 50),
                "latency_max_s": max(latencies) if latencies else None,
                "latency_target_s": target,
                "missed": [(o.severity, o.seed) for o in group if not o.detected],
                "false_alerts": sorted({name for o in group for name, _ in o.false_alerts}),
            }
        )
    gpu_days = sum(o.gpu_seconds for o in healthy_runs) / DAY
    false_all = [a for o in healthy_runs for a in o.false_alerts]
    critical = [a for a in false_all if a[1] == "critical"]
    return {
        "faults": rows,
        "healthy": {
            "gpu_days": gpu_days,
            "false_alerts": len(false_all),
            "false_critical": len(critical),
            "per_1000_gpu_days": 1000 * len(false_all) / gpu_days if gpu_days else None,
            "critical_per_1000_gpu_days": 1000 * len(critical) / gpu_days if gpu_days else None,
            # Poisson 95% upper bound for zero events is 3.0; for k events about k + 1.96 sqrt(k) + 2.
            "critical_upper95_per_1000_gpu_days": (
                1000 * (3.0 if not critical else len(critical) + 1.96 * math.sqrt(len(critical)) + 2) / gpu_days
                if gpu_days
                else None
            ),
            "alert_names": sorted({name for name, _ in false_all}),
        },
    }


def _fmt(value: object, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table(summary: dict[str, object]) -> str:
    lines = [
        "| fault | class | scenarios | recall | precision | latency p50 (s) | latency max (s) | target (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["faults"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['fault']} | {row['class']} | {row['scenarios']} | {_fmt(row['recall'])} | "
            f"{_fmt(row['precision'])} | {_fmt(row['latency_p50_s'], '.0f')} | {_fmt(row['latency_max_s'], '.0f')} | "
            f"{_fmt(row['latency_target_s'], '.0f')} |"
        )
    h = summary["healthy"]
    lines.append("")
    lines.append(
        f"Healthy fleets: {h['gpu_days']:.1f} GPU-days, {h['false_alerts']} false alerts "  # type: ignore[index]
        f"({_fmt(h['per_1000_gpu_days'])} per 1,000 GPU-days), {h['false_critical']} false critical "  # type: ignore[index]
        f"({_fmt(h['critical_per_1000_gpu_days'])} per 1,000 GPU-days; 95% upper bound "  # type: ignore[index]
        f"{_fmt(h['critical_upper95_per_1000_gpu_days'])})"  # type: ignore[index]
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1, help="scenarios per fault kind and severity")
    parser.add_argument("--healthy-gpu-days", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--only", default="", help="comma-separated fault kinds to run (default: all)")
    parser.add_argument("--json", default="", help="also write the summary here")
    args = parser.parse_args(argv)
    scenarios = library(args.seeds)
    if args.only:
        wanted = set(args.only.split(","))
        scenarios = [s for s in scenarios if s.kind is not None and s.kind.value in wanted]
    scenarios += healthy(args.healthy_gpu_days) if args.healthy_gpu_days > 0 else []
    started = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        outcomes = pool.map(run_scenario, scenarios, chunksize=1)
    summary = summarise(outcomes)
    summary["wall_seconds"] = time.perf_counter() - started
    summary["simulated_gpu_days"] = sum(o.gpu_seconds for o in outcomes) / DAY
    print(table(summary))
    for row in summary["faults"]:  # type: ignore[attr-defined]
        if row["missed"] or row["false_alerts"]:
            print(f"  {row['fault']}: missed (severity, seed) {row['missed']}; false alerts {row['false_alerts']}")
    print(f"  healthy false alerts: {summary['healthy']['alert_names']}")  # type: ignore[index]
    print(
        f"{summary['simulated_gpu_days']:.1f} simulated GPU-days in {summary['wall_seconds']:.0f}s wall "
        f"with {args.jobs} processes"
    )
    if args.json:
        with open(args.json, "w") as out:  # noqa: PTH123 - a plain output path from the command line
            json.dump({**summary, "args": vars(args), "outcomes": [asdict(o) for o in outcomes]}, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
