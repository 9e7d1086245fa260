from __future__ import annotations

from collector.ingest.ratelimit import TokenBucket


def test_burst_then_sustained_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=5.0, clock=lambda: now[0])
    assert all(bucket.take() for _ in range(5))
    assert not bucket.take(), "the burst is spent"
    now[0] = 0.1  # one token back at 10/s
    assert bucket.take()
    assert not bucket.take()


def test_idle_time_refills_only_up_to_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=100.0, burst=3.0, clock=lambda: now[0])
    now[0] = 3600.0
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
