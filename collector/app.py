"""Wiring the collector together in one place, and running it until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import structlog
from aiohttp import web
from prometheus_client import disable_created_metrics

from collector import config as collector_config
from collector.actions.api import routes as remediation_routes
from collector.actions.escalation import Escalator
from collector.actions.service import STATE_FILE as REMEDIATION_STATE
from collector.actions.service import RemediationService
from collector.actions.state import RemediationState
from collector.alerting.api import routes as alerting_routes
from collector.alerting.service import AlertingService
from collector.audit.log import AuditLog
from collector.audit.refusals import RefusalSummary
from collector.config import CollectorConfig
from collector.detect.service import DetectionService
from collector.exporters.exposition import EventTallies, FleetExposition
from collector.exporters.remote_write import RemoteWriter
from collector.http.access import access_middleware
from collector.http.app import build_app
from collector.http.audited import audit_middleware
from collector.http.metrics import HttpMetrics
from collector.http.site import GuardedSite
from collector.ingest.progress import ProgressBook, ProgressStore
from collector.ingest.server import TelemetryService, add_telemetry_service
from collector.ledger.api import routes as ledger_routes
from collector.ledger.exposition import LedgerCollector
from collector.ledger.service import LedgerService
from collector.selfmetrics import CollectorMetrics
from collector.statefiles import PROGRESS_FILE
from collector.store import FleetStore
from collector.trust.certificates import ServerCertificates
from collector.trust.handshakes import OncePerMinute, StderrHandshakeWatcher
from collector.trust.identity import TrustedIssuers
from collector.trust.revocation import RevocationList
from runtime import logs
from runtime.lifecycle import Lifecycle
from runtime.listener import ConnectionGuard
from runtime.transport import server_options
from runtime.webconfig import WatchedWebConfig

log = structlog.get_logger("gpulse.collector")
AUDIT_FILE = "audit.jsonl"  # under state_dir


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
    remediation: RemediationService | None = None
    ledger: LedgerService | None = None
    audit: AuditLog | None = None
    refusals: RefusalSummary | None = None

    async def stop(self, grace: float = 2.0) -> None:
        await self.grpc_server.stop(grace)
        await self.http_runner.cleanup()
        if self.remote_writer is not None:  # after ingest stops, so the last frames go out too
            await self.remote_writer.shutdown()
        if self.detection is not None:  # before alerting: detection pushes into it
            await self.detection.shutdown()
        if self.remediation is not None:  # it reads alerting's firing alerts
            await self.remediation.shutdown()
        if self.alerting is not None:
            await self.alerting.shutdown()
        if self.ledger is not None:
            await self.ledger.shutdown()
        if self.refusals is not None:
            self.refusals.flush()


async def start_collector(config: CollectorConfig) -> RunningCollector:
    # prometheus_client's switch is process-wide: the _created series double every counter's
    # series and no dashboard reads them.
    disable_created_metrics()
    store = FleetStore()
    metrics = CollectorMetrics()
    metrics.shard.labels(config.collector_id).set(1)
    audit = AuditLog(
        config.state_dir / AUDIT_FILE, on_record=lambda record: metrics.audit_records.labels(record.action).inc()
    )
    refusals = RefusalSummary(audit)
    tallies = EventTallies()
    remote_writer = (
        RemoteWriter(config.remote_write, store, metrics.registry, directory=config.state_dir / "remote-write")
        if config.remote_write
        else None
    )
    revocation = RevocationList(config.crl, config.tls.ca, on_reload=_audited(audit, "crl.reload", str(config.crl)))
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
        issuers=TrustedIssuers(config.tls.ca),
        on_refused=refusals.refused,
    )
    # gRPC's own ceiling sits above ours: below it, an oversized message is refused by the servicer
    # with a reason and a count; gRPC's limit only guards memory against the absurd.
    server = grpc.aio.server(options=server_options(4 * config.limits.max_message_bytes))
    add_telemetry_service(service, server)
    certificates = ServerCertificates(
        config.tls,
        expiry=metrics.certificate_expiry.set,
        on_rotation=_audited(audit, "certificate.rotate", str(config.tls.cert)),
    )
    try:
        grpc_port = server.add_secure_port(config.listen, certificates.credentials())
    except RuntimeError:
        grpc_port = 0  # gRPC says only "Failed to bind"; the port is the likely cause, so name it
    if grpc_port == 0:
        port = config.listen.rpartition(":")[2]
        raise OSError(f"cannot listen for gRPC on {config.listen}: port {port} is in use or the address is not local")
    await server.start()
    # A start-up that fails part way (a busy HTTP port) stops what it had started, so the process
    # exits with its one error line: no listener, task or client session left for the GC to moan about.
    started: list[Callable[[], Awaitable[object]]] = [lambda: server.stop(0)]
    try:
        if remote_writer is not None:
            remote_writer.start()
            started.append(remote_writer.shutdown)
        exposition = FleetExposition(
            store, stale_after=config.stale_after, formats=config.exposition_formats, tallies=tallies
        )
        http_metrics = HttpMetrics(metrics.registry)

        def web_reloaded(result: str, _: object) -> None:
            http_metrics.web_config_reloads.labels(result).inc()
            where = str(config.web.config_file)
            audit.record(actor="local", source="local", action="web_config.reload", object=where, result=result)

        web_config = WatchedWebConfig(config.web.config_file, on_reload=web_reloaded)
        access = access_middleware(web_config, config.web, on_refused=http_metrics.refuse)
        # Audit outside access, so refused writes are recorded too.
        app = build_app(store, exposition, metrics, middlewares=[audit_middleware(audit), access])
        # Every firing alert gets its suggested action, escalated by the recurrences kept beside the actions.
        remediation_state = RemediationState(
            config.state_dir / REMEDIATION_STATE,
            on_record=lambda r: audit.record(
                actor=r.actor or "gpulse",
                source="local",
                action=f"remediation.{r.event}",
                object=r.host,
                result=str(r.detail.get("outcome", r.event)),
            ),
        )
        escalator = Escalator(
            remediation_state, after=config.remediation.escalate_after, window=config.remediation.escalate_window
        )
        alerting = AlertingService(config.alerting, config.state_dir, metrics.registry, store=store, annotate=escalator)
        await alerting.start()
        started.append(alerting.shutdown)
        remediation = RemediationService(
            config.remediation,
            remediation_state,
            metrics.registry,
            firing=alerting.lifecycle.firing,
            host_count=lambda: len(store.hosts),
            muted=alerting.silencer.mutes,
            collector_id=config.collector_id,
        )
        remediation.start()
        started.append(remediation.shutdown)
        # Detection reads the store each tick and hears of hard-fault events the moment they are applied.
        detection = DetectionService(store, alerting, config.detect, metrics.registry)
        service.observers.append(detection.engine)
        detection.start()
        started.append(detection.shutdown)
        app.add_routes(alerting_routes(alerting))
        app.add_routes(remediation_routes(remediation))
        ledger = None
        if config.ledger.enabled:
            ledger = LedgerService(store, replace(config.ledger, path=config.ledger_path))
            metrics.registry.register(LedgerCollector(ledger))
            app.add_routes(ledger_routes(ledger))
            ledger.start()
            started.append(ledger.shutdown)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.web.limits.idle_timeout)
        await runner.setup()
        started.append(runner.cleanup)
        host, _, port = config.http_listen.rpartition(":")
        guard = ConnectionGuard(config.web.limits, on_drop=http_metrics.refuse)
        site = GuardedSite(runner, host.strip("[]"), int(port), guard, ssl_context=web_config.context)
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise OSError(f"cannot listen for HTTP on {config.http_listen}: {reason}") from None
    except BaseException:
        for stop in reversed(started):
            await stop()
        raise
    http_port = runner.addresses[0][1]
    scheme = "https" if web_config.context is not None else "http"
    log.info(
        "collector listening",
        grpc=f"{config.listen.rpartition(':')[0]}:{grpc_port}",
        http=f"{scheme}://{host}:{http_port}/metrics",
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
        remediation=remediation,
        ledger=ledger,
        audit=audit,
        refusals=refusals,
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
    on_reload = running.revocation.on_reload
    changed = config.crl != running.revocation.path
    revocation = RevocationList(config.crl, config.tls.ca, on_reload=on_reload) if changed else None
    alerting = running.alerting.reload(config.alerting) if running.alerting is not None else ""
    if revocation is not None:
        running.revocation = revocation
        running.service.revocation = revocation
    else:
        running.revocation.ca_path = config.tls.ca
        running.revocation.refresh(force=True)
    running.certificates.use(config.tls)  # the next handshake loads them if they changed
    running.service.limits = config.limits
    running.service.issuers = TrustedIssuers(config.tls.ca)
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
    limiter = OncePerMinute()
    handshakes = StderrHandshakeWatcher(lambda reason, detail: _handshake_refused(running, limiter, reason, detail))
    handshakes.start()
    if lifecycle is not None and config_path is not None:

        async def reload() -> str:
            # A ConfigError here leaves the running settings untouched; runtime logs and reports it.
            try:
                summary = await reload_collector(running, collector_config.load(config_path))
            except Exception:
                running.metrics.config_reloads.labels("failure").inc()
                _audit_local(running, "config.reload", str(config_path), "failure")
                raise
            running.metrics.config_reloads.labels("success").inc()
            _audit_local(running, "config.reload", str(config_path), "success")
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


def _audited(audit: AuditLog, action: str, what: str) -> Callable[[str], None]:
    """A callback that records a local event (a reload seen on disk) with its result."""

    def record(result: str) -> None:
        audit.record(actor="local", source="local", action=action, object=what, result=result)

    return record


def _audit_local(running: RunningCollector, action: str, what: str, result: str) -> None:
    if running.audit is not None:
        running.audit.record(actor="local", source="local", action=action, object=what, result=result)


def _handshake_refused(running: RunningCollector, limiter: OncePerMinute, reason: str, detail: str) -> None:
    # Runs on the stderr pump thread; prometheus_client counters and the audit summary are thread-safe.
    running.metrics.streams_refused.labels(reason).inc()
    if running.refusals is not None:
        running.refusals.refused(reason)
    # gRPC's line names no peer, so the limit is per reason: a fleet of expired certificates is one line a minute.
    if limiter.allow(reason):
        log.warning("stream refused", reason=reason, error=f"TLS handshake failed: {detail}")
