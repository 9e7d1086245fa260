"""The remediation HTTP API: state (mode, breaker, pending and recent actions, the action log),
approve a pending action, reset the breaker."""

from __future__ import annotations

import json

from aiohttp import web

from collector.actions.service import RemediationService

MAX_BODY = 64 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _who(request: web.Request, service: RemediationService) -> str:
    """``by`` from the JSON body, for the action log; "api" when none is given."""
    if request.content_length and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await request.read()
    if not raw:
        return "api"
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        service.metrics.refused.labels("bad_body").inc()
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}), content_type="application/json"
        ) from None
    by = body.get("by") if isinstance(body, dict) else None
    if by is not None and (not isinstance(by, str) or len(by) > 200):
        service.metrics.refused.labels("bad_body").inc()
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "'by' must be a string of at most 200 characters"}),
            content_type="application/json",
        )
    return by or "api"


def routes(service: RemediationService) -> list[web.RouteDef]:
    async def show(_: web.Request) -> web.Response:
        return web.json_response(service.snapshot())

    async def approve(request: web.Request) -> web.Response:
        action_id = request.match_info["id"]
        by = await _who(request, service)
        try:
            action = service.approve(action_id, by)
        except KeyError:
            service.metrics.refused.labels("unknown_action").inc()
            return _error(404, f"no remediation action with id {action_id!r}")
        except ValueError as exc:
            service.metrics.refused.labels("not_pending").inc()
            return _error(409, str(exc))
        return web.json_response(action.to_dict())

    async def reset(request: web.Request) -> web.Response:
        by = await _who(request, service)
        return web.json_response({"was_tripped": service.reset_breaker(by)})

    return [
        web.get("/api/v1/remediation", show),
        web.post("/api/v1/remediation/actions/{id}/approve", approve),
        web.post("/api/v1/remediation/reset", reset),
    ]
