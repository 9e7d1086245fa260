"""What every receiver is: a name, how it batches, its rate limit, and ``notify`` raising typed errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from collector.alert import Alert
from collector.alerting.ratelimit import RateLimit


class ReceiverError(Exception):
    """A delivery failed; the message says how."""


class RetryableError(ReceiverError):
    """Worth trying again later (429, 5xx, timeouts, connection refused)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ReceiverError):
    """Trying again cannot help (400: the receiver refused what we sent); logged and dropped."""


class Receiver(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def per_alert(self) -> bool:
        """One delivery per alert (PagerDuty: one incident per dedup_key), or one per group."""
        ...

    @property
    def resend_interval(self) -> float | None:
        """Re-send firing alerts this often even when nothing changed (Alertmanager forgets silent alerts)."""
        ...

    @property
    def rate_limit(self) -> RateLimit | None: ...

    @property
    def rate_key(self) -> str:
        """Receivers with the same key share one rate-limit budget."""
        ...

    async def notify(self, alerts: Sequence[Alert], group_key: str) -> None:
        """Deliver; return when accepted, raise RetryableError or PermanentError otherwise."""
        ...


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    time_limit: float,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """POST JSON; the classic HTTP outcomes become RetryableError or PermanentError, a 2xx returns."""
    try:
        async with session.post(
            url, json=body, headers=dict(headers or {}), timeout=aiohttp.ClientTimeout(total=time_limit)
        ) as response:
            text = await response.text(errors="replace")
            status = response.status
            if 200 <= status < 300:
                return status, text
            reason = f"{what} answered {status}: {text[:300].strip()}"
            if status in (408, 429) or status >= 500:
                raise RetryableError(reason, _retry_after(response.headers))
            raise PermanentError(reason)
    except (aiohttp.ClientError, TimeoutError) as exc:
        where = redact_url(url)
        detail = str(exc).replace(url, where)
        raise RetryableError(f"{what} unreachable at {where}: {type(exc).__name__} {detail}") from None


def redact_url(url: str) -> str:
    """Scheme, host and port only: a webhook's path or query often is its secret (a token)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    hidden = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def iso8601(unix: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
