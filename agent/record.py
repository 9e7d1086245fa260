"""Recording simulated hosts to a trace, faster than real time: `gpulse record`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from agent.hello import gpu_inventory
from agent.sources.sim import Fault, FaultKind, LoadPattern, SimBackend
from runtime.trace import TraceWriter


@dataclass(frozen=True, slots=True)
class RecordPlan:
    hosts: int = 2
    gpus: int = 8
    profile: str = "H100"
    pattern: LoadPattern = LoadPattern.TRAINING
    seed: int = 0
    duration: float = 600.0
    interval: float = 1.0
    start_unix: float = 1_700_000_000.0
    faults: tuple[tuple[int, Fault], ...] = ()  # (host index, fault)


def parse_fault(text: str) -> tuple[int, Fault]:
    """``kind=straggler,host=0,gpu=3,at=120,severity=0.5[,duration=60][,xid=79]`` -> (host, Fault)."""
    values: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault spec {text!r}: expected key=value pairs, got {part!r}")
        values[key.strip()] = value.strip()
    unknown = sorted(set(values) - {"kind", "host", "gpu", "at", "severity", "duration", "xid", "count"})
    if unknown:
        raise ValueError(f"fault spec {text!r}: unknown key {unknown[0]!r}")
    try:
        kind = FaultKind(values.get("kind", ""))
    except ValueError:
        raise ValueError(f"fault spec {text!r}: kind must be one of {', '.join(k.value for k in FaultKind)}") from None
    fault = Fault(
        kind,
        int(values.get("gpu", 0)),
        at=float(values.get("at", 0)),
        duration=float(values.get("duration", 0)),
        severity=float(values.get("severity", 0.5)),
        xid=int(values.get("xid", 0)),
        count=int(values.get("count", 1)),
    )
    return int(values.get("host", 0)), fault


def record(out: IO[str], plan: RecordPlan) -> int:
    """Run the simulated hosts on synthetic time and write every frame and event; returns frames written."""
    sims = []
    for h in range(plan.hosts):
        faults = [f for host, f in plan.faults if host == h]
        sims.append(
            SimBackend(
                f"sim-{h:03d}",
                count=plan.gpus,
                profile=plan.profile,
                pattern=plan.pattern,
                seed=plan.seed,
                faults=faults,
            )
        )
    writer = TraceWriter(out, gpu_field_ids=sims[0].field_ids, source="sim", seed=plan.seed)
    for sim in sims:
        writer.host(sim.host_id, plan.interval, [gpu_inventory(g) for g in sim.open()])
    frames = 0
    steps = int(plan.duration / plan.interval)
    for step in range(steps + 1):
        unix_ns = int((plan.start_unix + step * plan.interval) * 1e9)
        for sim in sims:
            values = sim.sample(unix_ns)
            writer.frame(sim.host_id, unix_ns, values)
            frames += 1
            for event in sim.drain_events():
                writer.event(sim.host_id, event)
    return frames
