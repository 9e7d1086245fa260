"""Limits for an HTTP listener: a ceiling on connections, and a deadline for each request's headers.

Without them a few clients holding thousands of idle or trickling connections starve everyone else
(the scraper included). Each accepted connection must deliver its request headers within
``header_timeout``; when the listener is full, the connection that has waited longest without
sending its headers is dropped to make room, so a real client always gets in while a slow one
cannot hold a slot for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Reasons a connection is dropped, each counted; exported at 0 before the first.
DROP_REASONS = ("header_timeout", "max_connections")


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    max_connections: int = 512
    header_timeout: float = 10.0  # from accept (TLS handshake included) to the end of the headers
    idle_timeout: float = 30.0  # a kept-alive connection with no request


class ConnectionGuard:
    """Shared by all the connections of one listener; wraps each new protocol with ``wrap``."""

    def __init__(
        self,
        limits: ListenerLimits,
        *,
        on_drop: Callable[[str], None] = lambda reason: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.on_drop = on_drop
        self.monotonic = monotonic
        # Insertion order is arrival order: the first waiting one is the one waiting longest.
        self.waiting: dict[GuardedProtocol, None] = {}
        self.open: set[GuardedProtocol] = set()

    def wrap(self, inner: asyncio.Protocol) -> GuardedProtocol:
        return GuardedProtocol(self, inner)

    def factory(self, make: Callable[[], Any]) -> Callable[[], GuardedProtocol]:
        """A protocol factory for ``loop.create_server`` around another one."""
        return lambda: self.wrap(make())

    def _admit(self, connection: GuardedProtocol) -> bool:
        if len(self.open) >= self.limits.max_connections:
            if not self.waiting:
                self.on_drop("max_connections")
                return False
            oldest = next(iter(self.waiting))
            oldest.drop("max_connections")
        self.open.add(connection)
        self.waiting[connection] = None
        return True

    def _forget(self, connection: GuardedProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


class GuardedProtocol(asyncio.Protocol):
    """Passes everything to the real protocol; enforces the header deadline until headers arrive."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._dropped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard._admit(self):
            transport.abort()
            self._dropped = True
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.limits.header_timeout, self.drop, "header_timeout")
        self.inner.connection_made(transport)

    def drop(self, reason: str) -> None:
        """Close a connection that has not sent its headers (deadline, or room for a newer one)."""
        if self._dropped or self not in self.guard.waiting:
            return
        self._dropped = True
        self.guard.waiting.pop(self, None)
        self.guard.on_drop(reason)
        if self.transport is not None:
            self.transport.abort()  # no lingering close: the point is to free the slot now

    def data_received(self, data: bytes) -> None:
        if self in self.guard.waiting:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self.guard.waiting.pop(self, None)
                if self._timer is not None:
                    self._timer.cancel()
            else:
                self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        was_admitted = self in self.guard.open
        self.guard._forget(self)
        if was_admitted:
            self.inner.connection_lost(exc)
