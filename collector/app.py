"""Wiring the collector together in one place, and running it until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from aiohttp import web

from collector import config as collector_config
from collector.alerting.api import routes as alerting_routes
from collector.alerting.service import AlertingService
from collector.config import CollectorConfig
from collector.detect.service import DetectionService
from collector.exporters.exposition import EventTallies, FleetExposition
from collector.exporters.remote_write import RemoteWriter
from collector.http.app import build_app
from collector.ingest.progress import ProgressBook, ProgressStore
from collector.ingest.server import TelemetryService, add_telemetry_service
from collector.selfmetrics import CollectorMetrics
from collector.statefiles import PROGRESS_FILE
from collector.store import FleetStore
from collector.trust.certificates import ServerCertificates
from collector.trust.handshakes import StderrHandshakeWatcher
from collector.trust.revocation import RevocationList
from runtime import logs
from runtime.lifecycle import Lifecycle
from runtime.transport import server_options

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
    certificates: ServerCertificates
    revocation: RevocationList
    alerting: AlertingService | None = None  # the AlertSink detection pushes into
    remote_writer: RemoteWriter | None = None
    detection: DetectionService | None = None

    async def stop(self, grace: float = 2.0) -> None:
        await self.grpc_server.stop(grace)
        await self.http_runner.cleanup()
        if self.remote_writer is not None:  # after ingest stops, so the last frames go out too
            await self.remote_writer.shutdown()
        if self.detection is not None:  # before alerting: detection pushes into it
            await self.detection.shutdown()
        if self.alerting is not None:
            await self.alerting.shutdown()


async def start_collector(config: CollectorConfig) -> RunningCollector:
    store = FleetStore()
    metrics = CollectorMetrics()
    metrics.shard.labels(config.collector_id).set(1)
    tallies = EventTallies()
    remote_writer = (
        RemoteWriter(config.remote_write, store, metrics.registry, directory=config.state_dir / "remote-write")
        if config.remote_write
        else None
    )
    revocation = RevocationList(config.crl, config.tls.ca)
    service = TelemetryService(
        store=store,
        metrics=metrics,
        collector_id=config.collector_id,
        limits=config.limits,
        # Durable, so a collector killed and restarted neither applies a record twice nor loses one.
        # Acknowledged only once the remote write queue holds it too (fsynced before progress is saved).
        progress=ProgressBook(
            ProgressStore(config.state_dir / PROGRESS_FILE),
            sinks=[remote_writer.sync] if remote_writer else [],
        ),
        observers=[tallies, *([remote_writer] if remote_writer else [])],
        revocation=revocation,
    )
    # gRPC's own ceiling sits above ours: below it, an oversized message is refused by the servicer
    # with a reason and a count; gRPC's limit only guards memory against the absurd.
    server = grpc.aio.server(options=server_options(4 * config.limits.max_message_bytes))
    add_telemetry_service(service, server)
    certificates = ServerCertificates(config.tls, expiry=metrics.certificate_expiry.set)
    grpc_port = server.add_secure_port(config.listen, certificates.credentials())
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
    # Detection reads the store each tick and hears of hard-fault events the moment they are applied.
    detection = DetectionService(store, alerting, config.detect, metrics.registry)
    service.observers.append(detection.engine)
    detection.start()
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
        store,
        metrics,
        service,
        server,
        runner,
        grpc_port,
        http_port,
        certificates,
        revocation,
        alerting,
        remote_writer=remote_writer,
        detection=detection,
    )


def collector_status(running: RunningCollector) -> str:
    """One line for `systemctl status`."""
    connected = sum(r.connected for r in running.store.hosts.values())
    return f"{connected} agents connected, {len(running.store.hosts)} hosts"


async def reload_collector(running: RunningCollector, config: CollectorConfig) -> str:
    """SIGHUP: limits, log level, certificate paths, the CRL, rule files and the whole ``[alerting]``
    section (routes, receivers, timings, inhibit rules) apply now; listen addresses at restart.

    The steps that can refuse (a new CRL file, the alerting config) run first, so a refusal leaves
    everything as it was. Firing alerts keep their state and stay with the receiver that paged them
    until they resolve; queued notifications and silences carry over (docs/alerting.md, "Reloading").
    """
    revocation = RevocationList(config.crl, config.tls.ca) if config.crl != running.revocation.path else None
    alerting = running.alerting.reload(config.alerting) if running.alerting is not None else ""
    if revocation is not None:
        running.revocation = revocation
        running.service.revocation = revocation
    else:
        running.revocation.ca_path = config.tls.ca
        running.revocation.refresh(force=True)
    running.certificates.use(config.tls)  # the next handshake loads them if they changed
    running.service.limits = config.limits
    if running.detection is not None:
        running.detection.reload()  # rule files also reload by themselves when they change
    logs.configure(config.log_level)
    return "; ".join(
        filter(None, [f"config reloaded; {len(running.revocation.serials)} certificates revoked", alerting])
    )


async def run_collector(
    config: CollectorConfig,
    stop: asyncio.Event,
    lifecycle: Lifecycle | None = None,
    config_path: Path | None = None,
) -> None:
    running = await start_collector(config)
    handshakes = StderrHandshakeWatcher(lambda reason, detail: _handshake_refused(running.metrics, reason, detail))
    handshakes.start()
    if lifecycle is not None and config_path is not None:

        async def reload() -> str:
            # A ConfigError here leaves the running settings untouched; runtime logs and reports it.
            try:
                summary = await reload_collector(running, collector_config.load(config_path))
            except Exception:
                running.metrics.config_reloads.labels("failure").inc()
                raise
            running.metrics.config_reloads.labels("success").inc()
            return summary

        lifecycle.on_reload(reload)
    try:
        if lifecycle is not None:
            lifecycle.ready(collector_status(running))
        while not stop.is_set():
            # The watchdog is pinged from here: if the event loop hangs, the pings stop.
            if lifecycle is not None:
                lifecycle.heartbeat(lambda: collector_status(running))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), lifecycle.ping_interval if lifecycle else None)
    finally:
        log.info("collector stopping")
        await running.stop()
        handshakes.stop()


def _handshake_refused(metrics: CollectorMetrics, reason: str, detail: str) -> None:
    # Runs on the stderr pump thread; prometheus_client counters are thread-safe.
    metrics.streams_refused.labels(reason).inc()
    log.warning("stream refused", reason=reason, error=f"TLS handshake failed: {detail}")
