"""A PagerDuty Events API v2 stand-in: a real HTTP server on 127.0.0.1 that holds clients to the contract.

It checks the v2 schema and limits (routing key, event_action, dedup_key, a summary of at most 1024
characters, source, severity, a body under 512 KB), enforces 120 events a minute per routing key with
429 like the real service, keeps incidents by dedup_key, and answers 400, 429 or 5xx on demand.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_BODY = 512 * 1024


@dataclass
class Incident:
    dedup_key: str
    opened: int = 0  # how many times a trigger opened it (a second means a second page)
    open: bool = False
    triggers: int = 0
    resolves: int = 0
    last_trigger: dict[str, Any] = field(default_factory=dict)


def validate(body: Any) -> list[str]:
    """The v2 contract's checks; an empty list means valid."""
    if not isinstance(body, dict):
        return ["event must be a JSON object"]
    errors = []
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be a 32 character string")
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append(f"'event_action' must be one of {ACTIONS}")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not dedup or len(dedup) > 255):
        errors.append("'dedup_key' must be a non-empty string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is required for trigger"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary:
            errors.append("'payload.summary' is required")
        elif len(summary) > 1024:
            errors.append("'payload.summary' must be at most 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is required")
        if payload.get("severity") not in SEVERITIES:
            errors.append(f"'payload.severity' must be one of {SEVERITIES}")
        details = payload.get("custom_details")
        if details is not None and not isinstance(details, dict):
            errors.append("'payload.custom_details' must be an object")
    return errors


class FakePagerDuty:
    """Start with ``start()`` (a thread with its own event loop), stop with ``stop()``."""

    def __init__(self, *, events_per_minute: int = 120, clock: Callable[[], float] = time.monotonic) -> None:
        self.events_per_minute = events_per_minute
        self.clock = clock  # tests that drive time themselves hand theirs in
        self.accepted: list[dict[str, Any]] = []
        self.rejected: list[tuple[int, Any]] = []
        self.incidents: dict[str, Incident] = {}
        self.rate_violations = 0
        self._injected: deque[int] = deque()
        self._window: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/enqueue"

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (400, 429, 500, 503, ...)."""
        with self._lock:
            self._injected.extend([status] * times)

    def clear_failures(self) -> None:
        with self._lock:
            self._injected.clear()

    def triggers(self, dedup_key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.accepted
                if e["event_action"] == "trigger" and (dedup_key is None or e["dedup_key"] == dedup_key)
            ]

    def resolves(self, dedup_key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.accepted
                if e["event_action"] == "resolve" and (dedup_key is None or e["dedup_key"] == dedup_key)
            ]

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            injected = self._injected.popleft() if self._injected else None
        if injected is not None:
            message = {400: "Event object is invalid", 429: "Too many requests"}.get(injected, "Internal error")
            self.rejected.append((injected, None))
            headers = {"Retry-After": "1"} if injected == 429 else {}
            return web.json_response({"status": "error", "message": message}, status=injected, headers=headers)
        if len(raw) >= MAX_BODY:
            self.rejected.append((413, None))
            return web.json_response({"status": "invalid event", "message": "Request too large"}, status=413)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self.rejected.append((400, None))
            return web.json_response({"status": "invalid event", "message": "Malformed JSON"}, status=400)
        errors = validate(body)
        if errors:
            self.rejected.append((400, body))
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400
            )
        with self._lock:
            window = self._window.setdefault(body["routing_key"], deque())
            now = self.clock()
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= self.events_per_minute:
                self.rate_violations += 1
                self.rejected.append((429, body))
                return web.json_response({"status": "throttle", "message": "Too many requests"}, status=429)
            window.append(now)
            self.accepted.append(body)
            dedup = body.get("dedup_key") or f"auto-{len(self.accepted)}"
            incident = self.incidents.setdefault(dedup, Incident(dedup))
            if body["event_action"] == "trigger":
                incident.triggers += 1
                incident.last_trigger = body
                if not incident.open:
                    incident.open = True
                    incident.opened += 1
            elif body["event_action"] == "resolve":
                incident.resolves += 1
                incident.open = False
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202)

    def start(self) -> FakePagerDuty:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=4 * MAX_BODY)
            app.router.add_post("/v2/enqueue", self._enqueue)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-pagerduty", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake PagerDuty did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
