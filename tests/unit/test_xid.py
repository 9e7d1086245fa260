"""The XID line parser on real driver output, and the storm coalescer's exact counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.sources.xid import KmsgXidWatcher, XidCoalescer, normalise_pci_bus_id, parse_xid_line

# As printed by real drivers (R535/R550 with pid and name; older ones without), via /dev/kmsg, dmesg and journald.
REAL_LINES = [
    (
        "4,1534,123456789,-;NVRM: Xid (PCI:0000:3b:00): 79, pid=2170, name=python3, GPU has fallen off the bus.",
        "0000:3b:00",
        79,
        123456789,
    ),
    (
        "[ 5122.123456] NVRM: Xid (PCI:0000:18:00): 48, pid=1, name=nvidia-smi, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 0, subpartition 0.",  # noqa: E501 - verbatim driver output
        "0000:18:00",
        48,
        None,
    ),
    (
        "Mar 03 10:12:01 node17 kernel: NVRM: Xid (PCI:0000:B3:00): 13, Graphics SM Warp Exception on (GPC 1, TPC 0): Out Of Range Address",  # noqa: E501 - verbatim driver output
        "0000:b3:00",
        13,
        None,
    ),
    (
        "NVRM: Xid (PCI:0000:5e:00): 94, pid='<unknown>', name=<unknown>, Contained: CE User Channel (0x9). RST: No, D-RST: No",  # noqa: E501 - verbatim driver output
        "0000:5e:00",
        94,
        None,
    ),
    ("NVRM: Xid (PCI:0000:07:00): 63", "0000:07:00", 63, None),
]


@pytest.mark.parametrize(("line", "pci", "xid", "usec"), REAL_LINES)
def test_parses_real_xid_lines(line: str, pci: str, xid: int, usec: int | None) -> None:
    parsed = parse_xid_line(line)
    assert parsed is not None
    assert (parsed.pci_bus_id, parsed.xid, parsed.monotonic_us) == (pci, xid, usec)
    assert parsed.message.startswith("NVRM: Xid")


@pytest.mark.parametrize(
    "line",
    [
        "6,1535,123456790,-;NVRM: GPU at PCI:0000:3b:00: GPU-1234",
        "nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, Non-fatal, Link 30",
        "",
        "NVRM: Xid (PCI:zzzz): 79",
    ],
)
def test_ignores_lines_that_are_not_xids(line: str) -> None:
    assert parse_xid_line(line) is None


def test_pci_ids_from_nvml_and_kernel_match() -> None:
    assert normalise_pci_bus_id("00000000:3B:00.0") == normalise_pci_bus_id("0000:3b:00") == "0000:3b:00"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_occurrence_goes_at_once_and_a_storm_is_one_event_per_window_with_the_exact_count() -> None:
    clock = Clock()
    c = XidCoalescer(window_s=10, monotonic=clock)
    total = 0
    for i in range(2500):
        c.add(0, 79, 1_000 + i, message="m", source="nvml")
        total += 1
        clock.now += 0.01  # 100 per second for 25 s
    c.add(1, 79, 5, message="other GPU", source="nvml")
    total += 1
    sent = []
    for _ in range(5):
        sent += c.drain()
        clock.now += 10
    sent += c.flush()
    assert sum(e.xid.count for e in sent) == total == c.occurrences
    assert len(sent) <= 6  # thousands of XIDs, a handful of messages
    assert sent[0].xid.count == 1  # the first went out on its own, without waiting for the window


def test_a_different_code_on_the_same_gpu_is_not_held_back() -> None:
    c = XidCoalescer(window_s=10, monotonic=Clock())
    c.add(0, 79, 1, message="a", source="sim")
    c.add(0, 48, 2, message="b", source="sim")
    assert [e.xid.xid for e in c.drain()] == [79, 48]


def test_kmsg_watcher_maps_lines_to_gpus_and_counts_unknown_ones(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text("")
    c = XidCoalescer(window_s=10, monotonic=Clock())
    w = KmsgXidWatcher(log, c, pci_to_index={"00000000:3B:00.0": 2})
    w.feed(REAL_LINES[0][0])
    w.feed("NVRM: Xid (PCI:0000:99:00): 79, not ours")
    events = c.drain()
    assert [(e.xid.gpu_index, e.xid.xid, e.xid.source) for e in events] == [(2, 79, "kmsg")]
    assert w.unknown_gpu == 1
    w.shutdown()
