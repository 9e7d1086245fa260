"""Ships spooled records to a collector over one mTLS gRPC stream, and deletes what it acknowledges.

The shipper never blocks the sampler: it only reads the spool. It keeps at most ``max_in_flight``
records unacknowledged on the wire, so a slow collector slows the shipper and nothing else.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import structlog

from agent.config import BackoffConfig
from agent.spool.base import Spool
from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from runtime.transport import CLIENT_KEEPALIVE_MS, CLIENT_KEEPALIVE_TIMEOUT_MS, channel_options

log = structlog.get_logger("gpulse.agent.shipper")


class StreamRefused(Exception):
    """The collector answered the Hello with something other than a Welcome."""


class LinkDead(Exception):
    """No Welcome, or no acknowledgement of records in flight, within the timeout: the link is gone."""


class Rehome(Exception):
    """Long enough on a failover collector: end this stream and try the preferred one again."""


class CredentialsRotated(Exception):
    """The certificate files changed on disk: close this channel and open one with the new identity."""


def backoff_delays(config: BackoffConfig, rng: random.Random) -> Callable[[int], float]:
    """Delay before attempt ``n`` (0-based): exponential, capped, with +/- jitter."""

    def delay(attempt: int) -> float:
        base = min(config.maximum, config.initial * config.multiplier ** min(attempt, 32))
        return max(0.0, base * (1.0 + rng.uniform(-config.jitter, config.jitter)))

    return delay


@dataclass
class ShipperStats:
    connects: int = 0
    sent: int = 0
    acked: int = 0
    last_error: str = ""
    connected_to: str = ""
    errors: dict[str, int] = field(default_factory=dict)


class Shipper:
    def __init__(
        self,
        *,
        spool: Spool,
        targets: tuple[str, ...],
        credentials: Callable[[], grpc.ChannelCredentials],
        backoff: BackoffConfig,
        wakeup: asyncio.Event,
        server_name: str = "",
        max_in_flight: int = 512,
        rng: random.Random | None = None,
        credentials_changed: Callable[[], bool] | None = None,
        rotation_check_seconds: float = 1.0,
        rehome_after: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
        keepalive: float = CLIENT_KEEPALIVE_MS / 1000,
        keepalive_timeout: float = CLIENT_KEEPALIVE_TIMEOUT_MS / 1000,
        diagnose: Callable[[], object] | None = None,
        welcome_timeout: float = 2.0,
        ack_timeout: float = 8.0,
    ) -> None:
        self.spool = spool
        self.targets = targets
        self.credentials = credentials
        self.wakeup = wakeup
        self.server_name = server_name
        self.max_in_flight = max_in_flight
        self.delay = backoff_delays(backoff, rng or random.Random())
        self.stats = ShipperStats()
        self.connected = asyncio.Event()
        self.credentials_changed = credentials_changed or (lambda: False)
        self.diagnose = diagnose  # explains a connection failure caused by our own identity
        self.rotation_check_seconds = rotation_check_seconds
        # Targets come ranked (agent/placement.py); off the first one, go back to it now and then, so
        # a collector that returns after an outage or upgrade gets its hosts back.
        self.rehome_after = rehome_after
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.channel_options = channel_options(
            server_name, keepalive_ms=round(keepalive * 1000), keepalive_timeout_ms=round(keepalive_timeout * 1000)
        )
        # A black-holed link (a partition, a collector frozen) answers nothing and resets nothing:
        # these bound how long a connect, and records in flight, may go unanswered.
        self.welcome_timeout = welcome_timeout
        self.ack_timeout = ack_timeout
        self._answered = False  # a collector welcomed a stream since the last delay was chosen
        self._rehome_at: float | None = None
        self.acked_seq: dict[str, int] = {}  # per boot id: what the collector has acknowledged

    def _ack(self, boot_id: str, seq: int) -> None:
        self.acked_seq[boot_id] = max(seq, self.acked_seq.get(boot_id, 0))
        self.spool.ack(boot_id, seq)

    def _resume_after(self, boot_id: str) -> int:
        """How far a collector has acknowledged this boot: what this run was told, or, after a restart,
        everything below the first record still spooled (the spool deletes only what was acknowledged)."""
        told = self.acked_seq.get(boot_id, 0)
        held = self.spool.read(boot_id, 0, 1)
        if not held:
            return max(told, self.spool.last_seq(boot_id))
        first = held[0]
        if first.HasField("event") and first.event.HasField("spool_drop"):
            # A drop notice stands for its whole range.
            return max(told, first.event.spool_drop.first_seq - 1)
        return max(told, first.seq - 1)

    def drained(self) -> bool:
        """True when the collector has acknowledged every record in the spool."""
        return all(not self.spool.read(b, self.acked_seq.get(b, 0), 1) for b in self.spool.epochs())

    async def run(self) -> None:
        """Ship until cancelled: one target at a time, failing over to the next on error."""
        target_index, attempt = 0, 0
        while True:
            target = self.targets[target_index % len(self.targets)]
            preferred = target_index % len(self.targets) == 0
            self._rehome_at = None if preferred or not self.rehome_after else self.monotonic() + self.rehome_after
            try:
                progressed = await self._session(target)
            except Rehome:
                log.info("trying the preferred collector again", target=self.targets[0], leaving=target)
                target_index, attempt = 0, 0
                continue
            except CredentialsRotated:
                log.info("certificate files changed; reconnecting with the new identity", target=target)
                self.stats.errors["credentials_rotated"] = self.stats.errors.get("credentials_rotated", 0) + 1
                continue  # same target, no backoff: nothing is wrong with it
            except (grpc.aio.AioRpcError, StreamRefused, LinkDead, OSError) as exc:
                progressed = False
                self._note_error(target, exc)
            except Exception as exc:  # the shipper must outlive any one bad stream
                progressed = False
                log.exception("unexpected shipper error", target=target)
                self._note_error(target, exc)
            finally:
                self.connected.clear()
                self.stats.connected_to = ""
            if progressed:
                attempt = 0
                continue
            if self._answered:
                # The target answered before this stream ended: it is not the one failing, so the
                # next try comes soon rather than after a delay grown during an earlier outage.
                self._answered = False
                attempt = 0
            target_index += 1  # fail over: the next attempt goes to the next collector in the list
            await asyncio.sleep(self.delay(attempt))
            attempt += 1

    def _note_error(self, target: str, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            code = exc.code().name
            message = f"{code}: {exc.details()}"
            if exc.code() == grpc.StatusCode.UNAVAILABLE and self.diagnose is not None:
                self.diagnose()
        else:
            code, message = type(exc).__name__, str(exc)
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
        if message != self.stats.last_error:
            log.warning("collector stream failed", target=target, error=message)
        self.stats.last_error = message

    async def _session(self, target: str) -> bool:
        """One connection: ship each epoch with data in turn. True if the stream made progress."""
        progressed = False
        async with grpc.aio.secure_channel(target, self.credentials(), options=self.channel_options) as channel:
            stub = pb_grpc.TelemetryStub(channel)
            while True:
                boot_id = self.spool.epochs()[0]
                current = len(self.spool.epochs()) == 1
                done = await self._ship_epoch(stub, target, boot_id, current)
                progressed = progressed or done
                if not done:
                    return progressed

    async def _ship_epoch(self, stub: pb_grpc.TelemetryStub, target: str, boot_id: str, current: bool) -> bool:
        """Stream one epoch. For an old epoch, returns True once all of it is acknowledged."""
        call = stub.Stream()
        hello = pb.Hello()
        hello.CopyFrom(self.spool.hello(boot_id))
        hello.resume_after_seq = self._resume_after(boot_id)
        # The spooled Hello carries the boot's start; a boot spooled by an agent that predates
        # boot_unix_ns has it as sent_unix_ns, which now becomes the time of this connect.
        hello.boot_unix_ns = hello.boot_unix_ns or hello.sent_unix_ns
        hello.sent_unix_ns = self.wall_clock()
        try:
            await asyncio.wait_for(call.write(pb.AgentMessage(hello=hello)), self.welcome_timeout)
            first = await asyncio.wait_for(call.read(), self.welcome_timeout)
        except TimeoutError:
            raise LinkDead(f"collector {target} did not answer the hello within {self.welcome_timeout:g} s") from None
        if first is grpc.aio.EOF or not first.HasField("welcome"):
            raise StreamRefused(f"collector {target} did not welcome the stream")
        acked = first.welcome.processed_seq
        self._answered = True
        self._ack(boot_id, acked)
        self.stats.connects += 1
        self.stats.connected_to = target
        self.connected.set()
        # The first connection is logged too: an operator starting an agent wants to see it reach a collector.
        if self.stats.last_error or self.stats.connects == 1:
            log.info("collector stream open", target=target, boot_id=boot_id, resume_after=acked)
            self.stats.last_error = ""
        ack_seen = asyncio.Event()
        state = {"acked": acked}
        last_answer = [self.monotonic()]  # when the collector last acknowledged, or nothing was owed

        async def read_acks() -> None:
            while (message := await call.read()) is not grpc.aio.EOF:
                if message.HasField("ack") and message.ack.seq > state["acked"]:
                    last_answer[0] = self.monotonic()
                    state["acked"] = message.ack.seq
                    self.stats.acked = message.ack.seq
                    self._ack(boot_id, message.ack.seq)
                    ack_seen.set()

            raise StreamRefused("collector closed the stream")

        reader = asyncio.create_task(read_acks())
        try:
            # Events go first after a (re)connect: a queued XID must not wait behind a backlog of ticks.
            sent_events = self.spool.read(boot_id, acked, self.max_in_flight, events_only=True)
            for record in sent_events:
                record.sent_unix_ns = self.wall_clock()
                await call.write(record)
            resent = {r.seq for r in sent_events}
            sent = acked
            # An old epoch gets no more records; once all are acknowledged the spool forgets it.
            if not current and boot_id not in self.spool.epochs():
                await call.done_writing()  # the Welcome acknowledged all of it: the spool has let it go
                return True
            final_seq = None if current else self.spool.last_seq(boot_id)
            while True:
                if reader.done():
                    reader.result()  # raises the stream's error
                    return False
                if final_seq is not None and state["acked"] >= final_seq:
                    await call.done_writing()
                    return True
                if sent <= state["acked"]:
                    last_answer[0] = self.monotonic()  # nothing owed: silence is not a dead link
                elif self.monotonic() - last_answer[0] > self.ack_timeout:
                    raise LinkDead(f"collector {target} acknowledged nothing for {self.ack_timeout:g} s")
                room = self.max_in_flight - (sent - state["acked"])
                # In a worker thread: after a restart the backlog is read from disk, and the loop
                # that samples must not wait for that.
                after = max(sent, state["acked"])
                batch = await asyncio.to_thread(self.spool.read, boot_id, after, room) if room > 0 else []
                if not batch:
                    self.wakeup.clear()
                    ack_seen.clear()
                    waiters = [asyncio.create_task(self.wakeup.wait()), asyncio.create_task(ack_seen.wait())]
                    await asyncio.wait(
                        [*waiters, reader], timeout=self.rotation_check_seconds, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in waiters:
                        task.cancel()
                    if self.credentials_changed():
                        raise CredentialsRotated()
                    if self._rehome_at is not None and self.monotonic() >= self._rehome_at:
                        # End cleanly rather than cancel: the collector sends its last ack and lets the host go.
                        await call.done_writing()
                        await asyncio.wait([reader], timeout=2.0)
                        if reader.done() and not reader.cancelled():
                            reader.exception()  # the collector closing the stream is the expected end here
                        raise Rehome()
                    continue
                try:
                    # A write blocks once the link's flow-control window is full: on a black-holed
                    # link that is forever, and the ack check above would never run again.
                    async with asyncio.timeout(self.ack_timeout):
                        for record in batch:
                            if record.seq not in resent:
                                # Stamped as it goes, not when spooled: the collector's clock-skew estimate.
                                record.sent_unix_ns = self.wall_clock()
                                await call.write(record)
                                self.stats.sent += 1
                            sent = record.seq
                except TimeoutError:
                    raise LinkDead(f"collector {target} took no records for {self.ack_timeout:g} s") from None
        finally:
            reader.cancel()
            call.cancel()
