from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from collector.audit.log import AuditLog, verify
from tests.kit import ROOT


def write(path: Path, count: int) -> AuditLog:
    audit = AuditLog(path, clock=lambda: 1_800_000_000.0)
    for i in range(count):
        audit.record(actor="alice", source="10.0.0.7", action="silence.add", object=f"s-{i}", result="success 201")
    return audit


def gpulse_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpulse.cli", "audit", "verify", str(path)], capture_output=True, text=True, cwd=ROOT
    )


def test_an_intact_chain_verifies_and_continues_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    write(path, 2)  # a restarted collector chains on from the last record
    assert verify(path.read_text().splitlines()) == (5, "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    result = gpulse_verify(path)
    assert result.returncode == 0 and "ok (5 records" in result.stdout


def test_an_edited_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    lines = path.read_text().splitlines()
    record = json.loads(lines[2])
    record["actor"] = "mallory"
    lines[2] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    result = gpulse_verify(path)
    assert result.returncode == 1
    assert "TAMPERED at record 3" in result.stdout and "altered" in result.stdout


def test_a_removed_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    lines = path.read_text().splitlines()
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    checked, problem = verify(path.read_text().splitlines())
    assert checked == 2 and "record 2 is missing" in problem


def test_a_rewritten_chain_from_a_removed_record_on_still_fails(tmp_path: Path) -> None:
    # Renumbering after a deletion without the hashes is caught by the hash; with them, by `prev`.
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    lines = path.read_text().splitlines()
    second = json.loads(lines[2])
    second["seq"] = 2
    path.write_text("\n".join([lines[0], json.dumps(second)]) + "\n")
    checked, problem = verify(path.read_text().splitlines())
    assert checked == 2 and problem


def test_refused_streams_are_summed_into_one_record_a_minute(tmp_path: Path) -> None:
    from collector.audit.refusals import RefusalSummary

    now = [0.0]
    path = tmp_path / "audit.jsonl"
    summary = RefusalSummary(AuditLog(path), monotonic=lambda: now[0])
    summary.refused("expired", "10.0.0.1")  # the first is written at once
    for i in range(500):
        summary.refused("expired", f"10.0.0.{i % 20}")
    summary.refused("plaintext", "10.0.0.99")
    assert len(path.read_text().splitlines()) == 1
    now[0] = 61.0
    summary.refused("expired", "10.0.0.2")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["action"] for r in records] == ["stream.refused", "stream.refused"]
    assert json.loads(records[0]["object"]) == {"expired": 1}
    assert json.loads(records[1]["object"]) == {"expired": 501, "plaintext": 1}
    assert len(records[1]["source"].split(",")) == 10  # the first few peers, not all
    summary.flush()
    assert len(path.read_text().splitlines()) == 2  # nothing pending
    assert verify(path.read_text().splitlines()) == (2, "")


def test_crl_reloads_are_told_to_the_audit_log(tmp_path: Path) -> None:
    from collector.trust import pki
    from collector.trust.revocation import RevocationList

    pki.init_ca(tmp_path, days=2)
    crl, _ = pki.revoke(tmp_path)
    seen: list[str] = []
    revocation = RevocationList(crl, tmp_path / pki.CA_CERT, on_reload=seen.append)
    pki.revoke(tmp_path, serial=1234)
    assert revocation.refresh(force=True) and seen == ["success"]
    crl.write_text("not a CRL")
    assert not revocation.refresh(force=True) and seen == ["success", "failure"]


def test_pki_issue_and_revoke_are_recorded_beside_the_ca(tmp_path: Path) -> None:
    from gpulse.cli import main

    assert main(["pki", "init", str(tmp_path)]) == 0
    assert main(["pki", "issue", str(tmp_path), "--agent", "gpu-3"]) == 0
    assert main(["pki", "revoke", str(tmp_path), "--agent", "gpu-3"]) == 0
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["pki.issue", "pki.revoke"]
    assert verify(lines) == (2, "")
