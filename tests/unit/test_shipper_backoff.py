from __future__ import annotations

import random

from agent.config import BackoffConfig
from agent.shipper import backoff_delays


def test_backoff_grows_exponentially_to_its_cap_with_bounded_jitter() -> None:
    delay = backoff_delays(BackoffConfig(initial=0.5, maximum=30.0, multiplier=2.0, jitter=0.2), random.Random(7))
    samples = [[delay(n) for _ in range(200)] for n in range(12)]
    for n, values in enumerate(samples):
        base = min(30.0, 0.5 * 2**n)
        assert all(base * 0.8 <= v <= base * 1.2 for v in values), n
        assert max(values) - min(values) > base * 0.2  # jittered: a fleet does not reconnect in lockstep
    assert max(samples[-1]) <= 36.0


def test_without_jitter_delays_are_exact() -> None:
    delay = backoff_delays(BackoffConfig(initial=1.0, maximum=8.0, multiplier=3.0, jitter=0.0), random.Random(1))
    assert [delay(n) for n in range(4)] == [1.0, 3.0, 8.0, 8.0]
