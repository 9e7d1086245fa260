"""The alerting HTTP API and the webhook receiver, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from collector.alerting.api import routes
from collector.alerting.config import AlertingConfig
from collector.alerting.outbox import RetryPolicy
from collector.alerting.receivers import WebhookConfig
from collector.alerting.routing import Route, Timing
from collector.alerting.service import AlertingService
from tests.kit import metric_value


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Hook:
    """A webhook endpoint that records what it gets and answers with ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        if self.status != 200:
            return web.Response(status=self.status, text="nope")
        self.bodies.append(await request.json())
        return web.Response(status=200)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[AlertingService, Hook, str]]:
    hook = Hook()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook.handle)
    hook_runner, hook_url = await serve(hook_app)
    config = AlertingConfig(
        receivers=(WebhookConfig("hook", f"{hook_url}/hook", timeout=5, bearer_token="s3cret"),),
        route=Route("hook", timing=Timing(0, 1, 3600)),
    )
    service = AlertingService(config, tmp_path, CollectorRegistry(), clock=Clock(), retry=RetryPolicy(jitter=0))
    await service.start(background=False)
    api = web.Application()
    api.add_routes(routes(service))
    api_runner, api_url = await serve(api)
    yield service, hook, api_url
    await api_runner.cleanup()
    await service.shutdown()
    await hook_runner.cleanup()


async def call(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, data=raw if raw is not None else json.dumps(body) if body is not None else None
        ) as response,
    ):
        return response.status, await response.json()


def firing(host: str) -> dict[str, Any]:
    return {"labels": {"alertname": "GpuHot", "severity": "warning", "host": host, "gpu": "0"}, "starts_at": 1.7e9}


async def step(service: AlertingService, times: int = 3) -> None:
    clock = service.clock
    assert isinstance(clock, Clock)
    for _ in range(times):
        await service.step(clock.now)
        clock.now += 0.5


async def test_webhook_gets_alertmanager_shaped_json_with_bearer_token(
    setup: tuple[AlertingService, Hook, str],
) -> None:
    service, hook, api = setup
    assert (await call("POST", f"{api}/api/v1/alerts", [firing("h1")]))[0] == 200
    await step(service)
    [body] = hook.bodies
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["alerts"][0]["labels"]["host"] == "h1"
    assert body["alerts"][0]["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert hook.auth == ["Bearer s3cret"]


async def test_webhook_5xx_is_retried_and_4xx_dropped(setup: tuple[AlertingService, Hook, str]) -> None:
    service, hook, api = setup
    hook.status = 503
    await call("POST", f"{api}/api/v1/alerts", [firing("h1")])
    await step(service, 2)
    hook.status = 200
    await step(service, 6)
    assert len(hook.bodies) == 1
    hook.status = 404
    await call("POST", f"{api}/api/v1/alerts", [firing("h2")])
    await step(service, 4)
    text = generate_latest(service.metrics.registry).decode()
    assert metric_value(text, "gpulse_alerting_notifications_retried_total", receiver="hook") == 1
    assert metric_value(text, "gpulse_alerting_notifications_failed_total", receiver="hook", reason="rejected") == 1
    assert metric_value(text, "gpulse_alerting_outbox_depth", receiver="hook") == 0


async def test_bad_alert_pushes_are_refused_with_reason_and_counted(setup: tuple[AlertingService, Hook, str]) -> None:
    service, _, api = setup
    status, body = await call("POST", f"{api}/api/v1/alerts", raw=b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    status, body = await call("POST", f"{api}/api/v1/alerts", [{"labels": {"alertname": "X"}, "starts_at": 1}])
    assert status == 400 and "severity" in body["error"]
    status, body = await call("POST", f"{api}/api/v1/alerts", [{**firing("h"), "starts_at": "soon"}])
    assert status == 400 and "starts_at" in body["error"]
    text = generate_latest(service.metrics.registry).decode()
    assert metric_value(text, "gpulse_alerting_alerts_rejected_total", reason="malformed") == 2
    assert service.lifecycle.alerts == {}


async def test_silence_api_add_list_expire(setup: tuple[AlertingService, Hook, str]) -> None:
    service, hook, api = setup
    status, silence = await call(
        "POST",
        f"{api}/api/v1/silences",
        {"matchers": ["host=h1"], "duration_seconds": 3600, "created_by": "ana", "comment": "maintenance"},
    )
    assert status == 201 and silence["created_by"] == "ana"
    await call("POST", f"{api}/api/v1/alerts", [firing("h1")])
    await step(service)
    assert hook.bodies == []
    status, listed = await call("GET", f"{api}/api/v1/silences")
    assert [s["id"] for s in listed["silences"] if s["active"]] == [silence["id"]]
    _, alerts = await call("GET", f"{api}/api/v1/alerts")
    assert alerts["alerts"][0]["silenced_by"] == silence["id"]
    assert (await call("DELETE", f"{api}/api/v1/silences/{silence['id']}"))[0] == 200
    assert (await call("DELETE", f"{api}/api/v1/silences/nope"))[0] == 404
    await step(service, 4)
    assert len(hook.bodies) == 1
    status, body = await call("POST", f"{api}/api/v1/silences", {"matchers": ["host=h1"], "comment": "x"})
    assert status == 400 and "ends_at" in body["error"]
