"""Per-link NVLink series, from the agents' NvlinkEvents: one series per (GPU, link)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from collector.exporters.exposition.text import format_value, header
from protos import telemetry_pb2 as pb

__all__ = ["NVLINK_FAMILIES", "nvlink_block"]

# (metric, type, help, attribute of NvlinkLink)
NVLINK_FAMILIES = (
    ("gpulse_gpu_nvlink_link_up", "gauge", "1 while this NVLink link is up, 0 while it is down.", "up"),
    ("gpulse_gpu_nvlink_link_crc_errors_total", "counter", "CRC errors on this NVLink link.", "crc_errors"),
    ("gpulse_gpu_nvlink_link_replay_errors_total", "counter", "Replay errors on this NVLink link.", "replay_errors"),
    (
        "gpulse_gpu_nvlink_link_recovery_errors_total",
        "counter",
        "Recovery errors on this NVLink link.",
        "recovery_errors",
    ),
)


def nvlink_block(
    links: Mapping[int, Sequence[pb.NvlinkLink]], rows: npt.NDArray[np.int64], labels: Sequence[str]
) -> str:
    """Exposition text for the GPUs in ``rows``; a counter a GPU does not report per link is left out."""
    present = [row for row in rows.tolist() if row in links]
    out: list[str] = []
    for name, kind, help_text, attr in NVLINK_FAMILIES:
        lines = []
        for row in present:
            for link in links[row]:
                value = float(getattr(link, attr))
                if not math.isnan(value):
                    # Exact: '%g' keeps six digits, and a counter that stops moving looks reset-free but wrong.
                    lines.append(f'{name}{{{labels[row]},link="{link.link}"}} {format_value(value)}')
        if lines:
            out.append("\n".join([header(name, kind, help_text), *lines]))
    return "\n".join(out)
