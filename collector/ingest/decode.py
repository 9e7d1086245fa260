"""The collector's checks on a frame's arrival: its length, its timestamp, and values that are not numbers.

Pure functions over numpy arrays; no I/O. The layout comes from the stream's Hello
(``protos.codec.FrameLayout``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protos import telemetry_pb2 as pb
from protos.codec import FrameError, FrameLayout

Values = npt.NDArray[np.float64]


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
