"""Exposition speed: gpulse's /metrics render against prometheus_client's generate_latest, same series.

    .venv/bin/python -m bench.exposition [--hosts 500] [--gpus 8] [--repeat 5]

It also measures how long a scrape holds the collector's event loop (where ingest runs): the
longest stretch a heartbeat task waits while one render runs, for the render in one go and for
the sliced render the /metrics handler uses (``render_async``), in the same run.

The fleet is simulated hosts (sim H100s, seeded), every field filled as a real scrape would see it.
The baseline gets the very same samples as ready-made metric families, so it is timed on rendering
alone; gpulse's figure includes everything a scrape does (staleness, gathering, formatting, encode).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterable

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.sources.sim import SimBackend
from collector.exporters.exposition import FleetExposition
from collector.ingest.decode import decode_frame
from collector.store import FleetStore
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout, encode_frame
from protos.fields import CATALOG

NOW_NS = 1_800_000_000 * 10**9


def simulated_fleet(hosts: int, gpus: int, seed: int = 0) -> FleetStore:
    """A store holding ``hosts`` sim hosts with ``gpus`` GPUs each, one frame applied to each."""
    store = FleetStore(host_capacity=hosts, gpu_capacity=hosts * gpus)
    rng = np.random.default_rng(seed)
    for h in range(hosts):
        host_id = f"gpu-node-{h:05d}"
        sim = SimBackend(host_id, count=gpus, seed=seed, start_unix_ns=NOW_NS - 10**9)
        infos = sim.open()
        sim.sample(NOW_NS - 10**9)
        gpu_values = sim.sample(NOW_NS)
        hello = pb.Hello(
            host_id=host_id,
            boot_id="boot",
            gpus=[
                pb.GpuInventory(index=i.index, uuid=i.uuid, name=i.name, pci_bus_id=i.pci_bus_id, serial=i.serial)
                for i in infos
            ],
            host_field_ids=CATALOG.host_ids,
            gpu_field_ids=sim.field_ids,
        )
        layout = FrameLayout.from_hello(hello)
        record = store.register(hello, layout)
        record.connected = True
        host_values = rng.uniform(0, 1, len(CATALOG.host_ids)) * 10.0 ** rng.integers(0, 12, len(CATALOG.host_ids))
        frame = decode_frame(
            encode_frame(NOW_NS, host_values, gpu_values),
            layout,
            now_ns=NOW_NS,
            max_future_ns=10**12,
            max_age_ns=10**12,
        )
        store.apply_frame(record, frame)
    return store


class _Families:
    """A prometheus_client collector yielding ready-made families: the baseline pays only for rendering."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def best_of(repeat: int, fn: object) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(repeat):
        # CPU time of this process: on a shared machine, wall time mostly measures the neighbours.
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def loop_hold(render: Callable[[], object]) -> tuple[float, float]:
    """The longest wait of a heartbeat task on the loop while ``render`` runs there once, and the
    render's CPU time."""

    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        longest, last, done = 0.0, loop.time(), False

        async def heartbeat() -> None:
            nonlocal longest, last
            while not done:
                await asyncio.sleep(0)
                now = loop.time()
                longest, last = max(longest, now - last), now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        started = time.process_time()
        result = render()
        if asyncio.iscoroutine(result):
            await result
        cpu = time.process_time() - started
        done = True
        await beat
        return longest, cpu

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dcgm", action="store_true", help="render the dcgm-exporter names as well")
    args = parser.parse_args()

    store = simulated_fleet(args.hosts, args.gpus)
    formats = ("gpulse", "dcgm") if args.dcgm else ("gpulse",)
    exposition = FleetExposition(store, clock=lambda: NOW_NS / 1e9, formats=formats)
    text = exposition.render()  # first render builds the label cache; a steady-state scrape does not
    families = list(text_string_to_metric_families(text))
    series = sum(len(f.samples) for f in families)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    baseline_text = generate_latest(registry)
    baseline_series = sum(1 for line in baseline_text.splitlines() if line and not line.startswith(b"#"))
    assert baseline_series == series, (baseline_series, series)

    ours = best_of(args.repeat, lambda: exposition.render().encode())
    theirs = best_of(max(1, args.repeat // 2), lambda: generate_latest(registry))
    print(f"fleet: {args.hosts} hosts x {args.gpus} GPUs, {series} series, formats={','.join(formats)}")
    print(f"gpulse render:       {ours * 1e3:8.1f} ms  {series / ours / 1e6:6.2f} M series/s")
    print(f"generate_latest:     {theirs * 1e3:8.1f} ms  {series / theirs / 1e6:6.2f} M series/s")
    print(f"ratio (gpulse / generate_latest): {theirs / ours:.1f}x")
    whole = min((loop_hold(exposition.render) for _ in range(args.repeat)), key=lambda r: r[0])
    sliced = min((loop_hold(exposition.render_async) for _ in range(args.repeat)), key=lambda r: r[0])
    print(f"event loop held by one render: in one go {whole[0] * 1e3:.1f} ms, sliced {sliced[0] * 1e3:.1f} ms"
          f" ({whole[0] / sliced[0]:.1f}x shorter); sliced CPU / whole CPU {sliced[1] / whole[1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
