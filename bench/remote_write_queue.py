"""The remote write queue on disk: append and read-back rate, against raw os.write of the same bytes.

    .venv/bin/python -m bench.remote_write_queue [--frames 20000] [--values 400]

A frame is one host's values at one tick (8 GPUs x ~50 fields = 400 values). Appends are fsynced
every 100 frames, as the progress flush does ~10 times a second. The baseline writes the same
number of bytes with os.write and the same fsyncs, so the ratio is the queue's own overhead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from collector.exporters.remote_write_queue import QueueConfig, RemoteWriteQueue


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--values", type=int, default=400)
    args = parser.parse_args()
    table = tuple((("__name__", f"gpulse_f{i}"), ("host", "node")) for i in range(args.values))
    values = np.random.default_rng(1).random(args.values)
    with tempfile.TemporaryDirectory() as scratch:
        queue = RemoteWriteQueue(Path(scratch) / "q", QueueConfig(max_bytes=64 * 1024**3))
        start = time.perf_counter()
        for i in range(args.frames):
            queue.append(f"node-{i % 1000}", table, values, 1_800_000_000_000 + i, args.values)
            if i % 100 == 99:
                queue.sync()
        queue.sync()
        append_s = time.perf_counter() - start
        total = queue.total_bytes
        start = time.perf_counter()
        read = 0
        while batch := queue.read(5000):
            read += len(batch)
            queue.commit(batch[-1].end)
        read_s = time.perf_counter() - start
        assert read == args.frames
        queue.close()
        raw = Path(scratch) / "raw"
        chunk = os.urandom(total // args.frames)
        fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        start = time.perf_counter()
        for i in range(args.frames):
            os.write(fd, chunk)
            if i % 100 == 99:
                os.fsync(fd)
        os.fsync(fd)
        raw_s = time.perf_counter() - start
        os.close(fd)
    samples = args.frames * args.values
    print(f"frames={args.frames} values/frame={args.values} bytes/frame={total / args.frames:.0f}")
    print(f"append: {args.frames / append_s:,.0f} frames/s, {samples / append_s / 1e6:.2f} M samples/s")
    print(f"raw os.write baseline: {args.frames / raw_s:,.0f} frames/s; queue/raw time ratio {append_s / raw_s:.2f}x")
    print(f"read back: {args.frames / read_s:,.0f} frames/s, {samples / read_s / 1e6:.2f} M samples/s")


if __name__ == "__main__":
    main()
