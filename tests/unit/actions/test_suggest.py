"""Suggested actions: from the XID catalogue and the rules, escalated when a fault keeps coming back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from collector.actions.escalation import ESCALATED, Escalator
from collector.actions.state import RemediationState
from collector.actions.suggest import SuggestedAction, for_rule, for_xid, suggest
from collector.alert import Alert, AlertState
from collector.alerting.receivers.pagerduty import custom_details

ROOT = Path(__file__).resolve().parents[3]


def alert(name: str = "GpuXidRebootRequired", action: str = "reboot_node", at: float = 1000.0, **labels: str) -> Alert:
    return Alert(
        {
            "alertname": name,
            "severity": "critical",
            "host": "n1",
            "gpu": "3",
            "uuid": "GPU-a",
            "action": action,
            **labels,
        },
        AlertState.FIRING,
        at,
    )


def test_catalogue_buckets() -> None:
    assert for_xid(79) is SuggestedAction.REBOOT_HOST
    assert for_xid(48) is SuggestedAction.RESET_GPU
    assert for_xid(13) is SuggestedAction.RESTART_APPLICATION
    assert for_xid(45) is SuggestedAction.NONE
    assert for_xid(9999) is SuggestedAction.INSPECT_HARDWARE  # unknown: for a human to look at


def test_annotation_wins_over_label_and_unknown_names_are_refused() -> None:
    assert for_rule({"action": "reset_gpu"}, {"suggested_action": "reboot_host"}) is SuggestedAction.REBOOT_HOST
    assert for_rule({"xid": "79"}, {}) is SuggestedAction.REBOOT_HOST
    assert for_rule({}, {}) is SuggestedAction.NONE
    with pytest.raises(ValueError, match="unknown action label 'reboot_everything'"):
        for_rule({"action": "reboot_everything"}, {})
    assert suggest(alert(action="reboot_everything")) is SuggestedAction.INSPECT_HARDWARE


def test_every_default_rule_has_an_action_and_docs_list_it() -> None:
    pack = tomllib.loads((ROOT / "collector/detect/rules/default.toml").read_text())
    doc = (ROOT / "docs/rules.md").read_text()
    for rule in pack["rule"]:
        action = for_rule(rule.get("labels", {}), rule.get("annotations", {}))
        assert f"| `{rule['name']}` | `{action.value}` |" in doc, rule["name"]


def test_same_fault_escalates_after_two_reboots_and_survives_a_restart(tmp_path: Path) -> None:
    state = RemediationState(tmp_path / "r.sqlite3")
    escalate = Escalator(state, after=2)
    first = escalate(alert(at=1000))
    second = escalate(alert(at=2000))
    assert first.annotations["suggested_action"] == second.annotations["suggested_action"] == "reboot_host"
    state.close()
    state = RemediationState(tmp_path / "r.sqlite3")  # the collector restarted
    third = Escalator(state, after=2)(alert(at=3000))
    assert third.annotations["suggested_action"] == "inspect_hardware"
    assert "after 2 x reboot the host" in third.annotations[ESCALATED]
    # another GPU (a new uuid) starts from nothing
    other = Escalator(state, after=2)(alert(at=3000, uuid="GPU-b"))
    assert other.annotations["suggested_action"] == "reboot_host"


def test_old_incidents_stop_counting(tmp_path: Path) -> None:
    escalate = Escalator(RemediationState(tmp_path / "r.sqlite3"), after=1, window=100)
    escalate(alert(at=1000))
    assert escalate(alert(at=1050)).annotations["suggested_action"] == "inspect_hardware"
    assert escalate(alert(at=5000)).annotations["suggested_action"] == "reboot_host"


def test_pagerduty_carries_it_in_custom_details(tmp_path: Path) -> None:
    annotated = Escalator(RemediationState(tmp_path / "r.sqlite3"))(alert())
    assert custom_details(annotated)["suggested_action"] == "reboot_host"
