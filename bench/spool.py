"""Disk spool: append rate, replay rate, and catch-up time after a partition, each against a baseline.

- append: ``DiskSpool.append`` of realistic records (one tick of an 8-GPU sim host), as the sampler
  calls it, against a raw ``os.write`` of the same bytes to one file in the same run. The spool's
  figure includes checksumming, indexing and the hand-off to its writer thread; "append + written"
  also waits until the writer has put everything in the page cache.
- replay: reopening a spool (checksum scan of every segment) and reading everything back in
  shipper-sized batches, against reading the same bytes from one flat file and parsing each record.
- catch-up: a backlog as left by a partition (``--partition-minutes`` at 1 Hz), shipped by the real
  shipper over mTLS to a real collector service; against the same records streamed straight from
  memory over the same kind of connection (what the network path alone allows).

    .venv/bin/python -m bench.spool [--records 20000] [--partition-minutes 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from agent.config import BackoffConfig
from agent.hello import build_hello
from agent.records import HostInfo
from agent.shipper import Shipper
from agent.sources.sim import SimBackend
from agent.spool.disk import HEADER, DiskSpool, DiskSpoolConfig, frame_record, scan
from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from protos.codec import encode_frame
from protos.fields import CATALOG
from runtime.tls import TlsFiles, channel_credentials
from runtime.transport import channel_options
from tests.kit import Pki
from tests.threaded_collector import Recorder, ThreadedCollector

HOST = "bench-host"


def sim_records(count: int, gpus: int = 8, start_ns: int | None = None) -> tuple[pb.Hello, list[pb.AgentMessage]]:
    """``count`` ticks of a sim host, one second apart, ending now: what a partition leaves behind."""
    sim = SimBackend(HOST, count=gpus, seed=3)
    infos = sim.open()
    host_fields = CATALOG.host_ids
    hello = build_hello(
        host_id=HOST,
        boot_id=str(uuid.uuid4()),
        host=HostInfo(hostname=HOST),
        gpus=infos,
        gpu_source="sim",
        host_field_ids=host_fields,
        gpu_field_ids=sim.field_ids,
        interval=1.0,
    )
    start = start_ns if start_ns is not None else time.time_ns() - count * 10**9
    host_values = np.linspace(1.0, 2.0, len(host_fields))
    out = []
    for i in range(count):
        now = start + i * 10**9
        frame = encode_frame(now, host_values, sim.sample(now))
        out.append(pb.AgentMessage(batch=pb.Batch(frames=[frame])))
    return hello, out


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def bench_append(records: list[pb.AgentMessage], hello: pb.Hello, workdir: Path) -> dict[str, float]:
    def raw() -> float:
        path = workdir / f"raw-{uuid.uuid4()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        started = time.perf_counter()
        for r in records:
            os.write(fd, r.SerializeToString())
        elapsed = time.perf_counter() - started
        os.close(fd)
        path.unlink()
        return elapsed

    def spool(wait_written: bool) -> float:
        directory = workdir / f"spool-{uuid.uuid4()}"
        s = DiskSpool(directory, DiskSpoolConfig(max_bytes=10**10))
        s.open_epoch(hello)
        copies = [pb.AgentMessage(batch=r.batch) for r in records]
        started = time.perf_counter()
        for r in copies:
            s.append(r)
        if wait_written:
            s.flush(60)
        elapsed = time.perf_counter() - started
        s.close()
        for p in sorted(directory.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        return elapsed

    n = len(records)
    return {
        "raw": n / best_of(3, raw),
        "append": n / best_of(3, lambda: spool(False)),
        "written": n / best_of(3, lambda: spool(True)),
    }


def bench_replay(records: list[pb.AgentMessage], hello: pb.Hello, workdir: Path) -> dict[str, float]:
    directory = workdir / "replay"
    s = DiskSpool(directory, DiskSpoolConfig(max_bytes=10**10))
    s.open_epoch(hello)
    for r in records:
        s.append(pb.AgentMessage(batch=r.batch))
    s.flush(60)
    s.close()
    flat = workdir / "flat"
    flat.write_bytes(b"".join(frame_record(1, i + 1, r.SerializeToString()) for i, r in enumerate(records)))

    def baseline() -> float:
        started = time.perf_counter()
        data = flat.read_bytes()
        for rec in scan(data).records:
            pb.AgentMessage.FromString(data[rec.offset + HEADER.size : rec.offset + rec.length])
        return time.perf_counter() - started

    def replay() -> float:
        started = time.perf_counter()
        spool = DiskSpool(directory, DiskSpoolConfig(max_bytes=10**10))
        boot = spool.epochs()[0]
        after, seen = 0, 0
        while batch := spool.read(boot, after, 512):
            after = batch[-1].seq
            seen += len(batch)
        elapsed = time.perf_counter() - started
        spool.close()
        assert seen == len(records), (seen, len(records))
        return elapsed

    n = len(records)
    return {"baseline": n / best_of(3, baseline), "replay": n / best_of(3, replay)}


async def bench_catch_up(kit: Pki, records: list[pb.AgentMessage], hello: pb.Hello, workdir: Path) -> dict[str, float]:
    cert, key = kit.agent(HOST)
    files = TlsFiles(kit.ca, cert, key)

    async def raw_stream(target: str, recorder: Recorder) -> float:
        raw_hello = pb.Hello()
        raw_hello.CopyFrom(hello)
        raw_hello.boot_id = str(uuid.uuid4())
        options = channel_options("collector")
        started = time.perf_counter()
        async with grpc.aio.secure_channel(target, channel_credentials(files), options=options) as channel:
            call = pb_grpc.TelemetryStub(channel).Stream()
            await call.write(pb.AgentMessage(hello=raw_hello))
            await call.read()
            for i, r in enumerate(records):
                await call.write(pb.AgentMessage(seq=i + 1, batch=r.batch))
            while (m := await call.read()) is not grpc.aio.EOF and m.ack.seq < len(records):
                pass
            call.cancel()
        return time.perf_counter() - started

    async def shipped(target: str, recorder: Recorder) -> float:
        directory = workdir / f"catchup-{uuid.uuid4()}"
        spool = DiskSpool(directory, DiskSpoolConfig(max_bytes=10**10))
        old_hello = pb.Hello()
        old_hello.CopyFrom(hello)
        old_hello.boot_id = str(uuid.uuid4())  # each run its own boot, unknown to the collector
        spool.open_epoch(old_hello)
        for r in records:
            spool.append(pb.AgentMessage(batch=r.batch))
        spool.flush(60)
        spool.close()
        spool = DiskSpool(directory, DiskSpoolConfig(max_bytes=10**10))  # the agent restarted: cold replay
        boot = spool.epochs()[0]
        # The backlog is an old epoch; the new boot's epoch is empty, as right after a restart.
        new_hello = pb.Hello()
        new_hello.CopyFrom(hello)
        new_hello.boot_id = str(uuid.uuid4())
        new_hello.sent_unix_ns = time.time_ns()
        spool.open_epoch(new_hello)
        shipper = Shipper(
            spool=spool,
            targets=(target,),
            credentials=lambda: channel_credentials(files),
            backoff=BackoffConfig(initial=0.05, maximum=0.2),
            wakeup=asyncio.Event(),
            server_name="collector",
        )
        started = time.perf_counter()
        task = asyncio.create_task(shipper.run())
        # Polled: the spool has no event to wait on, and 5 ms is noise against the figure.
        while boot in spool.epochs():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        spool.close()
        return elapsed

    with ThreadedCollector(kit, Recorder()) as collector:
        raw = min([await raw_stream(collector.target, Recorder()) for _ in range(2)])
        ship = min([await shipped(collector.target, Recorder()) for _ in range(2)])
    n = len(records)
    return {"raw_s": raw, "ship_s": ship, "raw_rate": n / raw, "ship_rate": n / ship}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--partition-minutes", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpulse-bench-spool-") as tmp:
        workdir = Path(tmp)
        hello, records = sim_records(args.records)
        size = sum(r.ByteSize() for r in records) / len(records)
        print(f"records: {len(records)} ticks of an 8-GPU sim host, {size:.0f} bytes each")
        a = bench_append(records, hello, workdir)
        print(
            f"append: raw os.write {a['raw']:,.0f}/s; DiskSpool.append {a['append']:,.0f}/s "
            f"({a['append'] / a['raw']:.2f}x); append+written {a['written']:,.0f}/s ({a['written'] / a['raw']:.2f}x)"
        )
        r = bench_replay(records, hello, workdir)
        print(
            f"replay: flat read+parse {r['baseline']:,.0f}/s; reopen+read {r['replay']:,.0f}/s "
            f"({r['replay'] / r['baseline']:.2f}x)"
        )
        backlog = int(args.partition_minutes * 60)
        hello, records = sim_records(backlog)
        kit = Pki.create(workdir / "pki")
        c = asyncio.run(bench_catch_up(kit, records, hello, workdir))
        print(
            f"catch-up after {args.partition_minutes:g} min at 1 Hz ({backlog} records): shipped from the spool in "
            f"{c['ship_s']:.2f} s ({c['ship_rate']:,.0f}/s); raw stream from memory {c['raw_s']:.2f} s "
            f"({c['raw_rate']:,.0f}/s); ratio {c['ship_rate'] / c['raw_rate']:.2f}x; "
            f"{backlog / c['ship_s']:,.0f}x faster than real time"
        )


if __name__ == "__main__":
    main()
