"""Every write over the HTTP API, allowed or refused, becomes one audit record."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from collector.audit.log import AuditLog
from collector.http.access import PRINCIPAL, WRITE_METHODS, Principal

_ACTIONS = {
    ("POST", "/api/v1/silences"): "silence.add",
    ("DELETE", "/api/v1/silences/{id}"): "silence.expire",
    ("POST", "/api/v1/alerts"): "alert.post",  # firing and resolved alerts alike
}


def action_of(request: web.Request) -> str:
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else request.path
    return _ACTIONS.get((request.method, canonical), f"http.{request.method.lower()}")


def audit_middleware(audit: AuditLog) -> Middleware:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method not in WRITE_METHODS:
            return await handler(request)
        request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            principal = request.get(PRINCIPAL)
            actor = principal.name if isinstance(principal, Principal) else "unauthenticated"
            result = "success" if status < 400 else ("denied" if status in (401, 403) else "failure")
            audit.record(
                actor=actor,
                source=request.remote or "",
                action=action_of(request),
                object=request.path,
                result=f"{result} {status}",
                request_id=request_id,
            )

    return middleware
