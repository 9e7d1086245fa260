"""Wiring the collector together in one place, and running it until told to stop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import structlog
from aiohttp import web

from collector.alerting.api import routes as alerting_routes
from collector.alerting.service import AlertingService
from collector.config import CollectorConfig
from collector.exporters.remote_write import RemoteWriter
from collector.exposition import EventTallies, FleetExposition
from collector.http import build_app
from collector.selfmetrics import CollectorMetrics
from collector.server import TelemetryService
from collector.store import FleetStore
from gpulse.tls import server_credentials
from gpulse.transport import server_options
from protos import telemetry_pb2_grpc as pb_grpc

log = structlog.get_logger("gpulse.collector")


@dataclass
class RunningCollector:
    """A started collector: its parts, and the ports it actually bound (for ':0' in tests)."""

    store: FleetStore
    metrics: CollectorMetrics
    service: TelemetryService
    grpc_server: grpc.aio.Server
    http_runner: web.AppRunner
    grpc_port: int
    http_port: int
    remote_writer: RemoteWriter | None = None
    alerting: AlertingService | None = None  # the AlertSink detection pushes into

    async def stop(self, grace: float = 2.0) -> None:
        await self.grpc_server.stop(grace)
        await self.http_runner.cleanup()
        if self.remote_writer is not None:  # after ingest stops, so the last frames go out too
            await self.remote_writer.shutdown()
        if self.alerting is not None:
            await self.alerting.shutdown()


async def start_collector(config: CollectorConfig) -> RunningCollector:
    store = FleetStore()
    metrics = CollectorMetrics()
    metrics.shard.labels(config.collector_id).set(1)
    tallies = EventTallies()
    remote_writer = RemoteWriter(config.remote_write, store, metrics.registry) if config.remote_write else None
    service = TelemetryService(
        store=store,
        metrics=metrics,
        collector_id=config.collector_id,
        limits=config.limits,
        observers=[tallies, *([remote_writer] if remote_writer else [])],
    )
    server = grpc.aio.server(options=server_options())
    pb_grpc.add_TelemetryServicer_to_server(service, server)
    grpc_port = server.add_secure_port(config.listen, server_credentials(config.tls))
    if grpc_port == 0:
        raise OSError(f"cannot listen for gRPC on {config.listen}")
    await server.start()
    if remote_writer is not None:
        remote_writer.start()
    exposition = FleetExposition(
        store, stale_after=config.stale_after, formats=config.exposition_formats, tallies=tallies
    )
    app = build_app(store, exposition, metrics)
    alerting = AlertingService(config.alerting, config.state_dir, metrics.registry, store=store)
    await alerting.start()
    app.add_routes(alerting_routes(alerting))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = config.http_listen.rpartition(":")
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    await site.start()
    http_port = runner.addresses[0][1]
    log.info(
        "collector listening",
        grpc=f"{config.listen.rpartition(':')[0]}:{grpc_port}",
        http=f"http://{host}:{http_port}/metrics",
        collector_id=config.collector_id,
    )
    return RunningCollector(
        store, metrics, service, server, runner, grpc_port, http_port, remote_writer=remote_writer, alerting=alerting
    )


async def run_collector(config: CollectorConfig, stop: asyncio.Event) -> None:
    running = await start_collector(config)
    try:
        await stop.wait()
    finally:
        log.info("collector stopping")
        await running.stop()
