"""Clock skew at the collector: right after a reconnect, and kept current along a stream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent import config as agent_config
from agent.daemon import run_agent
from agent.main import build_agent
from protos import telemetry_pb2 as pb
from tests import streams
from tests.kit import Pki, Service, metric_value, start_agent, start_collector, wait_for
from tests.kit import agent_config as write_agent_config


def test_clock_skew_after_a_reconnect_is_the_clocks_not_the_agents_age(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    services.append(start_agent(tmp, test_pki, "node-k", [collector.target]))
    wait_for(lambda: metric_value(collector.metrics(), "gpulse_host_up", host="node-k") == 1, what="first connect")
    time.sleep(3.0)  # the agent's boot is now seconds old: a skew taken from its start would show it
    collector.stop()
    restarted = collector.start().wait_ready()
    services.append(restarted)
    wait_for(lambda: metric_value(restarted.metrics(), "gpulse_host_up", host="node-k") == 1, what="reconnect")
    # Same machine, same clock: the skew is the transit time of a message on loopback.
    skew = metric_value(restarted.metrics(), "gpulse_host_clock_skew_seconds", host="node-k")
    assert skew is not None and abs(skew) < 0.5, skew


async def test_a_clock_that_jumps_mid_stream_shows_without_a_reconnect(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    config = agent_config.load(write_agent_config(tmp, test_pki, "node-j", [collector.target], interval=0.2))
    sampler, shipper = build_agent(config)
    offset = [0]
    shipper.wall_clock = lambda: time.time_ns() + offset[0]
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(sampler, shipper, stop))

    async def skew_near(target: float) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            value = await asyncio.to_thread(
                lambda: metric_value(collector.metrics(), "gpulse_host_clock_skew_seconds", host="node-j")
            )
            if value is not None and abs(value - target) < 0.5:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"clock skew never came near {target}s; last {value}")

    try:
        await skew_near(0.0)
        offset[0] = 10 * 10**9  # the agent's clock jumps 10 s ahead: NTP stepped it, or it went bad
        await skew_near(10.0)
        assert shipper.stats.connects == 1  # the same stream all along
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def test_an_agent_older_than_boot_stamps_resuming_its_stream_reads_no_skew(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    cert, key = test_pki.agent("node-old")
    creds = streams.credentials(test_pki.ca, cert, key)
    started = time.time_ns() - 3600 * 10**9  # such an agent's Hello says when it started, an hour ago
    first = streams.hello_body("node-old", boot_id="boot-old")
    first.sent_unix_ns = time.time_ns()  # its first connect: sent now, a fair reading
    assert streams.exchange(collector.target, creds, [pb.AgentMessage(hello=first), streams.frame_message(1)]).acked
    resumed = streams.hello_body("node-old", boot_id="boot-old")
    resumed.sent_unix_ns, resumed.resume_after_seq = started, 1  # what it resends on every reconnect
    assert streams.exchange(collector.target, creds, [pb.AgentMessage(hello=resumed), streams.frame_message(2)]).acked
    skew = metric_value(collector.metrics(), "gpulse_host_clock_skew_seconds", host="node-old")
    assert skew is not None and abs(skew) < 0.5, skew
