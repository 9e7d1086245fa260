"""Detection cost per tick against the number of series: the default rule pack over fleets up to 1 M series.

A fleet store is filled with H hosts x 8 GPUs (every catalog field, 46 per GPU plus 18 per host, so
386 series a host) carrying simulated H100 values, healthy as most of a fleet is; the detection engine (default rules,
peer comparison, baselines, thermal model) then ticks once a simulated second. For each size the
median wall time and CPU time of a tick are reported, and, as the same-run baseline, one vectorised
pass over the same values (``np.nanmean`` over the GPU matrix plus a copy: the memory floor any
engine pays to look at every series once); the ratio says how many such passes a tick costs.

    .venv/bin/python -m bench.detection_cost [--series 10000,100000,300000,1000000] [--ticks 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
import warnings
from collections.abc import Sequence

import numpy as np

from agent.sources.host import HostSource
from agent.sources.sim import SimBackend
from collector.alert import Alert
from collector.detect.engine import DetectionEngine
from collector.ingest.decode import DecodedFrame
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos.codec import PROTOCOL_VERSION, FrameLayout
from protos.fields import CATALOG

GPUS = 8
SERIES_PER_HOST = len(CATALOG.host_ids) + GPUS * len(CATALOG.gpu_ids)


class CountingSink:
    def __init__(self) -> None:
        self.pushed = 0

    def push(self, alerts: Sequence[Alert], now: float) -> None:
        self.pushed += len(alerts)


def fleet(hosts: int, now: float) -> tuple[FleetStore, list[HostRecord]]:
    store = FleetStore(host_capacity=hosts, gpu_capacity=hosts * GPUS)
    records = []
    for h in range(hosts):
        host_id = f"node-{h:05d}"
        hello = pb.Hello(
            host_id=host_id,
            boot_id="boot",
            protocol_version=PROTOCOL_VERSION,
            sent_unix_ns=int(now * 1e9),
            interval_seconds=1.0,
            host=pb.HostInventory(hostname=host_id, gpu_source="sim"),
            gpus=[
                pb.GpuInventory(
                    index=i, uuid=f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{host_id}/{i}')}", name="NVIDIA H100"
                )
                for i in range(GPUS)
            ],
            host_field_ids=CATALOG.host_ids,
            gpu_field_ids=CATALOG.gpu_ids,
        )
        record = store.register(hello, FrameLayout.from_hello(hello))
        record.connected = True
        records.append(record)
    return store, records


def fill(
    store: FleetStore, records: list[HostRecord], sims: list[SimBackend], host_values: np.ndarray, now: float
) -> None:
    """One tick of ingest: every host's frame applied, its GPU values from one of the simulators."""
    ns = int(now * 1e9)
    frames = [np.array(sim.sample(ns)) for sim in sims]
    for i, record in enumerate(records):
        store.apply_frame(record, DecodedFrame(ns, host_values, frames[i % len(frames)], 0))


def measure(hosts: int, ticks: int, seed: int) -> dict[str, float]:
    now = time.time()
    store, records = fleet(hosts, now)
    # Healthy, realistic values: simulated H100s under training load (a fleet is mostly healthy, so
    # what is measured is evaluation, not alert handling); hosts share a few simulators' streams.
    sims = [SimBackend(f"sim-{i}", count=GPUS, seed=seed + i) for i in range(min(hosts, 32))]
    for sim in sims:
        sim.open()
    host_values = np.array(HostSource().sample())
    sink = CountingSink()
    clock = [now]
    engine = DetectionEngine(store, sink, clock=lambda: clock[0])
    walls, cpus, floors = [], [], []
    for t in range(ticks + 3):  # three warm-up ticks fill the history windows a little
        clock[0] = now + t
        fill(store, records, sims, host_values, clock[0])
        w0, c0 = time.perf_counter(), time.process_time()
        engine.tick(clock[0])
        w1, c1 = time.perf_counter(), time.process_time()
        values = store.gpu_values[: hosts * GPUS]
        f0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # columns no GPU supports are all NaN
            np.nanmean(values, axis=0)
        values.copy()
        f1 = time.perf_counter()
        if t >= 3:
            walls.append(w1 - w0)
            cpus.append(c1 - c0)
            floors.append(f1 - f0)
    wall = statistics.median(walls)
    return {
        "series": hosts * SERIES_PER_HOST,
        "hosts": hosts,
        "wall_ms": wall * 1e3,
        "cpu_ms": statistics.median(cpus) * 1e3,
        "ns_per_series": wall / (hosts * SERIES_PER_HOST) * 1e9,
        "floor_ms": statistics.median(floors) * 1e3,
        "ratio": wall / statistics.median(floors),
        "alerts": sink.pushed,
        "history_mib": (engine.gpu_history.nbytes + engine.host_history.nbytes) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="10000,100000,300000,1000000", help="fleet sizes in series")
    parser.add_argument("--ticks", type=int, default=10, help="measured ticks per size (median reported)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{SERIES_PER_HOST} series per host (8 GPUs); default rule pack; median of {args.ticks} ticks")
    print(f"{'series':>9} {'hosts':>6} {'tick ms':>8} {'CPU ms':>8} {'ns/series':>9} {'floor ms':>9} {'x floor':>8}"
          f" {'share of 1 s':>12} {'alerts':>7} {'history MiB':>11}")  # fmt: skip
    for target in (int(s) for s in args.series.split(",")):
        hosts = max(1, round(target / SERIES_PER_HOST))
        r = measure(hosts, args.ticks, args.seed)
        print(
            f"{r['series']:9.0f} {r['hosts']:6.0f} {r['wall_ms']:8.1f} {r['cpu_ms']:8.1f} {r['ns_per_series']:9.1f}"
            f" {r['floor_ms']:9.2f} {r['ratio']:8.1f} {r['wall_ms'] / 10:11.1f}% {r['alerts']:7.0f}"
            f" {r['history_mib']:11.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
