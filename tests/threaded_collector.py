"""A real collector service (gRPC, mTLS, TelemetryService) in a thread with its own event loop.

Its own loop matters: a test can make it slow (a blocking observer) without slowing the agent
under test, exactly as a slow collector on another machine would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import grpc

from collector.ingest.server import IngestObserver, TelemetryService
from collector.selfmetrics import CollectorMetrics
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from runtime.tls import TlsFiles, server_credentials
from runtime.transport import server_options
from tests.kit import Pki


@dataclass
class Recorder:
    """An observer that remembers what was applied, in order, and can be made slow."""

    delay_seconds: float = 0.0
    applied: list[tuple[str, int]] = field(default_factory=list)  # ("frame", unix_ns) or ("event:<kind>", unix_ns)

    def frame_applied(self, record: HostRecord, unix_ns: int) -> None:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)  # blocks the collector's loop: a collector that cannot keep up
        self.applied.append(("frame", unix_ns))

    def event_applied(self, record: HostRecord, event: pb.Event) -> None:
        self.applied.append((f"event:{event.WhichOneof('kind')}", event.unix_ns))


class ThreadedCollector:
    def __init__(self, kit: Pki, observer: IngestObserver | None = None, **server_option_overrides: int) -> None:
        cert, key = kit.collector()
        self.files = TlsFiles(kit.ca, cert, key)
        self.observer = observer
        self.options = server_options(**server_option_overrides)  # type: ignore[arg-type]
        self.port = 0
        self.service: TelemetryService | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedCollector:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("threaded collector did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        self.service = TelemetryService(
            store=FleetStore(),
            metrics=CollectorMetrics(),
            collector_id="collector",
            observers=[self.observer] if self.observer is not None else [],
        )
        server = grpc.aio.server(options=self.options)
        pb_grpc.add_TelemetryServicer_to_server(self.service, server)
        self.port = server.add_secure_port("127.0.0.1:0", server_credentials(self.files))
        await server.start()
        self._ready.set()
        await self._stopped.wait()
        await server.stop(0.5)
