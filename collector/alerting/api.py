"""The alerting HTTP API: alerts (list, and push from outside sources) and silences (add, list, expire)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from collector.alert import Alert
from collector.alerting.service import AlertingService
from collector.alerting.silence import SilenceError

MAX_BODY = 1 << 20


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        return json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}), content_type="application/json"
        ) from None


def routes(service: AlertingService) -> list[web.RouteDef]:
    """Routes under /api/v1 for the collector's HTTP app."""

    def describe(alert: Alert) -> dict[str, Any]:
        silence = service.silencer.silenced_by(alert.labels)
        inhibitor = service.inhibitor.inhibited_by(alert.labels)
        return {
            "fingerprint": alert.fingerprint,
            **alert.to_dict(),
            "silenced_by": silence.id if silence else None,
            "inhibited_by": inhibitor.fingerprint if inhibitor else None,
        }

    async def list_alerts(_: web.Request) -> web.Response:
        alerts = sorted(service.lifecycle.alerts.values(), key=lambda a: (a.starts_at, a.fingerprint))
        return web.json_response({"alerts": [describe(a) for a in alerts]})

    async def post_alerts(request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, list):
            return _error(400, "expected a JSON list of alerts")
        parsed = []
        for i, item in enumerate(body):
            if not isinstance(item, dict):
                return _error(400, f"alert [{i}]: expected an object")
            try:
                parsed.append(Alert.from_dict(item))
            except ValueError as exc:
                service.metrics.alerts_rejected.labels("malformed").inc()
                return _error(400, f"alert [{i}]: {exc}")
        service.push(parsed, service.clock())
        return web.json_response({"accepted": len(parsed)})

    async def list_silences(_: web.Request) -> web.Response:
        now = service.clock()
        return web.json_response(
            {"silences": [{**s.to_dict(), "active": s.active(now)} for s in service.silencer.list()]}
        )

    async def add_silence(request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return _error(400, "expected a JSON object")
        now = service.clock()
        try:
            matchers = body.get("matchers")
            if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
                raise SilenceError("matchers must be a list of strings like 'host=node-1'")
            if "ends_at" in body:
                ends_at = float(body["ends_at"])
            elif "duration_seconds" in body:
                ends_at = now + float(body["duration_seconds"])
            else:
                raise SilenceError("give ends_at (unix seconds) or duration_seconds")
            starts_at = float(body["starts_at"]) if body.get("starts_at") is not None else None
            silence = service.silencer.add(
                matchers,
                ends_at=ends_at,
                starts_at=starts_at,
                created_by=str(body.get("created_by", "")),
                comment=str(body.get("comment", "")),
            )
        except (SilenceError, TypeError, ValueError) as exc:
            return _error(400, str(exc))
        service.wake()
        return web.json_response(silence.to_dict(), status=201)

    async def expire_silence(request: web.Request) -> web.Response:
        try:
            silence = service.silencer.expire(request.match_info["id"])
        except KeyError:
            return _error(404, f"no silence with id {request.match_info['id']!r}")
        service.wake()
        return web.json_response(silence.to_dict())

    return [
        web.get("/api/v1/alerts", list_alerts),
        web.post("/api/v1/alerts", post_alerts),
        web.get("/api/v1/silences", list_silences),
        web.post("/api/v1/silences", add_silence),
        web.delete("/api/v1/silences/{id}", expire_silence),
    ]
