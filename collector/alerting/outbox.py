"""Delivering the outbox: rate limit, send, retry with backoff, record. Rows leave only when done with."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from collector.alerting.metrics import AlertingMetrics
from collector.alerting.ratelimit import RateLimiter
from collector.alerting.receivers.base import PermanentError, Receiver, RetryableError
from collector.alerting.state import AlertingState, OutboxItem

log = structlog.get_logger("gpulse.alerting")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial: float = 1.0
    max: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.2  # ± this fraction, so many collectors do not retry in step
    max_age: float = 86400.0  # past this a notification is stale: give up and count it

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Backoff after ``attempts`` failed tries (1 = the first failure)."""
        base = min(self.max, self.initial * self.multiplier ** max(0, attempts - 1))
        return base * (1 + rng.uniform(-self.jitter, self.jitter))


class Deliverer:
    def __init__(
        self,
        state: AlertingState,
        receivers: Mapping[str, Receiver],
        metrics: AlertingMetrics,
        *,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
        batch: int = 64,
    ) -> None:
        self._state = state
        self._receivers = receivers
        self._metrics = metrics
        self.policy = policy or RetryPolicy()
        self._limiter = limiter or RateLimiter()
        self._rng = rng or random.Random()
        self._batch = batch

    async def deliver_due(self, now: float) -> int:
        """Send what is due (concurrently, within rate limits); returns how many were attempted."""
        sends = []
        for item in self._state.due(now, self._batch, self._malformed):
            receiver = self._receivers.get(item.receiver)
            if receiver is None:
                log.error("outbox row for an unknown receiver dropped", receiver=item.receiver)
                self._metrics.failed.labels(item.receiver, "unknown_receiver").inc()
                self._state.drop(item)
                continue
            if now - item.created_at > self.policy.max_age:
                log.error("notification expired undelivered", receiver=item.receiver, attempts=item.attempts)
                self._metrics.failed.labels(item.receiver, "expired").inc()
                self._state.drop(item)
                continue
            limit = receiver.rate_limit
            if limit is not None and not self._limiter.try_take(receiver.rate_key, limit, now, len(item.alerts)):
                # Waiting, not dropping: newer states for the same key coalesce into this row meanwhile.
                self._metrics.rate_limited.labels(receiver.name).inc()
                until = self._limiter.next_free(receiver.rate_key, limit, now, len(item.alerts))
                self._state.postpone(item, until, "rate limited", count_attempt=False)
                continue
            sends.append(self._send(receiver, item, now))
        await asyncio.gather(*sends)
        return len(sends)

    def _malformed(self, receiver: str, problem: str) -> None:
        log.error("damaged outbox row dropped", receiver=receiver, problem=problem)
        self._metrics.failed.labels(receiver, "malformed").inc()

    async def _send(self, receiver: Receiver, item: OutboxItem, now: float) -> None:
        try:
            await receiver.notify(item.alerts, item.group_key)
        except RetryableError as exc:
            delay = self.policy.delay(item.attempts + 1, self._rng)
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            self._metrics.retried.labels(receiver.name).inc()
            log.warning("notification failed, will retry", receiver=receiver.name, error=str(exc), retry_in=delay)
            self._state.postpone(item, now + delay, str(exc))
        except PermanentError as exc:
            self._metrics.failed.labels(receiver.name, "rejected").inc()
            log.error("notification rejected, dropped", receiver=receiver.name, error=str(exc))
            self._state.drop(item)
        except Exception as exc:  # a receiver bug must not stop the outbox; retry it like an outage
            self._metrics.retried.labels(receiver.name).inc()
            log.exception("receiver raised unexpectedly", receiver=receiver.name)
            self._state.postpone(item, now + self.policy.delay(item.attempts + 1, self._rng), repr(exc))
        else:
            self._metrics.sent.labels(receiver.name).inc()
            self._state.delivered(item)
