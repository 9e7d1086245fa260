from collector.ingest.sequence import SequenceTracker


def test_watermark_advances_only_over_contiguous_runs() -> None:
    t = SequenceTracker()
    for seq in (1, 2, 5, 4):
        t.mark(seq)
    assert t.watermark == 2 and t.gaps == 2
    assert t.seen(1) and t.seen(5) and not t.seen(3)
    t.mark(3)
    assert t.watermark == 5 and t.gaps == 0


def test_resuming_from_a_watermark_treats_everything_below_as_seen() -> None:
    t = SequenceTracker(watermark=100)
    assert t.seen(57)
    t.mark(50)
    assert t.watermark == 100


def test_a_dropped_range_moves_the_watermark_and_counts_only_what_was_missing() -> None:
    t = SequenceTracker()
    for seq in (1, 2, 6):
        t.mark(seq)
    assert t.mark_range(3, 7) == 4  # 6 was already processed
    assert t.watermark == 7 and t.gaps == 0
    assert t.mark_range(1, 7) == 0


def test_a_dropped_range_above_a_gap_waits_for_the_gap() -> None:
    t = SequenceTracker(watermark=10)
    assert t.mark_range(20, 29) == 10
    assert t.watermark == 10 and t.gaps == 10
    assert t.mark_range(11, 19) == 9
    assert t.watermark == 29


def test_restoring_the_set_above_the_watermark() -> None:
    t = SequenceTracker(5, above=[3, 7, 8])
    assert t.watermark == 5 and t.above == {7, 8}
    t.mark(6)
    assert t.watermark == 8
