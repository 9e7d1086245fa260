"""The job ledger's cost per tick against fleet size, next to the store's own ingest of the same second.

A fleet store holds H hosts x 8 GPUs, every GPU running a Slurm job (two jobs per host), with
simulated values. Each simulated second every host's frame is scattered into the store (the
baseline: what ingest already pays for that second of data), then the ledger ticks once over
the whole store. Reported: the median wall time of each, and the ratio ledger / ingest.

    .venv/bin/python -m bench.ledger_cost [--hosts 250,1000,2500] [--ticks 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from collector.ingest.decode import DecodedFrame
from collector.ledger.config import LedgerConfig
from collector.ledger.service import LedgerService
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout
from protos.fields import CATALOG

GPUS = 8
_ENERGY = CATALOG.gpu_ids.index(CATALOG.gpu("energy_consumption").id)
_POWER = CATALOG.gpu_ids.index(CATALOG.gpu("power_usage").id)
_UTIL = CATALOG.gpu_ids.index(CATALOG.gpu("utilization").id)


def fleet(hosts: int) -> tuple[FleetStore, list[HostRecord]]:
    store = FleetStore(host_capacity=hosts, gpu_capacity=hosts * GPUS)
    records: list[HostRecord] = []
    for h in range(hosts):
        hello = pb.Hello(
            host_id=f"node-{h:05d}",
            boot_id="b",
            gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{h}-{i}", name="NVIDIA H100 80GB HBM3") for i in range(GPUS)],
            host_field_ids=CATALOG.host_ids,
            gpu_field_ids=CATALOG.gpu_ids,
        )
        record = store.register(hello, FrameLayout.from_hello(hello))
        for i in range(GPUS):
            job = pb.Workload(kind="slurm", id=f"{h}-{i // 4}", user=f"user{h % 300}")
            record.workloads[i] = [pb.GpuProcess(pid=100 + i, name="python3", workload=job)]
        records.append(record)
    return store, records


def run(hosts: int, ticks: int, directory: Path) -> tuple[float, float]:
    store, records = fleet(hosts)
    config = LedgerConfig(path=directory / f"ledger-{hosts}.sqlite", flush_interval=1e9)
    ledger = LedgerService(store, config)
    rng = np.random.default_rng(0)
    host_values = np.zeros(len(CATALOG.host_ids))
    gpu = np.full((GPUS, len(CATALOG.gpu_ids)), 0.5)
    ingest, metering = [], []
    for t in range(1, ticks + 2):
        t_ns = 1_800_000_000 * 10**9 + t * 10**9
        gpu[:, _ENERGY] = t * 500.0
        gpu[:, _POWER] = 500.0
        gpu[:, _UTIL] = rng.uniform(0, 1, GPUS)
        start = time.perf_counter()
        for record in records:
            store.apply_frame(record, DecodedFrame(t_ns, host_values, gpu, 0))
        ingest.append(time.perf_counter() - start)
        start = time.perf_counter()
        ledger.tick(t_ns / 1e9)
        metering.append(time.perf_counter() - start)
    # The first tick adopts every GPU; the steady state is the rest.
    return statistics.median(ingest[1:]), statistics.median(metering[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="250,1000,2500")
    parser.add_argument("--ticks", type=int, default=10)
    args = parser.parse_args()
    print("| hosts | GPUs | store scatter of one second | ledger tick | ledger / scatter |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for hosts in (int(h) for h in args.hosts.split(",")):
            ingest, metering = run(hosts, args.ticks, Path(directory))
            cells = [f"{hosts:,}", f"{hosts * GPUS:,}", f"{ingest * 1e3:.1f} ms", f"{metering * 1e3:.1f} ms"]
            print("| " + " | ".join([*cells, f"{metering / ingest:.2f}x"]) + " |")


if __name__ == "__main__":
    main()
