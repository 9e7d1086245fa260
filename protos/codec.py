"""Frame codec: packing one tick's host and GPU values into a Frame, and checking one on arrival.

Pure functions over numpy arrays; no I/O. The layout is fixed per stream by its Hello.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protos import telemetry_pb2 as pb
from protos.fields import CATALOG, Scope

Values = npt.NDArray[np.float64]

PROTOCOL_VERSION = 1


class FrameError(ValueError):
    """A frame or Hello that cannot be applied; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FrameLayout:
    """The order of values in every frame of one stream, as declared by its Hello."""

    host_field_ids: tuple[int, ...]
    gpu_field_ids: tuple[int, ...]
    gpu_count: int

    @property
    def width(self) -> int:
        return len(self.host_field_ids) + len(self.gpu_field_ids) * self.gpu_count

    @classmethod
    def from_hello(cls, hello: pb.Hello, *, max_gpus: int = 64) -> FrameLayout:
        """Check a Hello's schema against the catalog and return its layout."""
        for ids, scope in ((hello.host_field_ids, Scope.HOST), (hello.gpu_field_ids, Scope.GPU)):
            if len(set(ids)) != len(ids):
                raise FrameError("bad_hello", f"hello lists a {scope.value} field id twice")
            for fid in ids:
                field = CATALOG.get(fid)
                if field is None:
                    raise FrameError("bad_hello", f"hello names unknown field id {fid}")
                if field.scope is not scope:
                    raise FrameError(
                        "bad_hello", f"field {fid} ({field.name}) is a {field.scope.value} field, sent as {scope.value}"
                    )
        if len(hello.gpus) > max_gpus:
            raise FrameError("bad_hello", f"hello lists {len(hello.gpus)} GPUs; at most {max_gpus} are accepted")
        indexes = [g.index for g in hello.gpus]
        if indexes != list(range(len(indexes))):
            raise FrameError("bad_hello", f"GPU indexes must be 0..n-1 in order, got {indexes}")
        return cls(tuple(hello.host_field_ids), tuple(hello.gpu_field_ids), len(hello.gpus))


def encode_frame(unix_ns: int, host: Values, gpu: Values) -> pb.Frame:
    """Pack host values then GPU x field values row-major; NaN stays NaN (not read)."""
    values = np.concatenate((host.ravel(), gpu.ravel())).tolist()
    return pb.Frame(unix_ns=unix_ns, values=values)


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    unix_ns: int
    host: Values  # (len(host_field_ids),)
    gpu: Values  # (gpu_count, len(gpu_field_ids))
    non_finite: int  # +/-inf values found and turned into NaN


def decode_frame(
    frame: pb.Frame, layout: FrameLayout, *, now_ns: int, max_future_ns: int, max_age_ns: int
) -> DecodedFrame:
    """Unpack and check a frame: its length, its timestamp, and values that are not numbers.

    Infinities are refused value by value (made NaN and counted) rather than dropping the frame,
    so one bad reading does not cost the rest of the tick.
    """
    if len(frame.values) != layout.width:
        raise FrameError(
            "length_mismatch",
            f"frame has {len(frame.values)} values; the hello's layout needs {layout.width}",
        )
    if frame.unix_ns > now_ns + max_future_ns:
        raise FrameError(
            "future_timestamp",
            f"frame timestamp is {(frame.unix_ns - now_ns) / 1e9:.1f}s in the future",
        )
    if frame.unix_ns < now_ns - max_age_ns:
        raise FrameError("too_old", f"frame timestamp is {(now_ns - frame.unix_ns) / 1e9:.0f}s old")
    values = np.array(frame.values, dtype=np.float64)
    infinite = np.isinf(values)
    non_finite = int(infinite.sum())
    if non_finite:
        values[infinite] = np.nan
    nh = len(layout.host_field_ids)
    gpu = values[nh:].reshape(layout.gpu_count, len(layout.gpu_field_ids))
    return DecodedFrame(frame.unix_ns, values[:nh], gpu, non_finite)
