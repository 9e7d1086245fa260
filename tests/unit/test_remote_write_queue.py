"""The remote write queue on disk: survives a restart, resumes at its cursor, budgeted, damage skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from structlog.testing import capture_logs

from collector.exporters.remote_write_queue import QueueConfig, RemoteWriteQueue

LABELS = (
    (("__name__", "gpulse_gpu_temperature_celsius"), ("gpu", "0"), ("host", "node-a")),
    (("__name__", "gpulse_gpu_temperature_celsius"), ("gpu", "1"), ("host", "node-a")),
)
T0 = 1_800_000_000_000


def fill(queue: RemoteWriteQueue, count: int, start: int = 0, key: str = "node-a") -> None:
    for i in range(start, start + count):
        values = np.array([40.0 + i, np.nan if i % 2 else 60.0 + i])
        assert queue.append(key, LABELS, values, T0 + i * 1000, 1 if i % 2 else 2)


def stamps(queue: RemoteWriteQueue, max_samples: int = 10**9) -> list[int]:
    return [f.timestamp_ms for f in queue.read(max_samples)]


def test_frames_survive_a_restart_in_order_with_their_values_and_times(tmp_path: Path) -> None:
    queue = RemoteWriteQueue(tmp_path)
    fill(queue, 5)
    queue.sync()
    # No close: as after a SIGKILL.
    again = RemoteWriteQueue(tmp_path)
    frames = again.read(10**9)
    assert [f.timestamp_ms for f in frames] == [T0 + i * 1000 for i in range(5)]
    assert frames[1].values[0] == 41.0 and np.isnan(frames[1].values[1]) and frames[2].values[1] == 62.0
    assert frames[0].labels == LABELS and frames[0].key == "node-a"
    assert again.pending_samples == 8


def test_the_cursor_resumes_after_what_the_receiver_accepted(tmp_path: Path) -> None:
    queue = RemoteWriteQueue(tmp_path)
    fill(queue, 6)
    batch = queue.read(3)  # samples 2 + 1: two frames
    assert [f.timestamp_ms for f in batch] == [T0, T0 + 1000]
    queue.commit(batch[-1].end)
    assert stamps(queue, 3) == [T0 + 2000, T0 + 3000]  # the reader moves on; the cursor does not
    again = RemoteWriteQueue(tmp_path)
    # Restarted: what was read but not accepted comes again, then the rest, and nothing before it.
    assert stamps(again) == [T0 + i * 1000 for i in range(2, 6)]
    fill(again, 2, start=6)
    assert stamps(again) == [T0 + 6000, T0 + 7000]


def test_a_frame_applied_again_after_a_restart_is_not_queued_twice(tmp_path: Path) -> None:
    queue = RemoteWriteQueue(tmp_path)
    fill(queue, 3)
    queue.commit(queue.read(10**9)[-1].end)
    again = RemoteWriteQueue(tmp_path)
    assert not again.append("node-a", LABELS, np.array([1.0, 2.0]), T0 + 2000, 2)
    assert again.stats.duplicate_frames == 1
    assert again.append("node-b", LABELS, np.array([1.0, 2.0]), T0 + 2000, 2)  # another host's own times
    assert again.append("node-a", LABELS, np.array([1.0, 2.0]), T0 + 3000, 2)
    assert stamps(again) == [T0 + 2000, T0 + 3000]


def test_over_budget_the_oldest_segment_goes_counted_and_logged_with_its_time_range(tmp_path: Path) -> None:
    drops: list[tuple[str, int]] = []
    queue = RemoteWriteQueue(
        tmp_path, QueueConfig(max_bytes=2000, segment_bytes=500), on_drop=lambda r, n: drops.append((r, n))
    )
    with capture_logs() as logs:
        fill(queue, 40)
    frames = queue.read(10**9)
    kept = [f.timestamp_ms for f in frames]
    lost = sum(n for _, n in drops)
    assert drops and all(r == "queue_full" for r, _ in drops)
    assert queue.total_bytes <= 2000 + 500
    # Exactly the oldest went, and the count is exact: kept + lost = all 40 frames' 60 samples.
    assert kept == [T0 + i * 1000 for i in range(40 - len(kept), 40)]
    assert lost + sum(f.samples for f in frames) == 60
    first_drop = next(e for e in logs if e["event"].startswith("remote write queue over budget"))
    assert first_drop["first_timestamp_ms"] == T0 and first_drop["last_timestamp_ms"] > T0


def test_a_damaged_segment_is_skipped_counted_and_logged_and_the_rest_delivered(tmp_path: Path) -> None:
    queue = RemoteWriteQueue(tmp_path, QueueConfig(max_bytes=10**6, segment_bytes=400))
    fill(queue, 12)
    queue.sync()
    segments = sorted(tmp_path.glob("*.seg"))
    assert len(segments) >= 3
    data = bytearray(segments[0].read_bytes())
    data[-10] ^= 0xFF  # inside the segment's last frame
    segments[0].write_bytes(bytes(data))
    with capture_logs() as logs:
        again = RemoteWriteQueue(tmp_path, QueueConfig(max_bytes=10**6, segment_bytes=400))
    assert again.stats.corrupt_segments == 1
    assert any(e["event"].startswith("remote write queue segment damaged") for e in logs)
    got = stamps(again)
    # What precedes the damage in the first segment, and every later segment, still goes.
    assert got[0] == T0 and got[-4:] == [T0 + i * 1000 for i in range(8, 12)]
    assert got == sorted(got) and len(got) == 11  # only the damaged frame is lost
    fill(again, 1, start=12)  # and the queue goes on taking frames
    assert stamps(again) == [T0 + 12000]


def test_oldest_pending_follows_the_queue_while_nothing_is_accepted(tmp_path: Path) -> None:
    queue = RemoteWriteQueue(tmp_path, QueueConfig(max_bytes=10**6, segment_bytes=300))
    assert queue.oldest_pending_ms() is None
    fill(queue, 2, key="node-a")
    queue.append("node-b", LABELS, np.array([1.0, 1.0]), T0 - 60_000, 2)  # a backlog replayed late
    assert queue.oldest_pending_ms() == T0 - 60_000
    fill(queue, 10, start=2)
    batch = queue.read(10**9)
    assert queue.oldest_pending_ms() == T0 - 60_000  # read (in flight) is still pending
    queue.commit(batch[2].end)
    assert queue.oldest_pending_ms() == T0 + 2000
    queue.commit(batch[-1].end)
    assert queue.oldest_pending_ms() is None and queue.pending_samples == 0
