"""``GET /api/v1/ledger/report``: what ``gpulse report`` reads."""

from __future__ import annotations

import time

from aiohttp import web

from collector.ledger.report import BY, Prices, summarise
from collector.ledger.service import LedgerService


def routes(service: LedgerService) -> list[web.RouteDef]:
    async def report(request: web.Request) -> web.Response:
        q = request.query
        try:
            to_ns = int(q.get("to", time.time_ns()))
            from_ns = int(q.get("from", to_ns - 7 * 86400 * 10**9))
        except ValueError:
            return web.json_response({"error": "from and to must be Unix nanoseconds"}, status=400)
        by = q.get("by", "job")
        if by not in BY:
            return web.json_response({"error": f"by must be one of {', '.join(BY)}; got {by!r}"}, status=400)
        if from_ns >= to_ns:
            return web.json_response({"error": "from must be before to"}, status=400)
        service.flush()  # so the report includes the last seconds
        c = service.config
        body = summarise(
            service.db.usage_rows(from_ns, to_ns),
            service.db.jobs_between(from_ns, to_ns),
            by,
            Prices(c.price_per_kwh, c.price_per_gpu_hour, c.currency),
        )
        body |= {"from_ns": from_ns, "to_ns": to_ns}
        return web.json_response(body)

    return [web.get("/api/v1/ledger/report", report)]
