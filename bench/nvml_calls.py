"""NVML calls per GPU per tick: the nvml source (batched field values, tiers) against one call per field.

Both readers run against the counting fake pynvml (tests/fakes/nvml.py) with the same GPUs, so the
counts are exact and need no GPU. The baseline is what a simple exporter does: every field of the
catalog read every tick with its own call (field ids one per nvmlDeviceGetFieldValues call, each
NVLink link's state and counters one call apiece, processes every tick).

    .venv/bin/python -m bench.nvml_calls               # 8 GPUs x 18 NVLinks, 100 ticks, slow tier every 10
    .venv/bin/python -m bench.nvml_calls --gpus 4 --slow-every 5
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

from agent.sources.nvml import _LINK_FIDS, BATCHED_FIELDS, GETTER_CALLS, NvmlBackend
from tests.fakes.nvml import FakeGpu, FakeNvml


def naive_tick(nvml: Any, handle: int, links: int) -> None:
    """One call per catalog field, every field every tick; NOT_SUPPORTED is asked again each time."""
    calls: list[Callable[[], Any]] = []
    for b in BATCHED_FIELDS:
        calls += [functools.partial(nvml.nvmlDeviceGetFieldValues, handle, [getattr(nvml, n)]) for n in b.fids]
    for getter, names in GETTER_CALLS:
        calls += [functools.partial(NvmlBackend._call_getter, nvml, handle, getter) for _ in names]
    calls.append(functools.partial(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM))
    calls.append(functools.partial(nvml.nvmlDeviceGetComputeRunningProcesses, handle))
    for link in range(links):
        calls += [
            functools.partial(nvml.nvmlDeviceGetFieldValues, handle, [(getattr(nvml, n), link)]) for n in _LINK_FIDS
        ]
    for call in calls:
        with contextlib.suppress(nvml.NVMLError):
            call()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--slow-every", type=int, default=10)
    args = parser.parse_args(argv)

    fake = FakeNvml([FakeGpu(uuid=f"GPU-bench-{i}") for i in range(args.gpus)])
    backend = NvmlBackend(fake, kmsg_path=None, slow_every=args.slow_every, xid_wait_ms=20)
    backend.open()
    fake.reset_counts()
    fast_only = 0
    started = time.perf_counter()
    for tick in range(args.ticks):
        before = sum(fake.calls_per_gpu.values())
        backend.sample(time.time_ns())
        if tick == 1:
            fast_only = sum(fake.calls_per_gpu.values()) - before
    ours_s = time.perf_counter() - started
    ours = sum(fake.calls_per_gpu.values())
    backend.close()
    per_field_ids = sum(len(b.fids) for b in BATCHED_FIELDS)

    naive_fake = FakeNvml([FakeGpu(uuid=f"GPU-bench-{i}") for i in range(args.gpus)])
    naive_fake.nvmlInit()
    links = int(naive_fake.gpus[0].fields[naive_fake.NVML_FI_DEV_NVLINK_LINK_COUNT])
    started = time.perf_counter()
    for _ in range(args.ticks):
        for h in range(args.gpus):
            naive_tick(naive_fake, h, links)
    naive_s = time.perf_counter() - started
    naive = sum(naive_fake.calls_per_gpu.values())

    per = args.gpus * args.ticks
    print(f"{args.gpus} GPUs x {links} NVLinks, {args.ticks} ticks, slow tier every {args.slow_every} ticks")
    print(f"field ids batched per GPU per tick: {per_field_ids} in 1 nvmlDeviceGetFieldValues call")
    print(
        f"gpulse nvml source: {ours / per:.1f} calls/GPU/tick on average ({fast_only / args.gpus:.0f} on a fast tick)"
    )
    fast_naive = per_field_ids + sum(len(names) for _, names in GETTER_CALLS) + 1
    print(f"one call per field: {naive / per:.1f} calls/GPU/tick ({fast_naive} for the fast fields alone)")
    print(f"ratio: {naive / ours:.1f}x fewer calls")
    print(f"time against the fake (Python overhead only): {ours_s / naive_s:.2f} of the baseline's")


if __name__ == "__main__":
    main()
