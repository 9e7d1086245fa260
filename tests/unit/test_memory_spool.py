"""The in-memory spool: bounded, and honest about what it drops."""

from __future__ import annotations

import pytest

from agent.spool.memory import MemorySpool
from protos import telemetry_pb2 as pb


def hello(boot: str) -> pb.Hello:
    return pb.Hello(host_id="node-1", boot_id=boot, protocol_version=1)


def batch(value: float) -> pb.AgentMessage:
    return pb.AgentMessage(batch=pb.Batch(frames=[pb.Frame(unix_ns=1, values=[value])]))


def test_memory_spool_leaves_a_drop_notice_in_place_of_what_it_dropped() -> None:
    spool = MemorySpool(max_records=10)
    spool.open_epoch(hello("boot-a"))
    for i in range(30):
        spool.append(batch(float(i)))
    records = spool.read("boot-a", 0, 100)
    notice = records[0].event.spool_drop
    assert (notice.first_seq, notice.last_seq, records[0].seq) == (1, 21, 21)
    assert [m.seq for m in records[1:]] == list(range(22, 31))
    assert sum(d.records for d in spool.take_drops()) == 21


def test_memory_spool_acknowledged_records_are_forgotten() -> None:
    spool = MemorySpool()
    spool.open_epoch(hello("boot-a"))
    for i in range(5):
        spool.append(batch(float(i)))
    spool.ack("boot-a", 3)
    assert [m.seq for m in spool.read("boot-a", 0, 10)] == [4, 5]


def test_memory_spool_keeps_a_copy_of_the_updated_hello_for_the_current_boot_only() -> None:
    spool = MemorySpool()
    spool.open_epoch(hello("boot-a"))
    changed = pb.Hello(
        host_id="node-1", boot_id="boot-a", protocol_version=1, gpus=[pb.GpuInventory(vbios_version="2")]
    )
    spool.update_hello(changed)
    changed.gpus[0].vbios_version = "3"
    assert spool.hello("boot-a").gpus[0].vbios_version == "2"
    spool.open_epoch(hello("boot-b"))
    with pytest.raises(ValueError, match="boot-a"):
        spool.update_hello(changed)
