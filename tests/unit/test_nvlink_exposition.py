"""Per-link NVLink series: from the agent's NvlinkEvent through the store to the exposition text."""

from __future__ import annotations

import math

import numpy as np

from collector.exporters.exposition.nvlink import nvlink_block
from protos import telemetry_pb2 as pb


def test_per_link_series_name_each_link_and_leave_out_unreported_counters() -> None:
    links = {
        3: [
            pb.NvlinkLink(link=0, up=True, crc_errors=0, replay_errors=0, recovery_errors=math.nan),
            pb.NvlinkLink(link=1, up=False, crc_errors=12, replay_errors=1, recovery_errors=math.nan),
        ],
        4: [pb.NvlinkLink(link=0, up=True)],  # a GPU whose row is not being rendered
    }
    labels = [""] * 3 + ['host="h",gpu="0"', 'host="h",gpu="1"']
    text = nvlink_block(links, np.array([3]), labels)
    assert 'gpulse_gpu_nvlink_link_up{host="h",gpu="0",link="1"} 0' in text
    assert 'gpulse_gpu_nvlink_link_crc_errors_total{host="h",gpu="0",link="1"} 12' in text
    assert "# TYPE gpulse_gpu_nvlink_link_replay_errors_total counter" in text
    assert "recovery_errors" not in text  # NaN per link: not reported, so no series rather than a 0
    assert 'gpu="1"' not in text


def test_no_links_no_text() -> None:
    assert nvlink_block({}, np.array([0, 1]), ["a", "b"]) == ""
