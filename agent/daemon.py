"""The agent's main loop: sample every interval, append to the spool, let the shipper stream it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.gpu_watch import GpuWatch, PushesEvents, default_gpu_watch
from agent.hello import build_hello
from agent.records import GpuInfo, Row, Rows
from agent.shipper import Shipper
from agent.sources.gpu import GpuBackend, GpuError
from agent.sources.host import HostSource
from agent.spool.base import Spool
from protos import telemetry_pb2 as pb
from protos.codec import encode_frame
from runtime.lifecycle import Lifecycle

log = structlog.get_logger("gpulse.agent")


@dataclass
class SamplerStats:
    ticks: int = 0
    overruns: int = 0  # ticks whose GPU read did not finish within its budget
    gpu_errors: int = 0
    events: int = 0
    spool_dropped_records: int = 0


class Sampler:
    """Turns one tick of host and GPU readings into a spooled Batch, and backend events into Events.

    GPU reads run in a worker thread with a time budget, so a hung driver call costs one tick's GPU
    values (sent as NaN) and never stalls the loop, the host values or the shipper.
    """

    def __init__(
        self,
        *,
        host_id: str,
        gpu: GpuBackend | None,
        host: HostSource,
        spool: Spool,
        wakeup: asyncio.Event,
        interval: float,
        gpu_source: str,
        clock: Callable[[], int] = time.time_ns,
        gpu_watch: Callable[[list[GpuInfo], tuple[int, ...]], GpuWatch] = default_gpu_watch,
    ) -> None:
        self.host_id = host_id
        self._make_watch = gpu_watch
        self.watch: GpuWatch | None = None
        self._early_events: list[pb.Event] = []  # sent between ticks, still to be seen by the health checks
        self.gpu = gpu
        self.host = host
        self.spool = spool
        self.wakeup = wakeup
        self.interval = interval
        self.gpu_source = gpu_source
        self.clock = clock
        self.boot_id = str(uuid.uuid4())
        self.stats = SamplerStats()
        # For the optional local /metrics: the inventory, the newest tick, and XIDs seen per (gpu, xid).
        self.hello: pb.Hello | None = None
        self.latest: tuple[int, Row, Rows] | None = None
        self.xid_counts: dict[tuple[int, int], int] = {}
        self._gpu_inflight: asyncio.Future[Rows] | None = None
        self._gpu_count = 0
        self._gpu_fields: tuple[int, ...] = ()

    def start(self) -> pb.Hello:
        """Read the inventory and open this boot's epoch in the spool."""
        gpus = self.gpu.open() if self.gpu is not None else []
        self._gpu_count = len(gpus)
        self._gpu_fields = self.gpu.field_ids if self.gpu is not None else ()
        self.watch = self._make_watch(gpus, self._gpu_fields) if gpus else None
        if isinstance(self.gpu, PushesEvents):
            with contextlib.suppress(RuntimeError):  # no running loop (tests): events wait for the tick
                loop = asyncio.get_running_loop()
                self.gpu.on_event = lambda: loop.call_soon_threadsafe(self._send_events_now)
        hello = build_hello(
            host_id=self.host_id,
            boot_id=self.boot_id,
            host=self.host.info(),
            gpus=gpus,
            gpu_source=self.gpu_source if gpus else "none",
            host_field_ids=self.host.field_ids,
            gpu_field_ids=self._gpu_fields,
            interval=self.interval,
        )
        self.spool.open_epoch(hello)
        self.hello = hello
        log.info("agent started", host_id=self.host_id, boot_id=self.boot_id, gpus=len(gpus), source=self.gpu_source)
        return hello

    def emit(self, event: pb.Event) -> None:
        """Spool an event now and wake the shipper: events do not wait for the next tick."""
        self.spool.append(pb.AgentMessage(event=event))
        self.stats.events += 1
        kind = event.WhichOneof("kind")
        if kind == "xid":
            key = (event.xid.gpu_index, event.xid.xid)
            self.xid_counts[key] = self.xid_counts.get(key, 0) + max(1, event.xid.count)
        elif kind == "inventory":
            self._follow_inventory(event.inventory.gpu)
        self.wakeup.set()

    def _follow_inventory(self, gpu: pb.GpuInventory) -> None:
        """Keep this boot's Hello as the GPUs are now. The event itself is acknowledged and gone once
        applied; a later connect (a network blip, a restarted collector) starts from the Hello, which
        would otherwise put back the driver, VBIOS or power limits the GPU had when the agent started."""
        if self.hello is None or not 0 <= gpu.index < len(self.hello.gpus):
            return
        hello = pb.Hello()
        hello.CopyFrom(self.hello)
        hello.gpus[gpu.index].CopyFrom(gpu)
        self.spool.update_hello(hello)
        self.hello = hello

    async def tick(self) -> None:
        now = self.clock()
        host_values = await asyncio.to_thread(self.host.sample)
        gpu_values = await self._read_gpus(now)
        self.spool.append(pb.AgentMessage(batch=pb.Batch(frames=[encode_frame(now, host_values, gpu_values)])))
        self.latest = (now, host_values, gpu_values)
        if self.gpu is not None:
            await self._follow_gpus(now, gpu_values)
        # The spool itself leaves a drop notice in place of what it dropped, in the right boot's
        # sequence, so the collector can count the hole and move past it; here we only count.
        for drop in self.spool.take_drops():
            self.stats.spool_dropped_records += drop.records
        self.stats.ticks += 1
        self.wakeup.set()

    def _send_events_now(self) -> None:
        """An event the backend saw between ticks (an XID, a lost GPU): out now, checked at the tick."""
        if self.gpu is None:
            return
        events = self.gpu.drain_events()
        for event in events:
            self.emit(event)
        self._early_events += events

    async def _follow_gpus(self, now: int, gpu_values: Rows) -> None:
        """Send the backend's events, then health changes, then (slow tier) workload changes."""
        assert self.gpu is not None
        events = self.gpu.drain_events()
        for event in events:
            self.emit(event)
        events, self._early_events = self._early_events + events, []
        if self.watch is None:
            return
        for event in self.watch.observe(now, gpu_values, events):
            self.emit(event)
        if self.watch.processes_due():
            watch, gpu = self.watch, self.gpu
            try:
                changes = await asyncio.wait_for(
                    asyncio.to_thread(lambda: watch.attribute(now, gpu.processes(), gpu.mig_instances())),
                    timeout=self.interval * 0.8,
                )
            except (TimeoutError, GpuError, OSError) as exc:
                log.warning("GPU process attribution failed", error=str(exc) or type(exc).__name__)
                return
            for event in changes:
                self.emit(event)

    async def _read_gpus(self, now: int) -> Rows:
        missing = [[math.nan] * len(self._gpu_fields) for _ in range(self._gpu_count)]
        if self.gpu is None:
            return missing
        if self._gpu_inflight is not None and not self._gpu_inflight.done():
            self.stats.overruns += 1  # the last read is still stuck in the driver: do not pile up threads
            return missing
        self._gpu_inflight = asyncio.ensure_future(asyncio.to_thread(self.gpu.sample, now))
        try:
            return await asyncio.wait_for(asyncio.shield(self._gpu_inflight), timeout=self.interval * 0.8)
        except TimeoutError:
            self.stats.overruns += 1
            log.warning("GPU read exceeded its time budget", budget_s=self.interval * 0.8)
            return missing
        except GpuError as exc:
            self.stats.gpu_errors += 1
            log.warning("GPU read failed", error=str(exc))
            return missing


def agent_status(sampler: Sampler, shipper: Shipper) -> str:
    """One line for `systemctl status`: where the data goes and how far behind it is."""
    target = shipper.stats.connected_to or f"not connected ({shipper.stats.last_error or 'connecting'})"
    return f"{sampler.stats.ticks} ticks; shipping to {target}; acked {shipper.stats.acked}"


async def run_agent(
    sampler: Sampler,
    shipper: Shipper,
    stop: asyncio.Event,
    lifecycle: Lifecycle | None = None,
    drain_seconds: float = 5.0,
) -> None:
    """Tick on a fixed schedule until ``stop`` is set; then give the shipper ``drain_seconds`` to flush."""
    sampler.start()
    ship = asyncio.create_task(shipper.run(), name="shipper")
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    if lifecycle is not None:
        lifecycle.ready(agent_status(sampler, shipper))
    try:
        # The watchdog is pinged from this loop, so it wakes at least every ping interval even when
        # the sampling interval is longer; a hung tick then stops the pings and systemd restarts us.
        ping = lifecycle.ping_interval if lifecycle is not None else sampler.interval
        while not stop.is_set():
            if lifecycle is not None:
                lifecycle.heartbeat(lambda: agent_status(sampler, shipper))
            if loop.time() >= next_tick:
                await sampler.tick()
                next_tick += sampler.interval
                if next_tick < loop.time():  # fell behind (suspend, overload): skip, do not burst
                    next_tick = loop.time() + sampler.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, min(ping, next_tick - loop.time())))
            if ship.done():
                ship.result()
        await _drain(shipper, ship, drain_seconds)
    finally:
        ship.cancel()
        await asyncio.gather(ship, return_exceptions=True)
        if sampler.gpu is not None:
            sampler.gpu.close()
        sampler.spool.close()


async def _drain(shipper: Shipper, ship: asyncio.Task[None], seconds: float) -> None:
    """On a clean stop, wait (bounded) until the collector has acknowledged what is spooled."""
    if not shipper.connected.is_set() or ship.done():
        return  # nobody to flush to: what is spooled stays on disk for the next start
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    shipper.wakeup.set()
    while not shipper.drained() and loop.time() < deadline and not ship.done():  # noqa: ASYNC110 - polls the spool
        await asyncio.sleep(0.05)
    log.info("agent stopping", drained=shipper.drained(), acked=shipper.stats.acked)
