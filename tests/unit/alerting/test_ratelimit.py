from __future__ import annotations

from collector.alerting.ratelimit import RateLimit, RateLimiter

PD = RateLimit(120, 60.0)


def test_120_then_wait_for_the_window_to_slide() -> None:
    limiter = RateLimiter()
    assert all(limiter.try_take("k", PD, now=i * 0.1) for i in range(120))
    assert not limiter.try_take("k", PD, now=20)
    assert limiter.next_free("k", PD, now=20) == 60.0  # when the first event leaves the window
    assert limiter.try_take("k", PD, now=60.0)
    assert not limiter.try_take("k", PD, now=60.0)


def test_keys_have_their_own_budget() -> None:
    limiter = RateLimiter()
    for _ in range(120):
        limiter.try_take("a", PD, now=0)
    assert limiter.try_take("b", PD, now=0)


def test_never_more_than_the_limit_in_any_rolling_minute() -> None:
    limiter = RateLimiter()
    sent = [t / 10 for t in range(0, 3000) if limiter.try_take("k", PD, now=t / 10)]
    assert len(sent) >= 5 * 120 - 1  # and it does not starve: the full rate is used
    for i, start in enumerate(sent):
        assert len([t for t in sent[i:] if t < start + 60]) <= 120
