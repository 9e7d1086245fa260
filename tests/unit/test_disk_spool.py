"""The on-disk spool: segments, checksums, recovery after crashes and damage, budgets, epochs."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.spool.disk import (
    HEADER,
    KIND_BATCH,
    DiskSpool,
    DiskSpoolConfig,
    SpoolLocked,
    frame_record,
    scan,
)
from protos import telemetry_pb2 as pb
from tests.kit import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.now


def hello(boot: str) -> pb.Hello:
    return pb.Hello(host_id="node-1", boot_id=boot, protocol_version=1)


def batch(value: float, unix_ns: int = 1) -> pb.AgentMessage:
    return pb.AgentMessage(batch=pb.Batch(frames=[pb.Frame(unix_ns=unix_ns, values=[value] * 16)]))


def xid(code: int) -> pb.AgentMessage:
    return pb.AgentMessage(event=pb.Event(unix_ns=5, xid=pb.XidEvent(gpu_index=0, xid=code, count=1)))


@pytest.fixture
def spools(tmp_path: Path) -> Iterator[list[DiskSpool]]:
    opened: list[DiskSpool] = []
    yield opened
    for spool in opened:
        spool.close()


def open_spool(path: Path, spools: list[DiskSpool], **config: object) -> DiskSpool:
    spool = DiskSpool(path, DiskSpoolConfig(**config))  # type: ignore[arg-type]
    spools.append(spool)
    return spool


def reopen(spool: DiskSpool, spools: list[DiskSpool], **config: object) -> DiskSpool:
    assert spool.flush()
    spool.close()
    return open_spool(spool.directory, spools, **config)


def frame_values(messages: list[pb.AgentMessage]) -> list[float]:
    return [m.batch.frames[0].values[0] for m in messages if m.HasField("batch")]


def test_records_survive_a_restart_with_their_seq_and_original_timestamps(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    for i in range(10):
        assert spool.append(batch(float(i), unix_ns=1000 + i)) == i + 1
    spool.ack("boot-a", 3)
    spool = reopen(spool, spools)
    assert spool.epochs() == ["boot-a"]
    assert spool.hello("boot-a").boot_id == "boot-a"
    # Acknowledgement is the collector's to give again (its Welcome); the spool keeps what it must.
    spool.ack("boot-a", 3)
    got = spool.read("boot-a", 3, 100)
    assert [m.seq for m in got] == list(range(4, 11))
    assert [m.batch.frames[0].unix_ns for m in got] == [1000 + i for i in range(3, 10)]
    assert spool.recovered[0].last_seq == 10 and spool.recovered[0].corrupt_records == 0


def test_a_new_boot_is_a_new_epoch_and_the_old_one_ships_first(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    spool.append(batch(1.0))
    spool = reopen(spool, spools)
    spool.open_epoch(hello("boot-b"))
    spool.append(batch(2.0))
    assert spool.epochs() == ["boot-a", "boot-b"]
    assert frame_values(spool.read("boot-b", 0, 10)) == [2.0]
    spool.ack("boot-a", 1)
    assert spool.epochs() == ["boot-b"]
    assert spool.flush()
    assert not any(p.name.endswith("boot-a") for p in tmp_path.iterdir())


def test_acknowledged_segments_are_deleted_and_only_they(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools, segment_bytes=4096, max_bytes=10**9)
    spool.open_epoch(hello("boot-a"))
    for i in range(200):
        spool.append(batch(float(i)))
    spool.flush()
    epoch_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    before = sorted(p.name for p in epoch_dir.glob("*.seg"))
    assert len(before) > 3
    spool.ack("boot-a", 100)
    spool.flush()
    after = sorted(p.name for p in epoch_dir.glob("*.seg"))
    assert 0 < len(after) < len(before)
    assert [m.seq for m in spool.read("boot-a", 100, 1000)] == list(range(101, 201))


def test_events_only_read_skips_batches(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    spool.append(batch(1.0))
    spool.append(xid(79))
    spool.append(batch(2.0))
    spool.flush()
    events = spool.read("boot-a", 0, 10, events_only=True)
    assert [(m.seq, m.event.xid.xid) for m in events] == [(2, 79)]


def test_unwritten_records_are_readable_at_once(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    seqs = [spool.append(batch(float(i))) for i in range(50)]
    assert [m.seq for m in spool.read("boot-a", 0, 100)] == seqs


def test_byte_budget_drops_oldest_first_and_leaves_a_drop_notice(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools, max_bytes=64 * 1024, segment_bytes=8 * 1024)
    spool.open_epoch(hello("boot-a"))
    for i in range(2000):
        spool.append(batch(float(i)))
    assert spool.size_bytes <= 64 * 1024 + 8 * 1024
    drops = spool.take_drops()
    assert drops and all(d.reason == "byte budget" for d in drops)
    dropped = sum(d.records for d in drops)
    assert drops[0].first_seq == 1
    remaining = spool.read("boot-a", 0, 10_000)
    notices = [m for m in remaining if m.HasField("event")]
    assert len(notices) == 1  # adjacent drops merge into one notice
    notice = notices[0].event.spool_drop
    assert (notice.first_seq, notice.last_seq) == (1, dropped) and notices[0].seq == dropped
    kept = [m.seq for m in remaining if m.HasField("batch")]
    # Exact accounting: every record is either kept or named by the notice.
    assert kept == list(range(dropped + 1, 2001))
    assert spool.stats.dropped_records == dropped
    assert spool.take_drops() == []


def test_drop_notices_survive_a_restart(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools, max_bytes=32 * 1024, segment_bytes=4096)
    spool.open_epoch(hello("boot-a"))
    for i in range(600):
        spool.append(batch(float(i)))
    dropped = sum(d.records for d in spool.take_drops())
    spool = reopen(spool, spools, max_bytes=32 * 1024, segment_bytes=4096)
    records = spool.read("boot-a", 0, 10_000)
    assert records[0].event.spool_drop.last_seq == dropped
    assert [m.seq for m in records[1:]] == list(range(dropped + 1, 601))
    assert spool.last_seq("boot-a") == 600


def test_age_budget_drops_old_segments(tmp_path: Path, spools: list) -> None:
    clock = Clock()
    spool = DiskSpool(tmp_path, DiskSpoolConfig(max_age_seconds=60, segment_bytes=4096), clock=clock)
    spools.append(spool)
    spool.open_epoch(hello("boot-a"))
    for i in range(100):
        spool.append(batch(float(i)))
    clock.now += 61 * 10**9
    spool.append(batch(100.0))
    drops = spool.take_drops()
    assert drops and {d.reason for d in drops} == {"age budget"}
    assert sum(d.records for d in drops) >= 90


def test_torn_write_at_the_tail_is_skipped_and_counted(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    for i in range(20):
        spool.append(batch(float(i)))
    spool.flush()
    spool.close()
    seg = next(tmp_path.glob("*/*.seg"))
    size = seg.stat().st_size
    os.truncate(seg, size - 10)  # the last record was half written when the power went
    spool = open_spool(tmp_path, spools)
    assert spool.recovered[0].corrupt_records == 1
    records = spool.read("boot-a", 0, 100)
    assert [m.seq for m in records if m.HasField("batch")] == list(range(1, 20))
    assert records[-1].event.spool_drop.first_seq == 20 and records[-1].event.spool_drop.reason == "corrupt"
    assert spool.take_drops()[0].reason == "corrupt"


def test_a_tail_with_only_part_of_a_header_counts_one_record(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    for i in range(5):
        spool.append(batch(float(i)))
    spool.flush()
    spool.close()
    seg = next(tmp_path.glob("*/*.seg"))
    with seg.open("ab") as fh:
        fh.write(frame_record(KIND_BATCH, 6, b"x" * 40)[: HEADER.size - 5])
    spool = open_spool(tmp_path, spools)
    assert spool.last_seq("boot-a") == 6
    assert spool.recovered[0].corrupt_records == 1


def test_damage_in_the_middle_skips_only_the_damaged_records(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    for i in range(50):
        spool.append(batch(float(i)))
    spool.flush()
    spool.close()
    seg = next(tmp_path.glob("*/*.seg"))
    data = bytearray(seg.read_bytes())
    record = len(data) // 50
    data[record * 10 : record * 12 + 7] = os.urandom(record * 2 + 7)  # records 11, 12 and 13's header
    seg.write_bytes(bytes(data))
    spool = open_spool(tmp_path, spools)
    records = spool.read("boot-a", 0, 100)
    kept = [m.seq for m in records if m.HasField("batch")]
    notices = [m.event.spool_drop for m in records if m.HasField("event")]
    lost = [s for n in notices for s in range(n.first_seq, n.last_seq + 1)]
    assert sorted(kept + lost) == list(range(1, 51))  # every record kept or named
    assert lost == [11, 12, 13]
    assert spool.recovered[0].corrupt_records == 3
    assert frame_values(records)[:10] == [float(i) for i in range(10)]


def test_a_damaged_hello_drops_the_epoch_and_says_so(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    spool.append(batch(1.0))
    spool.flush()
    spool.close()
    hello_file = next(tmp_path.glob("*/hello.pb"))
    hello_file.write_bytes(b"\0" * hello_file.stat().st_size)
    spool = open_spool(tmp_path, spools)
    assert spool.epochs() == []
    drops = spool.take_drops()
    assert drops[0].reason == "corrupt hello" and drops[0].records == 1


def test_scan_finds_records_after_garbage() -> None:
    good = [frame_record(KIND_BATCH, s, b"payload-%d" % s) for s in (1, 2, 3)]
    result = scan(good[0] + b"garbage" * 5 + good[1] + good[2])
    assert [r.seq for r in result.records] == [1, 2, 3]
    assert result.bad_regions == 1 and not result.tail_unnamed


def test_scan_names_a_record_whose_payload_is_damaged() -> None:
    damaged = bytearray(frame_record(KIND_BATCH, 2, b"payload"))
    damaged[-1] ^= 0xFF
    result = scan(frame_record(KIND_BATCH, 1, b"a") + bytes(damaged) + frame_record(KIND_BATCH, 3, b"c"))
    assert [r.seq for r in result.records] == [1, 3] and result.bad_seqs == {2}


def test_a_second_agent_cannot_open_the_same_spool(tmp_path: Path, spools: list) -> None:
    open_spool(tmp_path, spools)
    with pytest.raises(SpoolLocked, match="in use"):
        DiskSpool(tmp_path)


def test_fsync_policy_interval_syncs_in_the_background(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools, fsync="interval", fsync_interval_seconds=0.05)
    spool.open_epoch(hello("boot-a"))
    spool.append(batch(1.0))
    wait_for(lambda: spool.stats.fsyncs >= 1, timeout=5, what="a background fsync")


def test_fsync_policy_never_does_not_sync(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools, fsync="never")
    spool.open_epoch(hello("boot-a"))
    for i in range(10):
        spool.append(batch(float(i)))
    spool.flush()
    assert spool.stats.fsyncs == 0


def test_an_unknown_fsync_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync policy"):
        DiskSpool(tmp_path, DiskSpoolConfig(fsync="sometimes"))


def test_append_never_waits_for_the_disk(tmp_path: Path, spools: list) -> None:
    """A device that stalls (fsync hangs) holds back durability, never the sampler or the shipper."""
    release = threading.Event()
    stalled = threading.Event()

    def stuck_fsync(fd: int) -> None:
        stalled.set()
        release.wait(10)

    spool = DiskSpool(tmp_path, DiskSpoolConfig(fsync="always"), sync=stuck_fsync)
    spools.append(spool)
    spool.open_epoch(hello("boot-a"))
    spool.append(batch(0.0))
    assert stalled.wait(5)  # the writer thread is now stuck in the device
    for i in range(1, 500):
        spool.append(batch(float(i)))  # returns at once: nothing here touches the disk
    assert [m.seq for m in spool.read("boot-a", 0, 1000)] == list(range(1, 501))
    assert not spool.flush(timeout=0.2)  # not yet durable
    release.set()
    assert spool.flush(timeout=10)


def test_a_boot_spooled_under_another_host_id_is_dropped_not_left_to_block(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    for i in range(5):
        spool.append(batch(float(i)))
    spool = reopen(spool, spools)
    renamed = hello("boot-b")
    renamed.host_id = "node-2"  # the host was renamed: the collector would refuse boot-a's Hello
    spool.open_epoch(renamed)
    assert spool.epochs() == ["boot-b"]
    [drop] = spool.take_drops()
    assert (drop.boot_id, drop.records, drop.reason) == ("boot-a", 5, "host id changed")
    assert spool.flush()
    assert not any(p.name.endswith("boot-a") for p in tmp_path.iterdir())


def test_the_current_hello_can_be_updated_and_the_update_survives_a_restart(tmp_path: Path, spools: list) -> None:
    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    spool.append(batch(1.0))
    changed = pb.Hello(
        host_id="node-1", boot_id="boot-a", protocol_version=1, gpus=[pb.GpuInventory(vbios_version="2")]
    )
    spool.update_hello(changed)
    changed.gpus[0].vbios_version = "3"  # the spool keeps its own copy
    assert spool.hello("boot-a").gpus[0].vbios_version == "2"
    spool = reopen(spool, spools)
    assert spool.hello("boot-a").gpus[0].vbios_version == "2"
    assert frame_values(spool.read("boot-a", 0, 10)) == [1.0]
    spool.open_epoch(hello("boot-b"))
    with pytest.raises(ValueError, match="boot-a"):  # an earlier boot's Hello is what that boot was
        spool.update_hello(changed)


def test_a_hello_rewrite_that_fails_is_counted_and_retried_without_the_caller_waiting(
    tmp_path: Path, spools: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.spool.disk as disk

    real, failures = disk._write_atomic, [0]

    def full_disk(path: Path, data: bytes) -> None:
        if path.name == "hello.pb" and failures[0] < 2:
            failures[0] += 1
            raise OSError(28, "No space left on device")
        real(path, data)

    spool = open_spool(tmp_path, spools)
    spool.open_epoch(hello("boot-a"))
    spool.append(batch(1.0))  # an epoch with records to send survives a restart
    monkeypatch.setattr(disk, "_write_atomic", full_disk)
    changed = hello("boot-a")
    changed.gpus.add(vbios_version="2")
    spool.update_hello(changed)  # returns at once: the disk is the writer thread's business
    assert spool.hello("boot-a").gpus[0].vbios_version == "2"
    wait_for(lambda: failures[0] == 2 and spool.flush(), what="the rewrite retried until it was written")
    assert spool.stats.write_errors == 2
    spool = reopen(spool, spools)
    assert spool.hello("boot-a").gpus[0].vbios_version == "2"
