from __future__ import annotations

import pytest

from collector.alerting.matchers import Matcher, match_all, parse_all


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("host=node-1", {"host": "node-1"}, True),
        ("host=node-1", {"host": "node-10"}, False),
        ("host!=node-1", {"host": "node-2"}, True),
        ("gpu=~0|1", {"gpu": "1"}, True),
        ("gpu=~0|1", {"gpu": "10"}, False),  # anchored, as in Prometheus
        ("gpu!~0|1", {"gpu": "3"}, True),
        ('alertname="GpuLost"', {"alertname": "GpuLost"}, True),
        ("gpu=~.+", {}, False),  # a missing label is the empty string
        ("gpu=", {}, True),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize("bad", ["host", "9host=x", "gpu=~(", ""])
def test_bad_matchers_are_refused_with_the_text(bad: str) -> None:
    with pytest.raises(ValueError, match="matcher"):
        Matcher.parse(bad)


def test_all_must_match() -> None:
    matchers = parse_all(["host=a", "severity=critical"])
    assert match_all(matchers, {"host": "a", "severity": "critical"})
    assert not match_all(matchers, {"host": "a", "severity": "warning"})
