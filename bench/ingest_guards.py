"""What the abuse guards cost per agent message, against decoding the message itself.

Each record a collector receives passes three guards before it is applied: its size is checked
before it is parsed, the host's token bucket is charged, and the certificate's serial is looked up in
the revocation list (whose file is looked at once a second). The baselines are what the collector
must do anyway for one tick of an 8-GPU host: parse the record (``AgentMessage.FromString``), and
parse, check and apply it to the fleet store (``decode_frame`` + ``FleetStore.apply_frame``).

    .venv/bin/python -m bench.ingest_guards [--messages 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from collector.ingest.decode import decode_frame
from collector.ingest.ratelimit import TokenBucket
from collector.store import FleetStore
from collector.trust import pki
from collector.trust.revocation import RevocationList
from protos import fields
from protos import telemetry_pb2 as pb
from protos.codec import PROTOCOL_VERSION, FrameLayout, encode_frame


def tick_record(gpus: int = 8) -> bytes:
    host = np.random.default_rng(0).random(len(fields.CATALOG.host_ids))
    gpu = np.random.default_rng(1).random((gpus, len(fields.CATALOG.gpu_ids)))
    frame = encode_frame(time.time_ns(), host, gpu)
    return pb.AgentMessage(seq=1, batch=pb.Batch(frames=[frame])).SerializeToString()


def best_rate(run: Callable[[int], None], n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    data = tick_record()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        pki.init_ca(directory, days=2)
        crl, _ = pki.revoke(directory, serial=12345)
        for serial in range(1000, 1100):  # a list with a hundred revoked certificates
            pki.revoke(directory, serial=serial)
        revocation = RevocationList(crl, directory / pki.CA_CERT)
        bucket = TokenBucket(rate=1e12, burst=1e12, clock=time.monotonic)  # never refuses: measure the cost
        limit = 4 * 1024 * 1024

        def decode(n: int) -> None:
            for _ in range(n):
                pb.AgentMessage.FromString(data)

        hello = pb.Hello(
            host_id="bench-host",
            boot_id="boot",
            protocol_version=PROTOCOL_VERSION,
            host_field_ids=fields.CATALOG.host_ids,
            gpu_field_ids=fields.CATALOG.gpu_ids,
            gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{i}") for i in range(8)],
        )
        layout = FrameLayout.from_hello(hello)
        store = FleetStore()
        record = store.register(hello, layout)

        def ingest(n: int) -> None:
            for _ in range(n):
                message = pb.AgentMessage.FromString(data)
                for frame in message.batch.frames:
                    decoded = decode_frame(
                        frame, layout, now_ns=time.time_ns(), max_future_ns=300 * 10**9, max_age_ns=86400 * 10**9
                    )
                    store.apply_frame(record, decoded)

        def guards(n: int) -> None:
            for _ in range(n):
                if len(data) > limit or revocation.is_revoked(987654321) or not bucket.take():
                    raise AssertionError("a guard refused a good record")

        decode_rate = best_rate(decode, args.messages)
        guard_rate = best_rate(guards, args.messages)
        ingest_rate = best_rate(ingest, args.messages // 10)
    print(f"record: {len(data)} bytes (one tick of an 8-GPU host)")
    print(f"decode only:   {decode_rate:,.0f} records/s ({1e6 / decode_rate:.2f} us each)")
    print(f"guards only:   {guard_rate:,.0f} records/s ({1e6 / guard_rate:.2f} us each)")
    print(f"decode + apply: {ingest_rate:,.0f} records/s ({1e6 / ingest_rate:.2f} us each)")
    print(f"guards cost {decode_rate / guard_rate:.2f}x of a decode, {ingest_rate / guard_rate:.3f}x of decode + apply")


if __name__ == "__main__":
    main()
