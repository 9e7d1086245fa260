from __future__ import annotations

import numpy as np
import pytest

from collector.detect import expr as ex

KNOWN = {"temperature", "power_usage", "power_limit", "pcie_replay", "lost"}


class FakeContext:
    def __init__(self, **signals: list[float]) -> None:
        self.signals = {k: np.array(v, dtype=float) for k, v in signals.items()}
        self.calls: list[tuple[str, str, float]] = []

    def current(self, signal: str) -> np.ndarray:
        return self.signals[signal]

    def window(self, function: str, signal: str, seconds: float) -> np.ndarray:
        self.calls.append((function, signal, seconds))
        return self.signals[signal] * 10

    def xids(self, codes: frozenset[int], seconds: float) -> np.ndarray:
        self.calls.append(("xids", ",".join(map(str, sorted(codes))), seconds))
        return np.array([0.0, 2.0, 0.0])


def parse(text: str) -> ex.Node:
    return ex.parse(text, lambda name: name in KNOWN)


def test_comparison_is_vectorised_and_nan_never_holds() -> None:
    ctx = FakeContext(temperature=[80.0, 90.0, np.nan])
    assert parse("temperature > 85").evaluate(ctx).tolist() == [0.0, 1.0, 0.0]
    assert parse("temperature <= 80").evaluate(ctx).tolist() == [1.0, 0.0, 0.0]


def test_arithmetic_precedence_and_logic() -> None:
    ctx = FakeContext(power_usage=[100.0, 600.0, 150.0], power_limit=[700.0, 700.0, 700.0], temperature=[50, 50, 95])
    node = parse("power_usage < 0.25 * power_limit and temperature < 90 or temperature >= 95")
    assert node.evaluate(ctx).tolist() == [1.0, 0.0, 1.0]
    assert parse("-(power_usage - 200) / 2").evaluate(ctx).tolist() == [50.0, -200.0, 25.0]
    assert parse("abs(power_usage - 600) > 400").evaluate(ctx).tolist() == [1.0, 0.0, 1.0]


def test_window_functions_and_xids_read_their_windows() -> None:
    ctx = FakeContext(pcie_replay=[0.0, 1.0, 0.5])
    assert parse("rate(pcie_replay[1m]) > 6").evaluate(ctx).tolist() == [0.0, 1.0, 0.0]
    assert parse("xids(79, 48)[5m] > 0").evaluate(ctx).tolist() == [0.0, 1.0, 0.0]
    assert ctx.calls == [("rate", "pcie_replay", 60.0), ("xids", "48,79", 300.0)]


def test_value_node_is_the_left_side_of_the_first_comparison() -> None:
    node = parse("rate(pcie_replay[30s]) > 5 and temperature > 1")
    assert ex.value_node(node) == ex.Window("rate", "pcie_replay", 30.0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("temprature > 90", "unknown signal 'temprature'"),
        ("rate(pcie_replay) > 1", "expected '['"),
        ("rate(pcie_replay[5x]) > 1", "unexpected character"),
        ("rate(pcie_replay[0s]) > 1", "longer than 0s"),
        ("median(temperature[1m]) > 1", "unknown function 'median'"),
        ("temperature >", "unexpected end"),
        ("temperature > 90 90", "after a complete expression"),
        ("xids(a)[1m] > 0", "XID codes"),
        ("", "empty expression"),
        ("temperature > 1 and", "unexpected end"),
    ],
)
def test_bad_expressions_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ex.ExprError, match=reason.replace("(", r"\(").replace("[", r"\[")):
        parse(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), (15, 15.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert ex.parse_duration(text) == seconds


def test_bad_durations() -> None:
    for bad in ("5 minutes", "-1s", -3, "1w", True):
        with pytest.raises(ex.ExprError):
            ex.parse_duration(bad)  # type: ignore[arg-type]


def test_windows_lists_every_windowed_function_and_not_the_xid_log() -> None:
    found = ex.windows(parse("increase(pcie_replay[10m]) > 0 or xids(13)[1h] > 0 and delta(temperature[30s]) > 2"))
    assert sorted(found, key=lambda w: w.seconds) == [
        ex.Window("delta", "temperature", 30.0),
        ex.Window("increase", "pcie_replay", 600.0),
    ]
