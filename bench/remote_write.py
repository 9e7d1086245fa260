"""Remote write encoding cost: gpulse's hand-written WriteRequest against the protobuf library's.

    .venv/bin/python -m bench.remote_write [--hosts 200] [--gpus 8] [--repeat 5]

One frame per simulated host (sim H100s, all catalog fields), as one flush at 1 Hz sees them. The
baseline builds the same samples as prometheus.WriteRequest messages with the generated classes and
serialises them; both include snappy. CPU seconds of this process, best of ``--repeat``.
"""

from __future__ import annotations

import argparse

import cramjam
import numpy as np

from bench.exposition import NOW_NS, best_of, simulated_fleet
from collector.exporters.remote_write import PendingFrame, SeriesTable, decode_write_request, encode_write_request
from protos import remote_write_pb2 as rw


def library_encode(frames: list[PendingFrame]) -> bytes:
    request = rw.WriteRequest()
    for frame in frames:
        present = np.flatnonzero(~np.isnan(frame.values))
        for i, value in zip(present.tolist(), frame.values[present].tolist(), strict=True):
            series = request.timeseries.add()
            series.labels.extend(rw.Label(name=n, value=v) for n, v in frame.series.labels[i])
            series.samples.add(value=value, timestamp=frame.timestamp_ms)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    store = simulated_fleet(args.hosts, args.gpus)
    frames = []
    for record in store.hosts.values():
        values = np.concatenate(
            (store.host_values.ravel()[record.host_positions], store.gpu_values.ravel()[record.gpu_positions])
        )
        frames.append(PendingFrame(SeriesTable.for_record(record, {"cluster": "bench"}), values, NOW_NS // 10**6))
    ours_body, samples = encode_write_request(frames)
    theirs_body = library_encode(frames)
    assert decode_write_request(ours_body) == decode_write_request(theirs_body), "the two encodings differ"
    ours = best_of(args.repeat, lambda: encode_write_request(frames))
    theirs = best_of(args.repeat, lambda: library_encode(frames))
    print(f"{args.hosts} frames ({args.hosts} hosts x {args.gpus} GPUs), {samples} samples")
    print(f"gpulse encoder:   {ours * 1e3:8.1f} ms  {samples / ours / 1e6:6.2f} M samples/s")
    print(f"protobuf library: {theirs * 1e3:8.1f} ms  {samples / theirs / 1e6:6.2f} M samples/s")
    print(f"ratio: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
