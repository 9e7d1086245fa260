from __future__ import annotations

from collector.alerting.matchers import parse_all
from collector.alerting.routing import Route


def tree() -> Route:
    return Route(
        "default",
        routes=(
            Route("pd-critical", parse_all(["severity=critical"]), continue_=True, path="root.0"),
            Route("gpu-team", parse_all(["gpu=~.+"]), path="root.1"),
            Route("never", parse_all(["host=~.+"]), path="root.2"),
        ),
    )


def test_first_match_wins_unless_continue() -> None:
    hits = tree().match({"alertname": "Xid", "severity": "critical", "gpu": "0", "host": "h"})
    # continue on the critical route lets the alert also reach the GPU team; the host route comes after
    # a route without continue and is never tried.
    assert [r.receiver for r in hits] == ["pd-critical", "gpu-team"]


def test_no_child_match_falls_back_to_the_parent() -> None:
    assert [r.receiver for r in tree().match({"alertname": "Skew", "severity": "info"})] == ["default"]


def test_group_key_uses_group_by_labels_and_route() -> None:
    route = Route("r", group_by=("alertname", "host"), path="root.3")
    a = route.group_key({"alertname": "Xid", "host": "h1", "gpu": "0"})
    b = route.group_key({"alertname": "Xid", "host": "h1", "gpu": "5"})
    c = route.group_key({"alertname": "Xid", "host": "h2", "gpu": "0"})
    assert a == b != c
    assert a.startswith("root.3:")
