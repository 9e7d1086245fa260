"""The collector's HTTP side: /metrics for Prometheus, /healthz, and a small JSON API."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector.exporters.exposition import FleetExposition
from collector.selfmetrics import CollectorMetrics
from collector.store import HEALTH_NAMES, FleetStore, HostRecord
from protos.fields import CATALOG


def fleet_summary(store: FleetStore) -> dict[str, Any]:
    """The fleet as JSON: hosts, their GPUs, key values and health (for `gpulse top` and scripts)."""
    key_fields = ("utilization", "temperature", "power_usage", "memory_used", "sm_clock")
    cols = {name: store.gpu_columns[CATALOG.gpu(name).id] for name in key_fields}
    hosts = []
    for record in store.hosts.values():
        gpus = []
        for meta in record.gpus:
            row = store.gpu_values[meta.row]
            gpus.append(
                {
                    "index": meta.index,
                    "uuid": meta.uuid,
                    "model": meta.model,
                    "health": HEALTH_NAMES[int(store.gpu_health[meta.row])],
                    "lost": bool(store.gpu_lost[meta.row]),
                    "jobs": _jobs(record, meta.index),
                    **{name: _num(row[col]) for name, col in cols.items()},
                }
            )
        hosts.append(
            {
                "host_id": record.host_id,
                "connected": record.connected,
                "boot_id": record.boot_id,
                "last_frame_unix": record.last_frame_ns / 1e9,
                "clock_skew_seconds": record.clock_skew_seconds,
                "gpus": gpus,
            }
        )
    return {"hosts": hosts}


def _jobs(record: HostRecord, gpu_index: int) -> list[str]:
    """The jobs on a GPU as ``"slurm 1234"`` (kind and id), for `gpulse top --job`; [] when none is known."""
    found = (p.workload for p in record.workloads.get(gpu_index, []))
    return sorted({f"{w.kind or 'job'} {w.id}" for w in found if w.id})


def _num(value: float) -> float | None:
    return None if value != value else float(value)


def build_app(
    store: FleetStore,
    exposition: FleetExposition,
    metrics: CollectorMetrics,
    middlewares: Sequence[Middleware] = (),
) -> web.Application:
    async def metrics_handler(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        chunks = await exposition.render_async()
        metrics.ingest_seconds.set(time.perf_counter() - started)
        chunks.append(generate_latest(metrics.registry))
        # Written chunk by chunk: a large fleet's text is never joined into one more copy, and the
        # loop runs ingest while the socket drains.
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
        response.content_length = sum(len(chunk) for chunk in chunks)
        await response.prepare(request)
        if request.method == "HEAD":
            return response  # the headers only, as for any GET route's HEAD
        try:
            for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the scraper gave up (its scrape timeout): nothing to send it, nothing wrong here
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "hosts": len(store.hosts)})

    async def fleet(_: web.Request) -> web.Response:
        return web.json_response(fleet_summary(store))

    app = web.Application(middlewares=middlewares)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/fleet", fleet)
    return app
