from __future__ import annotations

from pathlib import Path

import pytest

from collector.alert import Severity
from collector.detect.baseline import BaselineDetector
from collector.detect.peers import PeerDetector
from collector.detect.rules import DEFAULT_RULES, RuleError, load_rules, parse_rules
from collector.detect.signals import FleetSignals
from collector.detect.thermal import ThermalModelDetector
from collector.store import FleetStore

_SIGNALS = FleetSignals(
    FleetStore(), (*PeerDetector().outputs, *BaselineDetector().outputs, *ThermalModelDetector.outputs)
)
GPU = frozenset([*_SIGNALS.gpu_names, "xid"])
HOST = frozenset(_SIGNALS.host_names)


def rules(text: str, source: str = "/etc/gpulse/rules.toml") -> list:
    return parse_rules(source, text, gpu_signals=GPU, host_signals=HOST)


def test_a_rule_with_every_part() -> None:
    (rule,) = rules(
        """
[[rule]]
name = "GpuPcieReplayStorm"
expr = "rate(pcie_replay[1m]) > 5"
for = "30s"
keep_firing_for = "5m"
severity = "warning"
labels = { component = "pcie", team = "infra-{{ $labels.host }}" }
annotations = { summary = "{{ $value | humanize }}/s on {{ $labels.host }} GPU {{ $labels.gpu }}" }
"""
    )
    assert rule.name == "GpuPcieReplayStorm"
    assert (rule.for_seconds, rule.keep_firing_for, rule.severity) == (30.0, 300.0, Severity.WARNING)
    assert rule.scope == "gpu" and not rule.immediate
    assert rule.labels["component"] == "pcie"


def test_scope_and_immediacy_follow_the_signals_read() -> None:
    host_rule, xid_rule = rules(
        """
[[rule]]
name = "HostDown"
expr = "missed_intervals >= 10"
severity = "critical"
[[rule]]
name = "Xid79"
expr = "xids(79)[5m] > 0"
severity = "critical"
"""
    )
    assert host_rule.scope == "host" and not host_rule.immediate
    assert xid_rule.scope == "gpu" and xid_rule.immediate


@pytest.mark.parametrize(
    ("body", "rule", "reason"),
    [
        ('name = "A"\nexpr = "temprature > 1"\nseverity = "info"', "A", "unknown signal 'temprature'"),
        ('name = "A"\nexpr = "temperature > 1"\nseverity = "loud"', "A", "unknown severity 'loud'"),
        ('name = "A"\nexpr = "temperature > 1"\nseverity = "info"\nfor = "5 min"', "A", "invalid duration"),
        ('name = "A"\nseverity = "info"', "A", "'expr' is required"),
        ('name = "A"\nexpr = "temperature > 1"\nseverity = "info"\nfour = "5m"', "A", "unknown key 'four'"),
        (
            'name = "A"\nexpr = "temperature > 1"\nseverity = "info"\nlabels = { host = "x" }',
            "A",
            "cannot be overridden",
        ),
        (
            'name = "A"\nexpr = "temperature > 1"\nseverity = "info"\nannotations = { s = "{{ $labels.rack }}" }',
            "A",
            "names label 'rack'",
        ),
        (
            'name = "A"\nexpr = "missed_intervals > 1"\nseverity = "info"\nannotations = { s = "{{ $labels.gpu }}" }',
            "A",
            "names label 'gpu'",
        ),
        (
            'name = "A"\nexpr = "temperature > 1"\nseverity = "info"\nannotations = { s = "{{ .Value }}" }',
            "A",
            "cannot use",
        ),
        ('name = "bad name"\nexpr = "temperature > 1"\nseverity = "info"', "#1", "must be an identifier"),
    ],
)
def test_invalid_rules_are_refused_naming_file_rule_and_reason(body: str, rule: str, reason: str) -> None:
    with pytest.raises(RuleError) as info:
        rules(f"[[rule]]\n{body}\n")
    error = info.value
    assert error.path == "/etc/gpulse/rules.toml"
    assert error.rule == rule
    assert reason in error.reason
    assert str(error).startswith(f"/etc/gpulse/rules.toml: rule {rule!r}: ")


def test_broken_toml_and_missing_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"rules.toml: invalid TOML"):
        rules("[[rule]\n", source="rules.toml")
    with pytest.raises(RuleError, match=r"nope.toml: file not found"):
        load_rules([tmp_path / "nope.toml"], gpu_signals=GPU, host_signals=HOST)


def test_duplicate_names_across_files_are_refused(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text('[[rule]]\nname = "GpuLost"\nexpr = "lost > 0"\nseverity = "info"\n')
    with pytest.raises(RuleError) as info:
        load_rules([DEFAULT_RULES, a], gpu_signals=GPU, host_signals=HOST)
    assert info.value.rule == "GpuLost" and "already defined in builtin:default.toml" in info.value.reason


def test_default_pack_loads_and_covers_the_catalogue() -> None:
    pack = load_rules([DEFAULT_RULES], gpu_signals=GPU, host_signals=HOST)
    by_name = {r.name: r for r in pack.rules}
    texts = " ".join(r.expr_text for r in pack.rules)
    # XIDs in every action class of NVIDIA's catalogue, evaluated on arrival.
    for name in (
        "GpuXidApplicationError",
        "GpuXidResetRequired",
        "GpuXidRebootRequired",
        "GpuXidNvlink",
        "GpuXidMemoryUncorrectable",
        "GpuXidMemoryContained",
        "GpuLost",
        "GpuMissingFromInventory",
    ):
        assert by_name[name].immediate, name
    for code in (13, 31, 43, 48, 62, 74, 79, 94, 95, 119):
        assert str(code) in texts
    for signal in (
        "ecc_uncorrected_volatile",
        "remapped_rows_failure",
        "remapped_rows_pending",
        "retired_pages_dbe",
        "thermal_violation",
        "power_violation",
        "nvlink_crc_errors",
        "nvlink_replay_errors",
        "nvlink_recovery_errors",
        "nvlink_links_down",
        "pcie_replay",
        "pcie_link_width",
        "missed_intervals",
        "clock_skew_seconds",
        "spool_dropped_records",
        "peer_score_sm_clock",
    ):
        assert signal in texts, signal
    assert all(r.annotations.get("summary") for r in pack.rules)
    assert {r.severity for r in pack.rules} == {Severity.INFO, Severity.WARNING, Severity.CRITICAL}
