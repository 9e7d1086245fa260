"""Fast return: agents stream again within seconds of a collector restart or a healed partition,
and a black-holed link is noticed within 10 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent.config import BackoffConfig
from agent.shipper import Shipper
from agent.spool.memory import MemorySpool
from tests.integration.test_shipper_delivery import credentials, frame, hello
from tests.kit import Pki
from tests.proxy import BlackHoleProxy
from tests.threaded_collector import Recorder, ThreadedCollector


def shipper(kit: Pki, spool: MemorySpool, target: str, attempts: list[int]) -> Shipper:
    ship = Shipper(
        spool=spool,
        targets=(target,),
        credentials=lambda: credentials(kit, "node-ret"),
        backoff=BackoffConfig(),  # the shipped defaults are what is under test
        wakeup=asyncio.Event(),
        server_name="collector",
    )
    delay = ship.delay

    def recorded(attempt: int) -> float:
        attempts.append(attempt)
        return delay(attempt)

    ship.delay = recorded
    return ship


async def wait_until(condition: Callable[[], bool], within: float) -> float:
    """Seconds until ``condition`` held; fails past ``within``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def produce(spool: MemorySpool) -> None:
    while True:
        spool.append(frame(time.time_ns()))
        await asyncio.sleep(0.1)


async def test_backoff_resets_once_a_restarted_collector_answers(test_pki: Pki) -> None:
    spool = MemorySpool(max_records=100_000)
    spool.open_epoch(hello("node-ret"))
    attempts: list[int] = []
    first = ThreadedCollector(test_pki, Recorder()).__enter__()
    proxy = BlackHoleProxy(first.port)
    ship = shipper(test_pki, spool, proxy.target, attempts)
    tasks = [asyncio.create_task(ship.run()), asyncio.create_task(produce(spool))]
    try:
        await wait_until(ship.connected.is_set, 10)
        first.__exit__()
        # Down long enough for the delay to reach its cap: it must stay low.
        await wait_until(lambda: len(attempts) >= 8, 20)
        assert max(ship.delay(a) for a in attempts[-3:]) <= 1.5 * 1.2
        with ThreadedCollector(test_pki, Recorder()) as second:
            proxy.target_port = second.port
            back = await wait_until(ship.connected.is_set, 5)
            acked = ship.stats.acked
            await wait_until(lambda: ship.stats.acked > acked, 5)
            before = len(attempts)
        # The second outage starts from the smallest delay again: it answered, so it was forgiven.
        await wait_until(lambda: len(attempts) > before, 10)
        assert attempts[before] == 0, attempts
        assert back < 3.0, back
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proxy.close()


async def test_a_black_holed_link_is_noticed_within_10_s_and_streaming_resumes_within_5_s_of_healing(
    test_pki: Pki,
) -> None:
    spool = MemorySpool(max_records=100_000)
    spool.open_epoch(hello("node-ret"))
    recorder = Recorder()
    with ThreadedCollector(test_pki, recorder) as collector:
        proxy = BlackHoleProxy(collector.port)
        ship = shipper(test_pki, spool, proxy.target, [])
        tasks = [asyncio.create_task(ship.run()), asyncio.create_task(produce(spool))]
        try:
            await wait_until(ship.connected.is_set, 10)
            await wait_until(lambda: ship.stats.acked > 5, 10)
            proxy.partition()
            noticed = await wait_until(lambda: not ship.connected.is_set(), 12)
            assert noticed < 10.0, noticed
            await asyncio.sleep(1.0)
            proxy.heal()
            acked = ship.stats.acked
            healed = await wait_until(lambda: ship.stats.acked > acked, 8)
            assert healed < 5.0, healed
            # Nothing sampled during the partition was lost: the collector applied it all, in order.
            applied = [ns for kind, ns in recorder.applied if kind == "frame"]
            assert applied == sorted(applied) and len(applied) >= ship.stats.acked - 1
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            proxy.close()
