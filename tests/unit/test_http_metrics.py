"""The collector's /metrics over a real socket on 127.0.0.1: streamed chunks, HEAD, a scraper that leaves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from collector.exporters.exposition import FleetExposition
from collector.http.app import build_app
from collector.selfmetrics import CollectorMetrics
from collector.store import FleetStore
from tests.unit.test_store_exposition import NOW, apply, hello


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, FleetExposition]]:
    store = FleetStore()
    for h in range(200):
        apply(store, hello(f"h{h:03d}", 8), NOW, float(h))
    exposition = FleetExposition(store, stale_after=120, clock=lambda: NOW / 1e9)
    runner = web.AppRunner(build_app(store, exposition, CollectorMetrics()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/metrics", exposition
    await runner.cleanup()


async def test_the_streamed_body_is_the_whole_exposition_with_its_length(
    served: tuple[str, FleetExposition],
) -> None:
    url, exposition = served
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.read()
        assert response.status == 200 and response.content_length == len(body)
    text = body.decode()
    assert text.startswith(exposition.render()) and "gpulse_collector_last_scrape_render_seconds" in text


async def test_head_sends_headers_only_and_the_connection_stays_usable(served: tuple[str, FleetExposition]) -> None:
    url, _ = served
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        async with session.head(url) as response:
            assert response.status == 200 and response.content_length and await response.read() == b""
        async with session.get(url) as response:  # the same connection: no stray body before it
            assert response.status == 200 and (await response.read()).startswith(b"# HELP")


async def test_a_scraper_that_leaves_mid_body_is_no_error(
    served: tuple[str, FleetExposition], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = served
    port = int(url.split(":")[2].split("/")[0])
    with caplog.at_level(logging.ERROR, logger="aiohttp"):
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await reader.read(4096)  # the headers and the start of the body, then gone
            writer.transport.abort()
        await asyncio.sleep(0.5)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
