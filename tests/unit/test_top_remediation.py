"""`gpulse top` shows pending approvals (with the command that approves them) and a tripped breaker."""

from __future__ import annotations

from gpulse.top import Snapshot, render

FLEET = {"hosts": [{"host_id": "node-a", "connected": True, "last_frame_unix": 1000.0, "gpus": []}]}
ALERT = {
    "labels": {"alertname": "GpuXidRebootRequired", "severity": "critical", "host": "node-a", "gpu": "3"},
    "state": "firing",
    "starts_at": 990.0,
    "annotations": {"summary": "node-a needs a reboot", "suggested_action": "reboot_host"},
}
REMEDIATION = {
    "mode": "approve",
    "breaker": {"tripped": True, "reason": "limit 1 of 4 hosts"},
    "open": [
        {"id": "bbbb2222", "state": "drained", "host": "node-b", "reason": "gpulse: GpuLost gpu 0"},
        {"id": "aaaa1111", "state": "pending", "host": "node-a", "reason": "gpulse: GpuXidRebootRequired gpu 3"},
    ],
}


def test_pending_first_with_its_approve_command_and_the_breaker() -> None:
    text = render(Snapshot(FLEET, [ALERT], "x", REMEDIATION), width=200, now=1000.0)
    lines = text.splitlines()
    head = lines.index(next(ln for ln in lines if ln.startswith("REMEDIATION")))
    assert "REMEDIATION (approve) — BREAKER TRIPPED: limit 1 of 4 hosts (gpulse remediation reset)" in lines[head]
    assert lines[head + 1].startswith("aaaa1111  awaits approval")
    assert lines[head + 1].endswith("(gpulse remediation approve aaaa1111)")
    assert lines[head + 2].startswith("bbbb2222  drained")
    assert any("GpuXidRebootRequired" in ln and "reboot_host" in ln for ln in lines[:head])


def test_nothing_when_remediation_is_off_or_absent() -> None:
    for remediation in (None, {"mode": "off", "open": [], "breaker": {}}):
        assert "REMEDIATION" not in render(Snapshot(FLEET, [ALERT], "x", remediation), now=1000.0)
