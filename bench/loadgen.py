"""Collector ingest capacity: thousands of simulated agents against one collector, and against a null sink.

Each simulated host is its own mTLS gRPC stream with its own client certificate (issued from a
throwaway CA with collector.trust.pki), sending the real Hello and one Frame per second of 8 GPUs x every
catalog GPU field plus the host fields, phase-spread over the second as a real fleet is. Many
streams share a few client processes. The values are a healthy simulated host's (the agent's sim
source), the same every tick. The server runs in its own process, as one of:

- ``collector``: the real ingest path (TelemetryService: identity check, sequence tracking, decode,
  checks, scatter into the FleetStore, acks), with an observer at the point where detection hangs
  off it that records ingest latency: the time from the frame's timestamp (taken by the sender just
  before it writes) to the frame being applied;
- ``sink``: the same grpc.aio server, credentials, message and ack cadence with no processing: it
  counts messages and acknowledges the last sequence it saw;
- ``full``: the collector, plus what else a running collector does on the same event loop: the
  detection engine (default rule pack) ticking every second over the fleet, and /metrics rendered
  every ``--scrape-every`` seconds (a Prometheus scrape), so the latency includes their stalls.

For each fleet size the run reports the frames applied per second against those offered, p50/p99
ingest latency, and the server's CPU seconds per 1,000 frames (from /proc): the sink's CPU per frame
over ours is the share of the transport's capacity we keep. The largest size at which the collector
applies at least 99% of what is offered with p99 under 1 s is its sustained capacity.

No step waits forever. The server must listen within ``Deadlines.start_s``, every stream must be
up within ``--connect-deadline`` (the handshakes are spread, at most 32 in flight per client process,
and the time to all connected is its own column), and every process must answer each report within
``--answer-deadline``. A step that misses one is reported NOT sustained with what it reached and
why; where the server could not answer, the frames applied are those the clients saw acknowledged.

    .venv/bin/python -m bench.loadgen [--hosts 500,1000,2000] [--seconds 10] [--clients 2]
    .venv/bin/python -m bench.loadgen --hosts 2000 --modes collector,full --seconds 30 --scrape-every 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from protos import telemetry_pb2 as pb

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GPUS = 8


# -- the server process ------------------------------------------------------------------------------
class LatencyObserver:
    """Records, for every applied frame, how long after its timestamp it was applied."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []

    def frame_applied(self, record: object, unix_ns: int) -> None:
        self.latencies_ns.append(time.time_ns() - unix_ns)

    def event_applied(self, record: object, event: object) -> None:
        pass


async def serve(mode: str, port: int, pki_dir: Path, scrape_every: float = 15.0, share_port: bool = False) -> None:
    import grpc

    from collector.ingest.server import TelemetryService, add_telemetry_service
    from collector.selfmetrics import CollectorMetrics
    from collector.store import FleetStore
    from protos import telemetry_pb2 as pb
    from protos import telemetry_pb2_grpc as pb_grpc
    from runtime.tls import TlsFiles, server_credentials
    from runtime.transport import server_options

    control = take_stdout()
    observer = LatencyObserver()
    service: pb_grpc.TelemetryServicer
    background: list[asyncio.Task[None]] = []  # referenced here for the life of the server
    if mode in ("collector", "full"):
        store = FleetStore(host_capacity=4096, gpu_capacity=4096 * GPUS)
        service = TelemetryService(store=store, metrics=CollectorMetrics(), collector_id="bench", observers=[observer])
        if mode == "full":
            background.append(start_collector_work(service, store, scrape_every))
    else:
        service = NullSink(observer, pb)
    # Sharing the port is asked for, never assumed: a lone server holds its port as the collector does.
    # The collector's options bind the port exclusively; sink workers of one run share it on purpose.
    options = [o for o in server_options() if o[0] != "grpc.so_reuseport"]
    server = grpc.aio.server(options=[*options, ("grpc.so_reuseport", int(share_port))])
    if isinstance(service, TelemetryService):
        add_telemetry_service(service, server)  # as the collector registers it: size checked before parsing
    else:
        pb_grpc.add_TelemetryServicer_to_server(service, server)
    tls = TlsFiles(pki_dir / "ca.pem", pki_dir / "collectors/collector.pem", pki_dir / "collectors/collector-key.pem")
    server.add_secure_port(f"127.0.0.1:{port}", server_credentials(tls))
    await server.start()
    await control_loop(control, lambda: {"latencies_ns": observer.latencies_ns}, observer.latencies_ns.clear)


def start_collector_work(service: object, store: object, scrape_every: float) -> asyncio.Task[None]:
    """Detection ticking and /metrics scraped, on this loop, as in `gpulse collector`; returns the
    scraping task (detection keeps its own)."""
    from prometheus_client import CollectorRegistry

    from collector.alert import Alert
    from collector.detect.config import DetectConfig
    from collector.detect.service import DetectionService
    from collector.exporters.exposition import FleetExposition
    from collector.ingest.server import TelemetryService
    from collector.store import FleetStore

    assert isinstance(service, TelemetryService) and isinstance(store, FleetStore)

    class Discard:
        def push(self, alerts: Sequence[Alert], now: float) -> None:
            pass

    detection = DetectionService(store, Discard(), DetectConfig(), CollectorRegistry())
    service.observers.append(detection.engine)
    detection.start()
    exposition = FleetExposition(store)

    async def scrape() -> None:
        while True:
            await asyncio.sleep(scrape_every)
            await exposition.render_async()  # as the collector's /metrics handler renders

    return asyncio.create_task(scrape())


class NullSink:
    """The same stream, message and ack machinery as the collector, and nothing else: the transport's cost."""

    def __init__(self, observer: LatencyObserver, pb: object) -> None:
        from collector.ingest.acks import AckTicker

        self.observer = observer
        self.pb = pb
        self.acks = AckTicker(self._nothing_to_flush, lambda: 0.1)

    async def _nothing_to_flush(self) -> None:
        pass

    async def Stream(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
        pb = self.pb
        await anext(aiter(request_iterator))
        await context.write(pb.CollectorMessage(welcome=pb.Welcome(collector_id="sink")))  # type: ignore[attr-defined]
        seen = _Seen()
        slot = self.acks.open(seen)

        async def ack() -> None:
            while True:
                await slot.due.wait()
                if (watermark := slot.take()) is not None:
                    await context.write(pb.CollectorMessage(ack=pb.Ack(seq=watermark)))  # type: ignore[attr-defined]

        acker = asyncio.create_task(ack())
        record = self.observer.frame_applied
        try:
            async for message in request_iterator:
                seen.durable_watermark = message.seq
                record(None, message.batch.frames[0].unix_ns)  # the latency clock, as for the collector
        finally:
            acker.cancel()
            self.acks.close(slot)


class _Seen:
    durable_watermark = 0


def take_stdout() -> TextIO:
    """Keep stdout for the driver's answers; logs and anything else printed go to stderr."""
    from runtime import logs

    control = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    logs.configure("warning", stream=sys.stderr)
    return control


async def control_loop(control: TextIO, report: object, reset: object) -> None:
    """Answer 'report' and 'reset' lines on stdin with one JSON line, until stdin closes."""
    loop = asyncio.get_running_loop()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if line == "reset":
            reset()  # type: ignore[operator]
            print(json.dumps({"ok": True}), file=control, flush=True)
        elif line == "report":
            print(json.dumps(report()), file=control, flush=True)  # type: ignore[operator]


# -- the client processes ----------------------------------------------------------------------------
def hello_for(host_id: str) -> pb.Hello:
    from protos import telemetry_pb2 as pb
    from protos.codec import PROTOCOL_VERSION
    from protos.fields import CATALOG

    gpus = [
        pb.GpuInventory(index=i, uuid=f"GPU-{uuid.uuid5(uuid.NAMESPACE_DNS, f'{host_id}/{i}')}", name="NVIDIA H100")
        for i in range(GPUS)
    ]
    return pb.Hello(
        host_id=host_id,
        boot_id=str(uuid.uuid4()),
        agent_version="loadgen",
        protocol_version=PROTOCOL_VERSION,
        sent_unix_ns=time.time_ns(),
        interval_seconds=1.0,
        host=pb.HostInventory(hostname=host_id, gpu_source="sim"),
        gpus=gpus,
        host_field_ids=CATALOG.host_ids,
        gpu_field_ids=CATALOG.gpu_ids,
    )


async def agents(first: int, count: int, total: int, target: str, pki_dir: Path, interval: float) -> None:
    import grpc

    from agent.sources.host import HostSource
    from agent.sources.sim import SimBackend
    from protos import telemetry_pb2 as pb
    from protos import telemetry_pb2_grpc as pb_grpc
    from protos.fields import CATALOG
    from runtime.transport import channel_options

    control = take_stdout()
    # A healthy host's values (a fleet is mostly healthy: what detection then costs is evaluation,
    # not a whole fleet in alert), the same every tick; the streams of one client share them.
    sim = SimBackend(f"load-{first:05d}", count=GPUS, seed=first)
    sim.open()
    sim.sample(time.time_ns() - 10**9)
    values = [*HostSource().sample(), *(v for row in sim.sample(time.time_ns()) for v in row)]
    assert len(values) == len(CATALOG.host_ids) + GPUS * len(CATALOG.gpu_ids) and sim.field_ids == CATALOG.gpu_ids
    ca = (pki_dir / "ca.pem").read_bytes()
    # "acked" counts frames the server acknowledged (acks follow durable apply): what it reached,
    # known here even when the server is too busy, or too stopped, to answer the driver itself.
    stats: dict[str, float] = {"sent": 0, "acked": 0, "late_ns": 0, "streams": 0, "errors": 0, "connect_retries": 0}
    handshakes = asyncio.Semaphore(32)  # spreads a connect storm: at most 32 handshakes in flight
    loop = asyncio.get_running_loop()
    began = loop.time()
    start = loop.time() + 1.0  # the earliest first tick

    def settled() -> None:
        if stats["streams"] + stats["errors"] == count:
            stats["connect_s"] = loop.time() - began  # time to all connected: its own figure

    async def host(i: int) -> None:
        host_id = f"load-{i:05d}"
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(pki_dir / f"agents/{host_id}-key.pem").read_bytes(),
            certificate_chain=(pki_dir / f"agents/{host_id}.pem").read_bytes(),
        )
        async with grpc.aio.secure_channel(target, creds, options=channel_options("collector")) as channel:
            # A fleet does not all connect in the same millisecond; neither do we, or the handshake
            # storm rather than ingest is what gets measured.
            for attempt in range(6):
                async with handshakes:
                    try:
                        call = pb_grpc.TelemetryStub(channel).Stream()
                        await call.write(pb.AgentMessage(hello=hello_for(host_id)))
                        if await call.read() is not grpc.aio.EOF:
                            break
                    except grpc.aio.AioRpcError:
                        if attempt == 5:
                            raise
                stats["connect_retries"] += 1
                await asyncio.sleep(0.2 * 2**attempt)
            stats["streams"] += 1
            settled()

            async def drain_acks() -> None:
                last = 0
                while (answer := await call.read()) is not grpc.aio.EOF:
                    if answer.HasField("ack") and answer.ack.seq > last:
                        stats["acked"] += answer.ack.seq - last
                        last = answer.ack.seq

            reader = asyncio.create_task(drain_acks())
            message = pb.AgentMessage(batch=pb.Batch(frames=[pb.Frame(values=values)]))
            frame = message.batch.frames[0]
            due = max(start, loop.time()) + interval * (i % total) / total  # phase-spread over the interval
            seq = 0
            while True:
                await asyncio.sleep(max(0.0, due - loop.time()))
                stats["late_ns"] += int(max(0.0, loop.time() - due) * 1e9)
                seq += 1
                message.seq = seq
                frame.unix_ns = time.time_ns()
                await call.write(message)
                stats["sent"] += 1
                due += interval
                if reader.done():
                    reader.result()

    async def guarded(i: int) -> None:
        try:
            await host(i)
        except Exception as exc:  # one failed stream is reported, not fatal to the run
            stats["errors"] += 1
            settled()
            if stats["errors"] <= 3:
                when = "before" if "connect_s" not in stats else f"{loop.time() - start:.1f}s after"
                print(f"stream load-{i:05d} failed {when} start: {exc!r}"[:300], file=sys.stderr, flush=True)

    tasks = [asyncio.create_task(guarded(i)) for i in range(first, first + count)]

    def reset() -> None:
        stats["sent"] = stats["acked"] = stats["late_ns"] = 0

    # Answering from the start: the driver polls "report" for the streams that are up, and gives up
    # on a connect storm at its deadline rather than waiting on a line that never comes.
    await control_loop(control, lambda: dict(stats), reset)
    for task in tasks:
        task.cancel()


# -- the driver --------------------------------------------------------------------------------------
class NoAnswer(RuntimeError):
    """A benchmark process did not answer within its deadline, or exited."""


class Proc:
    """A benchmark process asked questions on stdin; every answer has a deadline.

    Its stdout is read by a thread into a queue, so a process that is stopped, swamped or dead costs
    the driver the deadline and no more. A process that missed one is not asked again: a late answer
    would otherwise be taken for the next question's.
    """

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.answers: queue.Queue[str] = queue.Queue()
        self.silent = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.answers.put(line)
        self.answers.put("")  # end of file

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        if self.silent:
            raise NoAnswer(f"not asked {line!r}: missed an earlier deadline")
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            self.silent = True
            raise NoAnswer(f"exited ({self.process.poll()}) before {line!r}") from exc

    def receive(self, line: str, timeout: float) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty as exc:
            self.silent = True
            raise NoAnswer(f"no answer to {line!r} within {timeout:.0f}s") from exc
        if not answer:
            self.silent = True
            raise NoAnswer(f"exited ({self.process.poll()}) instead of answering {line!r}")
        result: dict[str, object] = json.loads(answer)
        return result

    def cpu_seconds(self) -> float:
        """User + system CPU from /proc (a stopped process still has one); NaN once it is gone."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except FileNotFoundError:
            return float("nan")
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self) -> None:
        self.process.kill()  # SIGKILL ends a stopped process too
        self.process.wait()


def spawn(*args: str) -> Proc:
    cmd = [sys.executable, "-m", "bench.loadgen", *args]
    return Proc(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))


@dataclass(frozen=True)
class Deadlines:
    """How long a step may wait for each thing; together they bound the step (see ``step_s``)."""

    start_s: float = 30.0  # the server process imports and listens
    connect_s: float = 120.0  # every stream's handshake and Hello
    answer_s: float = 15.0  # one report from a process

    def step_s(self, warmup: float, seconds: float) -> float:
        """The most a step can take: its waits, its window, and a missed answer at each round of questions.

        Each round (reset, report) asks every process at once and waits at most ``answer_s`` for all
        of them, so the bound does not grow with the processes; the connect polls end by ``connect_s``;
        5 s is for starting and killing processes."""
        return self.start_s + self.connect_s + warmup + seconds + 2 * self.answer_s + 5.0


def issue_certs(pki_dir: Path, hosts: int) -> None:
    from collector.trust import pki

    pki.init_ca(pki_dir, name="loadgen CA", days=1)
    pki.issue(pki_dir, role="collector", name="collector", days=1)
    for i in range(hosts):
        pki.issue(pki_dir, role="agent", name=f"load-{i:05d}", days=1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quantile_ms(latencies: list[int], q: float) -> float:
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def ask_all(procs: list[Proc], line: str, timeout: float) -> list[dict[str, Any] | NoAnswer]:
    """Ask every process at once, then wait for each answer within what is left of ``timeout``."""
    asked: list[Proc | NoAnswer] = []
    for proc in procs:
        try:
            proc.send(line)
            asked.append(proc)
        except NoAnswer as exc:
            asked.append(exc)
    deadline = time.monotonic() + timeout
    answers: list[dict[str, Any] | NoAnswer] = []
    for entry in asked:
        if isinstance(entry, NoAnswer):
            answers.append(entry)
            continue
        try:
            answers.append(entry.receive(line, max(0.0, deadline - time.monotonic())))
        except NoAnswer as exc:
            answers.append(exc)
    return answers


def wait_connected(clients: list[Proc], hosts: int, deadlines: Deadlines, notes: list[str]) -> tuple[int, float]:
    """Poll the clients until every stream is up or failed, or the connect deadline passes.

    Returns the streams up and the time to all connected (NaN if the deadline passed first)."""
    t0 = time.monotonic()
    deadline = t0 + deadlines.connect_s
    up = 0
    while True:
        left = deadline - time.monotonic()
        answers = ask_all(clients, "report", max(0.0, min(deadlines.answer_s, left)))
        settled = 0
        up = 0
        for answer in answers:
            if isinstance(answer, dict):
                up += int(answer["streams"])
                settled += int(answer["streams"]) + int(answer["errors"])
        if settled == hosts:
            return up, time.monotonic() - t0
        if time.monotonic() >= deadline or any(isinstance(answer, NoAnswer) for answer in answers):
            silent = [str(a) for a in answers if isinstance(a, NoAnswer)]
            notes.append(f"{up} of {hosts} streams connected in {time.monotonic() - t0:.0f}s" + "".join(
                f"; a client: {why}" for why in silent[:1]))  # fmt: skip
            return up, float("nan")
        time.sleep(0.5)


def run_step(
    mode: str,
    hosts: int,
    args: argparse.Namespace,
    pki_dir: Path,
    deadlines: Deadlines = Deadlines(),
    before_window: Callable[[Proc], None] | None = None,
    workers: int = 1,
    before_connect: Callable[[Proc], None] | None = None,
) -> dict[str, Any]:
    """One fleet size against one server; never longer than ``deadlines.step_s(...)``.

    A step the server cannot keep up with comes back not sustained, with what was reached and why in
    ``notes``. ``before_connect`` and ``before_window`` see the (first) server process once it listens
    and just before the window opens (tests stop it there). The sink can run as ``workers`` processes
    sharing the port (SO_REUSEPORT, the kernel spreading the connections): the transport's own
    scaling over cores. The collector is one process."""
    if workers > 1 and mode != "sink":
        raise ValueError(f"{mode} mode runs one process (the collector has no worker processes); asked {workers}")
    port = free_port()
    notes: list[str] = []
    servers = [
        spawn(
            "serve", "--mode", mode, "--port", str(port), "--pki", str(pki_dir),
            "--scrape-every", str(args.scrape_every), *(["--share-port"] if workers > 1 else []),
        )
        for _ in range(workers)
    ]  # fmt: skip
    clients: list[Proc] = []
    connected, connect_s = 0, float("nan")
    latencies: list[int] | None = None
    per_server: list[int] = []  # frames each server process applied: how the kernel spread the streams
    sent: list[dict[str, Any]] = []
    cpu0 = cpu1 = float("nan")
    t0 = t1 = time.monotonic()

    def cpu() -> float:
        return sum(server.cpu_seconds() for server in servers)

    try:
        for started in ask_all(servers, "reset", deadlines.start_s):  # answered once each listens
            if isinstance(started, NoAnswer):
                notes.append(f"server did not start: {started}")
                return step_row(hosts, 0, connect_s, [], None, cpu0, cpu1, 0.0, notes)
        if before_connect is not None:
            before_connect(servers[0])
        share = -(-hosts // args.clients)
        for first in range(0, hosts, share):
            count = min(share, hosts - first)
            clients.append(
                spawn(
                    "agents", "--first", str(first), "--count", str(count), "--total", str(hosts),
                    "--target", f"127.0.0.1:{port}", "--pki", str(pki_dir), "--interval", str(args.interval),
                )
            )  # fmt: skip
        connected, connect_s = wait_connected(clients, hosts, deadlines, notes)
        time.sleep(args.warmup)
        if before_window is not None:
            before_window(servers[0])
        # Clients first: nothing counted as applied that was not counted as sent.
        everyone = [*clients, *servers]
        for proc, answer in zip(everyone, ask_all(everyone, "reset", deadlines.answer_s), strict=True):
            if isinstance(answer, NoAnswer):
                notes.append(f"{'server' if proc in servers else 'a client'} at reset: {answer}")
        cpu0, t0 = cpu(), time.monotonic()
        time.sleep(args.seconds)
        cpu1, t1 = cpu(), time.monotonic()
        answers = ask_all([*servers, *clients], "report", deadlines.answer_s)
        latencies = []
        for answer in answers[: len(servers)]:
            if isinstance(answer, NoAnswer):
                notes.append(f"server at report: {answer}")
                latencies = None
            else:
                per_server.append(len(answer["latencies_ns"]))
                if latencies is not None:
                    latencies.extend(answer["latencies_ns"])
        for answer in answers[len(servers) :]:
            if isinstance(answer, NoAnswer):
                notes.append(f"a client at report: {answer}")
            else:
                sent.append(answer)
    finally:
        for proc in (*clients, *servers):
            proc.stop()
    return step_row(hosts, connected, connect_s, sent, latencies, cpu0, cpu1, t1 - t0, notes) | {
        "applied_by_server": per_server
    }


def step_row(
    hosts: int,
    connected: int,
    connect_s: float,
    sent: list[dict[str, object]],
    latencies: list[int] | None,
    cpu0: float,
    cpu1: float,
    wall: float,
    notes: list[str],
) -> dict[str, Any]:
    """What a step reached. Applied frames are the server's count where it answered, else the frames
    the clients saw acknowledged (acks follow durable apply), with no latency figures."""
    wall = max(wall, 1e-9)
    offered = sum(int(s["sent"]) for s in sent)  # type: ignore[call-overload]
    applied = len(latencies) if latencies is not None else sum(int(s["acked"]) for s in sent)  # type: ignore[call-overload]
    cpu = cpu1 - cpu0
    return {
        "hosts": hosts,
        "connected": connected,
        "connect_s": connect_s,
        "offered_per_s": offered / wall,
        "applied_per_s": applied / wall,
        "applied_from": "server" if latencies is not None else "acks",
        "p50_ms": quantile_ms(latencies or [], 0.5),
        "p99_ms": quantile_ms(latencies or [], 0.99),
        "server_cpu_share": cpu / wall,
        "cpu_ms_per_1k": cpu / applied * 1e6 if applied else float("nan"),
        "errors": sum(int(s["errors"]) for s in sent),  # type: ignore[call-overload]
        "client_late_ms": sum(int(s["late_ns"]) for s in sent) / max(offered, 1) / 1e6,  # type: ignore[call-overload]
        "notes": notes,
    }


def sustained(row: dict[str, Any]) -> bool:
    """Kept up: applied at least 99% of what was offered, at the 1 Hz rate asked, with p99 under 1 s,
    every stream connected and every process answering in time."""
    offered, applied, p99 = float(row["offered_per_s"]), float(row["applied_per_s"]), float(row["p99_ms"])
    return (
        applied >= 0.99 * offered
        and offered >= 0.97 * float(row["hosts"])
        and p99 < 1000.0
        and row["errors"] == 0
        and not row["notes"]
    )


def over(a: float, b: float) -> float:
    """a / b, NaN where b is nothing (a tiny step's CPU can read 0 in 10 ms ticks)."""
    return a / b if b else float("nan")


HEADER = (
    f"{'mode':9} {'hosts':>6} {'connect s':>9} {'offered/s':>10} {'applied/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    f" {'srv CPU':>8} {'CPU ms/1k':>10} {'late ms':>8} {'errors':>6}  sustained"
)


def format_row(mode: str, row: dict[str, Any]) -> str:
    """One step as a table line; a step not sustained says so, with why."""
    applied = f"{row['applied_per_s']:.0f}" + ("*" if row["applied_from"] == "acks" else "")
    line = (
        f"{mode:9} {row['hosts']:6d} {row['connect_s']:9.1f} {row['offered_per_s']:10.0f} {applied:>10}"
        f" {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['server_cpu_share'] * 100:7.0f}%"
        f" {row['cpu_ms_per_1k']:10.1f} {row['client_late_ms']:8.1f} {row['errors']:6.0f}"
        f"  {'yes' if sustained(row) else 'NOT sustained'}"
    )
    if row["applied_from"] == "acks":
        line += " (* frames acknowledged to the clients: the server did not report)"
    return line + "".join(f"; {note}" for note in row["notes"])


def drive(args: argparse.Namespace) -> None:
    sizes = [int(h) for h in args.hosts.split(",")]
    fields_per_gpu = None
    with tempfile.TemporaryDirectory(prefix="gpulse-loadgen-") as tmp:
        pki_dir = Path(tmp)
        t = time.monotonic()
        issue_certs(pki_dir, max(sizes))
        print(f"issued {max(sizes)} agent certificates in {time.monotonic() - t:.1f}s", flush=True)
        from protos.fields import CATALOG

        fields_per_gpu = len(CATALOG.gpu_ids)
        print(
            f"each host: {GPUS} GPUs x {fields_per_gpu} fields + {len(CATALOG.host_ids)} host fields"
            f" = {GPUS * fields_per_gpu + len(CATALOG.host_ids)} values per frame, every {args.interval:g}s;"
            f" {args.clients} client processes, {args.seconds:g}s per step"
        )
        deadlines = Deadlines(connect_s=args.connect_deadline, answer_s=args.answer_deadline)
        print(f"each step ends within {deadlines.step_s(args.warmup, args.seconds):.0f}s"
              f" (connect deadline {deadlines.connect_s:g}s, answer deadline {deadlines.answer_s:g}s)")  # fmt: skip
        print(HEADER, flush=True)
        best = 0
        for hosts in sizes:
            rows: dict[str, dict[str, Any]] = {}
            for mode in args.modes.split(","):
                row = rows[mode] = run_step(mode, hosts, args, pki_dir, deadlines)
                print(format_row(mode, row), flush=True)
            for ours in ("collector", "full"):
                if "sink" in rows and ours in rows:
                    ratio = over(rows["sink"]["cpu_ms_per_1k"], rows[ours]["cpu_ms_per_1k"])
                    print(f"{'':9} {hosts:6d} {ours}: kept vs null sink (sink CPU per frame / ours): {ratio:.2f}")
            if "full" in rows and "collector" in rows:
                print(f"{'':9} {hosts:6d} p99 with detection and scrapes over ingest alone:"
                      f" {over(rows['full']['p99_ms'], rows['collector']['p99_ms']):.2f}x")  # fmt: skip
            # The whole collector's latency where it was measured, ingest alone otherwise.
            judged = "full" if "full" in rows else "collector"
            if judged in rows and sustained(rows[judged]):
                best = hosts
        print(f"largest fleet sustained with p99 < 1 s: {best} hosts x {GPUS} GPUs at {1 / args.interval:g} Hz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve")
    s.add_argument("--mode", choices=("collector", "sink", "full"), required=True)
    s.add_argument("--scrape-every", type=float, default=15.0)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--pki", type=Path, required=True)
    s.add_argument("--share-port", action="store_true", help="SO_REUSEPORT: one of several sink processes")
    a = sub.add_parser("agents")
    a.add_argument("--first", type=int, required=True)
    a.add_argument("--count", type=int, required=True)
    a.add_argument("--total", type=int, required=True)
    a.add_argument("--target", required=True)
    a.add_argument("--pki", type=Path, required=True)
    a.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--hosts", default="500,1000,2000", help="fleet sizes to try, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per step")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes the streams share")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--modes", default="sink,collector", help="sink, collector, full; in order")
    parser.add_argument("--scrape-every", type=float, default=15.0, help="full mode: seconds between /metrics renders")
    parser.add_argument(
        "--connect-deadline",
        type=float,
        default=Deadlines.connect_s,
        help="seconds for every stream of a step to connect; later, the step is not sustained",
    )
    parser.add_argument("--answer-deadline", type=float, default=Deadlines.answer_s,
                        help="seconds a server or client process has to answer a report")  # fmt: skip
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(serve(args.mode, args.port, args.pki, args.scrape_every, args.share_port))
    elif args.command == "agents":
        asyncio.run(agents(args.first, args.count, args.total, args.target, args.pki, args.interval))
    else:
        drive(args)


if __name__ == "__main__":
    main()
