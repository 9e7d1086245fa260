"""An aiohttp site that binds its port exclusively and holds every connection to ListenerLimits."""

from __future__ import annotations

import asyncio
import errno
import ssl

from aiohttp import web

from runtime.listener import ConnectionGuard


class GuardedSite(web.BaseSite):
    """Like ``web.TCPSite``, with a ConnectionGuard around aiohttp's protocol and no SO_REUSEPORT."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._guard.factory(server),
                self._host,
                self._port,
                ssl=self._ssl_context,
                backlog=self._backlog,
                reuse_port=False,  # a second collector on the same port must fail, not share it
                ssl_handshake_timeout=self._guard.limits.header_timeout if self._ssl_context else None,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                where = f"{self._host}:{self._port}"
                problem = f"cannot listen for HTTP on {where}: port {self._port} is already in use"
                raise OSError(exc.errno, problem) from None
            raise
