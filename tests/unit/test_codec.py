from __future__ import annotations

import math

import numpy as np
import pytest

from collector.ingest.decode import decode_frame
from protos import telemetry_pb2 as pb
from protos.codec import FrameError, FrameLayout, encode_frame
from protos.fields import CATALOG

NOW = 1_800_000_000_000_000_000
LIMITS = {"now_ns": NOW, "max_future_ns": 300 * 10**9, "max_age_ns": 86400 * 10**9}


def hello(gpus: int = 2, host_ids: tuple[int, ...] = (1, 2), gpu_ids: tuple[int, ...] = (100, 105)) -> pb.Hello:
    return pb.Hello(
        host_id="h",
        boot_id="b",
        gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{i}") for i in range(gpus)],
        host_field_ids=host_ids,
        gpu_field_ids=gpu_ids,
    )


def test_round_trip_keeps_values_layout_and_nan() -> None:
    layout = FrameLayout.from_hello(hello())
    host = np.array([0.5, 1.25])
    gpu = np.array([[0.9, 61.0], [np.nan, 70.0]])
    wire = pb.Frame.FromString(encode_frame(NOW, host, gpu).SerializeToString())
    decoded = decode_frame(wire, layout, **LIMITS)
    assert decoded.unix_ns == NOW
    np.testing.assert_array_equal(decoded.host, host)
    np.testing.assert_array_equal(decoded.gpu, gpu)  # NaN stays NaN: "not read", never 0
    assert decoded.non_finite == 0


def test_infinities_are_refused_value_by_value() -> None:
    layout = FrameLayout.from_hello(hello(gpus=1))
    frame = encode_frame(NOW, np.array([1.0, math.inf]), np.array([[-math.inf, 50.0]]))
    decoded = decode_frame(frame, layout, **LIMITS)
    assert decoded.non_finite == 2
    assert math.isnan(decoded.host[1]) and math.isnan(decoded.gpu[0, 0])
    assert decoded.gpu[0, 1] == 50.0


@pytest.mark.parametrize(
    ("frame", "reason", "message"),
    [
        (pb.Frame(unix_ns=NOW, values=[1.0] * 5), "length_mismatch", "frame has 5 values; the hello's layout needs 6"),
        (pb.Frame(unix_ns=NOW + 3600 * 10**9, values=[1.0] * 6), "future_timestamp", "3600.0s in the future"),
        (pb.Frame(unix_ns=NOW - 90000 * 10**9, values=[1.0] * 6), "too_old", "90000s old"),
    ],
)
def test_bad_frames_are_refused_with_a_reason(frame: pb.Frame, reason: str, message: str) -> None:
    layout = FrameLayout.from_hello(hello())
    with pytest.raises(FrameError, match=message) as caught:
        decode_frame(frame, layout, **LIMITS)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (hello(host_ids=(1, 1)), "lists a host field id twice"),
        (hello(gpu_ids=(100, 9999)), "unknown field id 9999"),
        (hello(host_ids=(100,)), "is a gpu field, sent as host"),
        (pb.Hello(gpus=[pb.GpuInventory(index=1)]), r"GPU indexes must be 0..n-1 in order, got \[1\]"),
    ],
)
def test_bad_hellos_are_refused(bad: pb.Hello, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        FrameLayout.from_hello(bad)


def test_too_many_gpus_is_refused() -> None:
    with pytest.raises(FrameError, match="lists 3 GPUs; at most 2"):
        FrameLayout.from_hello(hello(gpus=3), max_gpus=2)


def test_layout_width_counts_host_then_gpu_by_field() -> None:
    layout = FrameLayout.from_hello(hello(gpus=3, gpu_ids=CATALOG.gpu_ids))
    assert layout.width == 2 + 3 * len(CATALOG.gpu_ids)
