"""Nothing lost, nothing doubled: real collector and agent processes under crashes, partitions and damage.

Each test ends with exact accounting (tests/delivery.py): for every boot of the agent, every record
it produced was applied by the collector or dropped by the agent and counted, and none twice.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.delivery import BootProgress, agent_status, check_accounting, collector_progress, drain_and_stop
from tests.kit import Pki, Service, free_port, metric_value, start_agent, start_collector, wait_for
from tests.proxy import BlackHoleProxy

HOST = "node-f"


def agent_dir(tmp: Path) -> Path:
    return tmp / f"agent-{HOST}"


def collector_dir(tmp: Path) -> Path:
    return tmp / "collector-state"


def progress(tmp: Path) -> dict[str, BootProgress]:
    return collector_progress(collector_dir(tmp), HOST)


def processed(tmp: Path) -> int:
    return sum(p.watermark for p in progress(tmp).values())


def current_segment(tmp: Path, boot_id: str) -> Path:
    epoch = next((agent_dir(tmp) / "spool").glob(f"*-{boot_id}"))
    return max(epoch.glob("*.seg"))


def test_collector_sigkilled_and_restarted_three_times(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(tmp, test_pki, HOST, [collector.target], interval=0.1)
    services.append(agent)
    for _ in range(3):
        before = processed(tmp)
        wait_for(lambda b=before: processed(tmp) > b + 5, what="the collector to apply new records")
        collector.kill()
        time.sleep(0.7)  # the agent keeps sampling into its spool meanwhile
        collector.start().wait_ready()
    final = drain_and_stop(agent, agent_dir(tmp), collector_dir(tmp), HOST)
    rows = progress(tmp)
    check_accounting(rows, {final["boot_id"]: final["records_produced"]})
    boot = rows[final["boot_id"]]
    assert boot.watermark == final["records_produced"] and boot.dropped == 0
    assert boot.frames == final["frames_produced"]  # every frame applied exactly once
    text = collector.metrics()
    assert metric_value(text, "gpulse_collector_host_frames_applied_total", host=HOST) == boot.frames


@pytest.mark.long
def test_partition_longer_than_a_minute_through_a_black_hole(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    proxy = BlackHoleProxy(collector.grpc_port)
    try:
        agent = start_agent(tmp, test_pki, HOST, [proxy.target], interval=0.2)
        services.append(agent)
        wait_for(lambda: processed(tmp) > 5, what="first records through the proxy")
        proxy.partition()
        time.sleep(3)  # what was in flight when the partition began has settled
        during = processed(tmp)
        produced_before = agent_status(agent_dir(tmp))["records_produced"]
        time.sleep(62)
        assert processed(tmp) == during, "records crossed a black-holed link"
        # Sampling went on (300 ticks at 5 Hz; a loaded machine may skip some, never stop).
        assert agent_status(agent_dir(tmp))["records_produced"] >= produced_before + 150
        assert agent.running
        proxy.heal()
        final = drain_and_stop(agent, agent_dir(tmp), collector_dir(tmp), HOST)
    finally:
        proxy.close()
    rows = progress(tmp)
    check_accounting(rows, {final["boot_id"]: final["records_produced"]})
    boot = rows[final["boot_id"]]
    assert boot.dropped == 0 and boot.frames == final["frames_produced"]
    assert final["shipper"]["connects"] >= 2


def test_agent_sigkilled_mid_write_and_restarted(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(tmp, test_pki, HOST, [collector.target], interval=0.02, spool={"fsync": "always"})
    services.append(agent)
    rng = random.Random(4)
    produced: dict[str, int] = {}
    boots = []
    for round_ in range(3):
        status = wait_for(lambda: agent_status(agent_dir(tmp)), what="agent status")
        boot = status["boot_id"]
        boots.append(boot)
        time.sleep(rng.uniform(0.5, 1.5))
        agent.kill()  # SIGKILL while it appends 50 records a second
        if round_ == 1:
            # The power went mid-write too: the last record on disk is torn.
            seg = current_segment(tmp, boot)
            os.truncate(seg, seg.stat().st_size - 7)
        agent.start()

        def recovered(boot: str = boot) -> dict[str, object] | None:
            status = agent_status(agent_dir(tmp))
            if status["boot_id"] == boot:
                return None
            return next((e for e in status["recovered_epochs"] if e["boot_id"] == boot), None)

        epoch = wait_for(recovered, what="the restarted agent to recover the killed boot's spool")
        produced[boot] = epoch["last_seq"]
        if round_ == 1:
            assert epoch["corrupt_records"] == 1
    final = drain_and_stop(agent, agent_dir(tmp), collector_dir(tmp), HOST)
    produced[final["boot_id"]] = final["records_produced"]
    rows = progress(tmp)
    check_accounting(rows, produced)
    assert rows[final["boot_id"]].watermark == final["records_produced"]
    # The torn record was delivered before the kill or is named by a drop notice: never silently gone.
    assert all(rows[b].watermark >= produced[b] for b in boots)


def test_corrupted_segment_is_skipped_counted_and_the_rest_delivered(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    port = free_port()  # no collector yet: everything stays in the spool
    agent = start_agent(tmp, test_pki, HOST, [f"127.0.0.1:{port}"], interval=0.05)
    services.append(agent)
    wait_for(lambda: agent_status(agent_dir(tmp))["records_produced"] >= 60, what="a spooled backlog")
    assert agent.stop() == 0
    first = agent_status(agent_dir(tmp))
    seg = current_segment(tmp, first["boot_id"])
    data = bytearray(seg.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 500] = random.Random(7).randbytes(500)
    seg.write_bytes(bytes(data))

    collector = start_collector(tmp, test_pki, grpc_port=port)
    services.append(collector)
    agent.start()

    def restarted() -> dict[str, object] | None:
        status = agent_status(agent_dir(tmp))
        return status if status["boot_id"] != first["boot_id"] else None

    status = wait_for(restarted, what="the restarted agent's status")
    [epoch] = status["recovered_epochs"]
    assert epoch["boot_id"] == first["boot_id"] and epoch["last_seq"] == first["records_produced"]
    corrupt = epoch["corrupt_records"]
    assert corrupt >= 1
    final = drain_and_stop(agent, agent_dir(tmp), collector_dir(tmp), HOST)
    rows = progress(tmp)
    check_accounting(rows, {first["boot_id"]: first["records_produced"], final["boot_id"]: final["records_produced"]})
    old = rows[first["boot_id"]]
    assert old.watermark == first["records_produced"]
    assert old.dropped == corrupt and old.applied == first["records_produced"] - corrupt
    # Each record is one frame (a batch of one tick) or one event; the lost ones were some of those.
    assert first["frames_produced"] + first["events_produced"] == first["records_produced"]
    assert first["frames_produced"] - corrupt <= old.frames <= first["frames_produced"]


def test_spool_budget_runs_out_during_a_partition(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    proxy = BlackHoleProxy(collector.grpc_port)
    try:
        agent = start_agent(
            tmp,
            test_pki,
            HOST,
            [proxy.target],
            interval=0.02,
            spool={"max_bytes": 65536, "segment_bytes": 8192},
        )
        services.append(agent)
        wait_for(lambda: processed(tmp) > 5, what="first records through the proxy")
        proxy.partition()
        wait_for(
            lambda: agent_status(agent_dir(tmp))["spool_dropped_records"] > 200,
            timeout=60,
            what="the spool to drop its oldest records",
        )
        proxy.heal()
        final = drain_and_stop(agent, agent_dir(tmp), collector_dir(tmp), HOST)
    finally:
        proxy.close()
    rows = progress(tmp)
    check_accounting(rows, {final["boot_id"]: final["records_produced"]})
    boot = rows[final["boot_id"]]
    assert boot.watermark == final["records_produced"]
    # The agent counts what it dropped; the collector counts those it never applied (a dropped record
    # may have been applied already, its acknowledgement lost in the partition).
    assert 0 < boot.dropped <= final["spool_dropped_records"]
    text = collector.metrics()
    assert metric_value(text, "gpulse_collector_host_records_dropped_by_agent_total", host=HOST) == boot.dropped
    assert metric_value(text, "gpulse_collector_events_total", kind="spool_drop") >= 1
    # Notices merge as drops go on; what reaches the per-host series is still each record once.
    assert metric_value(text, "gpulse_host_spool_dropped_records_total", host=HOST) == boot.dropped


def test_failover_between_collectors_loses_nothing(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    cert, key = test_pki.collector()  # both answer to the name the agent expects
    first = start_collector(tmp, test_pki, name="collector-a", tls={"cert": cert, "key": key})
    second = start_collector(tmp, test_pki, name="collector-b", tls={"cert": cert, "key": key})
    services += [first, second]
    agent = start_agent(tmp, test_pki, HOST, [first.target, second.target], interval=0.05)
    services.append(agent)
    by_target = {first.target: first, second.target: second}
    status = wait_for(lambda: (s := agent_status(agent_dir(tmp)))["shipper"]["connected_to"] and s)
    was, now = by_target[status["shipper"]["connected_to"]], None
    dirs = {first.name: tmp / "collector-a-state", second.name: tmp / "collector-b-state"}
    wait_for(lambda: sum(p.watermark for p in collector_progress(dirs[was.name], HOST).values()) > 20)
    was.kill()
    now = second if was is first else first
    final = drain_and_stop(agent, agent_dir(tmp), dirs[now.name], HOST)
    before = collector_progress(dirs[was.name], HOST)[final["boot_id"]]
    after = collector_progress(dirs[now.name], HOST)
    check_accounting(after, {final["boot_id"]: final["records_produced"]})
    boot = after[final["boot_id"]]
    assert boot.watermark == final["records_produced"]
    # The second collector did not wait for what the first had acknowledged: it was marked elsewhere.
    assert 0 < boot.elsewhere <= before.watermark
    # Applied by both only what the first processed but the agent had not yet let go of.
    assert before.watermark - boot.elsewhere <= 512
