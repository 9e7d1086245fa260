"""The systemd units, sysusers.d and tmpfiles.d snippets, checked by systemd's own tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit import ROOT

SYSTEMD = ROOT / "systemd"
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")

UNITS = {"gpulse-agent.service": 2.0, "gpulse-collector.service": 1.5}


def _unit_with_existing_binary(tmp: Path, name: str) -> Path:
    """A copy whose ExecStart points at this checkout's entry point: verify insists the binary exists."""
    entry = Path(sys.executable).parent / "gpulse"
    assert entry.exists(), f"{entry} missing: install the project into the venv (pip install -e .)"
    text = (SYSTEMD / name).read_text().replace("/opt/gpulse/venv/bin/gpulse", str(entry))
    path = tmp / name
    path.write_text(text)
    return path


def _directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(tmp: Path, name: str) -> None:
    unit = _unit_with_existing_binary(tmp, name)
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"verify warned: {result.stderr}"


@pytest.mark.parametrize(("name", "threshold"), sorted(UNITS.items()))
def test_unit_security_exposure_is_within_threshold(name: str, threshold: float) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(SYSTEMD / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= threshold, result.stdout


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_is_notify_with_watchdog_restart_and_start_limits(name: str) -> None:
    d = _directives(name)
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["WatchdogSec"] and d["WatchdogSec"][0] != "0"
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["2"], "a config error (exit 2) must not restart in a loop"
    assert d["StartLimitBurst"] and d["StartLimitIntervalSec"]
    assert d["User"] == ["gpulse"]
    assert d["DevicePolicy"] == ["closed"]
    assert "ExecReload" in d and "HUP" in d["ExecReload"][0]
    assert d["StateDirectory"] and d["ConfigurationDirectory"] == ["gpulse"]


def test_only_the_agent_may_open_nvidia_devices() -> None:
    agent, collector = _directives("gpulse-agent.service"), _directives("gpulse-collector.service")
    assert agent["DeviceAllow"], "the agent needs the NVIDIA devices for NVML"
    assert all("nvidia" in allow for allow in agent["DeviceAllow"])
    # PrivateDevices=yes would hide /dev/nvidia*; the closed device policy does the limiting instead.
    assert "PrivateDevices" not in agent
    assert "DeviceAllow" not in collector
    assert collector["PrivateDevices"] == ["yes"]


def test_sysusers_and_tmpfiles_create_the_user_and_directories(tmp: Path) -> None:
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers/systemd-tmpfiles not installed")
    root = tmp / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run([sysusers, f"--root={root}", str(SYSTEMD / "gpulse.sysusers.conf")], check=True, timeout=60)
    passwd = (root / "etc" / "passwd").read_text()
    user = next(line for line in passwd.splitlines() if line.startswith("gpulse:"))
    assert user.endswith(":/usr/sbin/nologin")
    subprocess.run([tmpfiles, "--create", f"--root={root}", str(SYSTEMD / "gpulse.tmpfiles.conf")], check=True)
    uid = int(user.split(":")[2])
    for sub in ("var/lib/gpulse/agent", "var/lib/gpulse/collector"):
        st = (root / sub).stat()
        assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o750)
    assert (root / "etc/gpulse/tls").stat().st_mode & 0o007 == 0, "the keys' directory must not be world-readable"
    assert (root / "etc/gpulse").stat().st_mode & 0o005 == 0o005, "the gpulse user must reach its config"
