from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from collector.exporters.exposition.text import block, escape, format_value, format_values, header


def test_whole_numbers_print_as_integers_and_fractions_round_trip() -> None:
    values = np.array([0.0, 1.0, 4095.0, 4096.0, 85899345920.0, -3.0, 0.25, 1e300, 2.0**60, -0.0])
    expected = ["0", "1", "4095", "4096", "85899345920", "-3", "0.25", "1e+300", "1.152921504606847e+18", "0"]
    assert format_values(values) == expected


def test_infinities_use_the_exposition_spelling() -> None:
    assert format_values(np.array([np.inf, -np.inf, 2.5])) == ["+Inf", "-Inf", "2.5"]


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=50))
def test_every_finite_value_parses_back_exactly(values: list[float]) -> None:
    texts = format_values(np.array(values, dtype=np.float64))
    assert [float(t) for t in texts] == values


def test_block_joins_header_prefixes_and_values() -> None:
    head = header("x_total", "counter", "Line one\\two")
    text = block(head, ['\nx_total{a="1"} ', '\nx_total{a="2"} '], ["3", "4"])
    assert text == '# HELP x_total Line one\\\\two\n# TYPE x_total counter\nx_total{a="1"} 3\nx_total{a="2"} 4'


def test_escape_label_value() -> None:
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_single_values_format_like_the_bulk_path() -> None:
    values = [0.0, 3.0, 12345678.0, 2.0**60, 0.1, -2.5, float("inf"), float("-inf")]
    assert [format_value(v) for v in values] == format_values(np.array(values))


def test_per_link_nvlink_counters_keep_every_digit() -> None:
    from collector.exporters.exposition.nvlink import nvlink_block
    from protos import telemetry_pb2 as pb

    links = {0: [pb.NvlinkLink(link=2, up=True, crc_errors=12345678, replay_errors=0, recovery_errors=0)]}
    text = nvlink_block(links, np.array([0]), ['host="h",gpu="0"'])
    assert 'gpulse_gpu_nvlink_link_crc_errors_total{host="h",gpu="0",link="2"} 12345678\n' in text + "\n"
