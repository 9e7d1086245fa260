"""deploy/prometheus: the scrape config and rules pass promtool, their unit tests pass, and every
gpulse metric they name is one the collector actually exposes."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from collector.exporters.exposition.dcgm import DCGM_FAMILIES
from tests.exposed_names import exposed_metric_names

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=DEPLOY)
    except FileNotFoundError:
        pytest.fail("promtool is required (Debian package prometheus)")


def test_config_and_rules_pass_promtool_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("check", "rules", "recording.rules.yml", "alerting.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "tests/rules_test.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_rules_cover_the_default_rule_pack() -> None:
    """The issue's list, under the names and severities of collector/detect/rules/default.toml."""
    names = {
        rule["alert"]
        for group in yaml.safe_load((DEPLOY / "alerting.rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    expected = {
        "GpuXidApplicationError", "GpuXidApplicationErrorStorm", "GpuXidResetRequired", "GpuXidRebootRequired",
        "GpuXidNvlink", "GpuXidMemoryUncorrectable", "GpuXidMemoryContained", "GpuLost", "GpuMissingFromInventory",
        "GpuVolatileDbe", "GpuRowRemapFailure", "GpuRowRemapPending", "GpuRetiredPagesPending", "GpuRetiredPagesHigh",
        "GpuThermalViolationGrowing", "GpuPowerViolationGrowing", "GpuNvlinkCrcErrors", "GpuNvlinkReplayErrors",
        "GpuNvlinkRecoveryErrors", "GpuNvlinkDown", "GpuPcieReplayRate", "GpuPcieLinkDowngraded", "HostDown",
        "HostClockSkew", "AgentSpoolDropping", "GpuMetricsAbsent", "GpuCorrectableEccStorm",
        "GpuHardwareThermalSlowdown", "GpuTemperatureHigh", "GpuPowerBrake", "GpuHardwareSlowdown", "GpuStraggler",
        "GpuHungBusyAtLowPower",
    }  # fmt: skip
    assert expected <= names
    pack = tomllib.loads((DEPLOY.parents[1] / "collector" / "detect" / "rules" / "default.toml").read_text())
    severities = {r["name"]: r["severity"] for r in pack["rule"]}
    ours = {
        rule["alert"]: rule["labels"]["severity"]
        for group in yaml.safe_load((DEPLOY / "alerting.rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for name in expected:
        assert ours[name] == severities[name], f"{name}: severity {ours[name]} here, {severities[name]} in the pack"


def test_every_gpulse_metric_the_rules_name_is_exposed() -> None:
    exposed = exposed_metric_names() | {f.name for f in DCGM_FAMILIES}
    # The detector's scores are registered by the detection service; read their names from its source.
    detection = (DEPLOY.parents[1] / "collector" / "detect" / "exposition.py").read_text()
    exposed |= set(re.findall(r'"(gpulse_detect_[a-z_]+)"', detection))
    for path in ("recording.rules.yml", "alerting.rules.yml"):
        text = (DEPLOY / path).read_text()
        text = re.sub(r"\b[a-z]+:[a-z0-9_]+:[a-z0-9_]+", "", text)  # recording rule names, not metrics
        named = set(re.findall(r"\b(gpulse_[a-z0-9_]+)", text))
        assert named <= exposed, f"{path} names metrics nobody exposes: {sorted(named - exposed)}"
