"""Who may do what over the collector's HTTP port: authentication from the web config, and two roles.

*read*: ``/metrics`` and every GET of the API (fleet, alerts, silences). *write*: everything that
changes state (adding or expiring a silence, posting or resolving alerts, and later remediation).
A refused request gets 401 (who are you?) or 403 (not allowed), is counted by reason, and is
never passed on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from collector.http.config import WebSettings
from runtime.webconfig import Passwords, WatchedWebConfig, WebConfig, parse_basic

REFUSAL_REASONS = ("unauthenticated", "forbidden", "read_only")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Liveness for systemd and load balancers: it says only "ok" and how many hosts there are.
OPEN_PATHS = frozenset({"/healthz"})
PRINCIPAL = "gpulse.principal"  # request key of the authenticated Principal


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a basic-auth user, a client certificate's CN, or nobody in particular."""

    name: str
    kind: str  # "user", "certificate" or "anonymous"


ANONYMOUS = Principal("anonymous", "anonymous")


def certificate_cn(request: web.Request) -> str | None:
    """The CN of the verified client certificate on the request's TLS connection, if any."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return None
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


async def authenticate(request: web.Request, config: WebConfig, passwords: Passwords) -> Principal | None:
    """The request's principal, or None when it must show credentials and did not (or they were wrong)."""
    header = request.headers.get("Authorization")
    if header is not None and config.users:
        credentials = parse_basic(header)
        if credentials is None:
            return None
        user, password = credentials
        if passwords.cached(config.users, user, password):
            return Principal(user, "user")
        # bcrypt takes tens of milliseconds on purpose: off the event loop, so ingest goes on.
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, passwords.check, config.users, user, password)
        return Principal(user, "user") if ok else None
    cn = certificate_cn(request)
    if cn is not None:
        return Principal(cn, "certificate")
    return None if config.has_credentials else ANONYMOUS


def may_write(principal: Principal, settings: WebSettings) -> bool:
    if settings.read_only:
        return False
    if settings.writers is None:
        return True  # anonymous only gets here where nothing is configured, on loopback (see parse_web)
    return principal.kind != "anonymous" and principal.name in settings.writers


def access_middleware(
    watched: WatchedWebConfig,
    settings: WebSettings,
    *,
    on_refused: Callable[[str], None] = lambda reason: None,
    passwords: Passwords | None = None,
) -> Middleware:
    checker = passwords or Passwords()

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        principal = await authenticate(request, watched.current(), checker)
        if principal is None:
            on_refused("unauthenticated")
            return web.json_response(
                {"error": "authentication required"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="gpulse"'},
            )
        request[PRINCIPAL] = principal  # the audit record names who was refused, too
        if request.method in WRITE_METHODS and not may_write(principal, settings):
            reason = "read_only" if settings.read_only else "forbidden"
            on_refused(reason)
            message = "this collector is read-only" if settings.read_only else f"{principal.name} has no write role"
            return web.json_response({"error": message}, status=403)
        return await handler(request)

    return middleware
