"""Clock skew from send stamps: the least delayed reading of a window."""

from __future__ import annotations

import pytest

from collector.ingest.skew import ClockSkew

S = 10**9  # one second in ns
T0 = 1_800_000_000 * S


def test_the_least_delayed_reading_is_the_estimate() -> None:
    skew = ClockSkew(window=4)
    # The agent runs 2 s ahead; transit and queueing delays of 1 ms to 300 ms.
    for i, delay_ms in enumerate([300, 1, 40, 120]):
        received = T0 + i * S
        estimate = skew.observe(received + 2 * S - delay_ms * 10**6, received)
    assert estimate == pytest.approx(1.999)


def test_a_backlog_sent_behind_a_busy_collector_does_not_drag_it_down() -> None:
    skew = ClockSkew(window=32)
    skew.observe(T0, T0)  # in step
    for i in range(1, 20):  # messages queued for up to seconds before they are read
        estimate = skew.observe(T0 + i * S, T0 + i * S + i * S // 10)
    assert estimate == 0.0


def test_a_jump_ahead_shows_at_once_and_a_step_back_once_the_window_has_passed() -> None:
    skew = ClockSkew(window=8)
    for i in range(8):
        skew.observe(T0 + i * S, T0 + i * S)
    assert skew.observe(T0 + 8 * S + 30 * S, T0 + 8 * S) == 30.0  # NTP gone, clock jumped 30 s ahead
    back = [skew.observe(T0 + i * S - 5 * S, T0 + i * S) for i in range(9, 17)]
    assert back[-2] == 30.0 and back[-1] == -5.0  # the 30 s reading has left the window
