"""The sim's fault inbox: files taken once, bad ones set aside with their reason, faults start at once."""

from __future__ import annotations

from pathlib import Path

from agent.sources.sim import FaultKind, SimBackend
from agent.sources.sim_faults import FaultInbox, write_fault

T0 = 1_800_000_000 * 10**9


def test_faults_are_taken_once_in_order_and_marked_applied(tmp_path: Path) -> None:
    inbox = FaultInbox(tmp_path, gpu_count=2)
    first = write_fault(tmp_path, {"kind": "xid", "gpu": 1, "xid": 79, "count": 3})
    write_fault(tmp_path, {"kind": "thermal_runaway", "gpu": 0, "severity": 0.9, "duration": 60.0})
    faults = inbox.take()
    assert [(f.kind, f.gpu) for f in faults] == [(FaultKind.XID, 1), (FaultKind.THERMAL_RUNAWAY, 0)]
    assert (faults[0].xid, faults[0].count, faults[1].severity, faults[1].duration) == (79, 3, 0.9, 60.0)
    assert first.with_suffix(".applied").exists() and inbox.take() == []


def test_a_bad_file_is_rejected_with_a_reason_naming_the_key(tmp_path: Path) -> None:
    inbox = FaultInbox(tmp_path, gpu_count=2)
    (tmp_path / "a.toml").write_text('kind = "melt"\n')
    (tmp_path / "b.toml").write_text('kind = "xid"\ngpu = 0\n')  # an XID fault without a code
    (tmp_path / "c.toml").write_text('kind = "dbe"\ncolour = "red"\n')
    (tmp_path / "d.toml").write_text("kind = \n")
    assert inbox.take() == [] and inbox.rejected == 4
    assert "kind" in (tmp_path / "a.error").read_text()
    assert "xid" in (tmp_path / "b.error").read_text()
    assert "colour" in (tmp_path / "c.error").read_text()
    assert (tmp_path / "d.rejected").exists()


def test_the_sim_applies_inbox_faults_at_its_next_sample(tmp_path: Path) -> None:
    inbox = FaultInbox(tmp_path, gpu_count=2)
    sim = SimBackend("h", count=2, fault_source=inbox.take)
    sim.open()
    for i in range(100):  # well past the start: an injected fault must not wait for its `at`
        sim.sample(T0 + i * 10**9)
    assert sim.drain_events() == []
    write_fault(tmp_path, {"kind": "gpu_lost", "gpu": 1, "at": 0.0})
    sim.sample(T0 + 100 * 10**9)
    kinds = [e.WhichOneof("kind") for e in sim.drain_events()]
    assert "gpu_lost" in kinds
