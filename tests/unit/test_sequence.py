from collector.sequence import SequenceTracker


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
