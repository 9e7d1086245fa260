"""The agent's local /metrics: one event loop on one thread serves every connection.

A thread per connection (prometheus_client's ``start_http_server``) let 3,000 slow clients start
3,000 threads. Here each connection is a small asyncio protocol held to ListenerLimits, and the web
config file (exporter-toolkit format) adds TLS and basic auth, re-read when it changes.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable
from pathlib import Path

from runtime.listener import ConnectionGuard, ListenerLimits
from runtime.webconfig import Passwords, WatchedWebConfig, parse_basic

MAX_HEAD_BYTES = 8192
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large"}


def _response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", head: bool = False) -> bytes:
    extra = 'WWW-Authenticate: Basic realm="gpulse"\r\n' if status == 401 else ""
    header = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return header.encode() + (b"" if head else body)


class _MetricsProtocol(asyncio.Protocol):
    def __init__(self, server: MetricsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.answered:
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._send(_response(431, b"request headers too large\n"))
            return
        head, self.buffer, self.answered = self.buffer[:end].decode("latin-1"), b"", True
        asyncio.get_running_loop().create_task(self._answer(head))

    async def _answer(self, head: str) -> None:
        request_line, *header_lines = head.split("\r\n")
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        if method not in ("GET", "HEAD"):
            self._send(_response(405, b"only GET and HEAD\n"))
        elif not await self.server.authorized(headers.get("authorization")):
            self._send(_response(401, b"authentication required\n"))
        elif path != "/metrics":
            self._send(_response(404, b"see /metrics\n"))
        else:
            from prometheus_client import CONTENT_TYPE_LATEST

            self._send(_response(200, self.server.render(), CONTENT_TYPE_LATEST, head=method == "HEAD"))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.transport.close()  # after the write is flushed

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class MetricsServer:
    """Serves ``render()`` at /metrics on ``listen`` from a thread of its own."""

    def __init__(
        self,
        render: Callable[[], bytes],
        listen: str,
        *,
        web_config: Path | None = None,
        limits: ListenerLimits | None = None,
    ) -> None:
        self.render = render
        self.listen = listen
        self.web = WatchedWebConfig(web_config)
        self.passwords = Passwords()
        self.guard = ConnectionGuard(limits or ListenerLimits(max_connections=256, header_timeout=10.0))
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gpulse-metrics", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    async def authorized(self, header: str | None) -> bool:
        users = self.web.current().users
        if not users:
            return True
        credentials = parse_basic(header) if header else None
        if credentials is None:
            return False
        if self.passwords.cached(users, *credentials):
            return True
        return await asyncio.get_running_loop().run_in_executor(None, self.passwords.check, users, *credentials)

    def start(self) -> MetricsServer:
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        context = self.web.context
        # Bound on the server's own loop and thread: the caller may itself be running an event loop.
        self._thread.start()
        create = self._loop.create_server(
            self.guard.factory(lambda: _MetricsProtocol(self)),
            host,
            int(port),
            ssl=context,
            reuse_port=False,
            ssl_handshake_timeout=self.guard.limits.header_timeout if context else None,
        )
        try:
            self._server = asyncio.run_coroutine_threadsafe(create, self._loop).result(10)
        except OSError as exc:
            self._halt()
            if exc.errno == errno.EADDRINUSE:
                problem = f"cannot serve /metrics on {self.listen}: port {port} is already in use"
                raise OSError(exc.errno, problem) from None
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None

        async def close() -> None:
            server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._halt()
