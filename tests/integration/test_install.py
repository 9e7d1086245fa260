"""scripts/install.sh into a scratch root: virtualenv under /opt/gpulse, units, user, directories,
configs and certificates, as far as a machine without a running systemd allows (nothing is started)."""

from __future__ import annotations

import os
import shutil
import site
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from collector.trust import pki
from tests.kit import ROOT

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="install.sh creates a system user: needs root"),
    pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed"),
]


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Offline: the project itself is built from this checkout; its dependencies come from the test
    # virtualenv through PYTHONPATH when the installed command runs.
    return subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "install.sh"),
            "--root",
            str(root),
            "--python",
            sys.executable,
            "--pip-args",
            "--no-deps --no-build-isolation --no-index",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": site.getsitepackages()[0]},
    )


def test_install_into_a_scratch_root(tmp_path: Path) -> None:
    trusted = tmp_path / "trusted-ca"
    pki.init_ca(trusted, days=2)
    pki.issue(trusted, role="agent", name="gpu-01", days=2)
    pki.issue(trusted, role="collector", name="col-1", days=2)
    # What reaches the GPU host is a copy without the CA key.
    ca_dir = tmp_path / "ca"
    shutil.copytree(trusted, ca_dir)
    (ca_dir / pki.CA_KEY).unlink()
    root = tmp_path / "root"
    result = install(
        root, "--role", "both", "--ca-dir", str(ca_dir), "--host", "gpu-01", "--collector-name", "col-1",
        "--collector", "col-1.internal:7443", "--collector", "col-2.internal:7443",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    agent_toml = (root / "etc/gpulse/agent.toml").read_text()
    assert 'host_id = "gpu-01"' in agent_toml
    assert 'targets = ["col-1.internal:7443", "col-2.internal:7443"]' in agent_toml
    missing = install(tmp_path / "root2", "--ca-dir", str(ca_dir), "--host", "gpu-02")
    assert missing.returncode != 0 and "gpulse pki issue DIR --agent gpu-02" in missing.stderr

    # gpulse in its own virtualenv, with a working command.
    gpulse = root / "opt/gpulse/venv/bin/gpulse"
    env = {**os.environ, "PYTHONPATH": site.getsitepackages()[0]}
    version = subprocess.run([str(gpulse), "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("gpulse "), version.stderr
    installed = subprocess.run(
        [str(root / "opt/gpulse/venv/bin/python"), "-c", "import gpulse, sys; print(gpulse.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,  # not the checkout: `-c` puts the working directory first on sys.path
    )
    assert str(root / "opt/gpulse/venv") in installed.stdout, "gpulse must come from the new virtualenv"

    # Units, enabled; the user and its directories.
    for unit in ("gpulse-agent.service", "gpulse-collector.service"):
        text = (root / "usr/lib/systemd/system" / unit).read_text()
        assert text == (ROOT / "systemd" / unit).read_text()
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        binary = exec_start.removeprefix("ExecStart=").split()[0]
        assert (root / binary.lstrip("/")).exists(), f"{unit} starts {binary}, which the install did not create"
        assert (root / "etc/systemd/system/multi-user.target.wants" / unit).is_symlink()
    user = next(line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("gpulse:"))
    uid, gid = int(user.split(":")[2]), int(user.split(":")[3])
    for sub in ("var/lib/gpulse/agent", "var/lib/gpulse/collector"):
        assert (root / sub).stat().st_uid == uid

    # Configs: root:gpulse 0640, and valid for the installed command.
    for kind in ("agent", "collector"):
        config = root / "etc/gpulse" / f"{kind}.toml"
        st = config.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640)
        # --no-tls: the config names /etc/gpulse/tls, which lives under the staged root here.
        command = [str(gpulse), "check-config", "--no-tls", str(config)]
        checked = subprocess.run(command, capture_output=True, text=True, env=env)
        assert checked.returncode == 0, checked.stderr

    # Certificates: issued for the names given, keys readable by root and the gpulse group only.
    tls = root / "etc/gpulse/tls"
    agent_cert = x509.load_pem_x509_certificate((tls / "agent.pem").read_bytes())
    assert agent_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gpu-01"
    collector_cert = x509.load_pem_x509_certificate((tls / "collector.pem").read_bytes())
    assert collector_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "col-1"
    assert (tls / "ca.pem").read_bytes() == (ca_dir / "ca.pem").read_bytes()
    for key in ("agent-key.pem", "collector-key.pem"):
        st = (tls / key).stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, 0o640)

    # Running it again upgrades in place and keeps what the operator edited.
    edited = root / "etc/gpulse/agent.toml"
    edited.write_text(edited.read_text().replace("interval = 1.0", "interval = 2.0"))
    again = install(root, "--role", "agent", "--ca-dir", str(ca_dir), "--host", "gpu-01")
    assert again.returncode == 0, again.stderr
    assert "interval = 2.0" in edited.read_text() and "keeping existing" in again.stdout


def test_bad_options_are_refused_with_a_reason(tmp_path: Path) -> None:
    result = install(tmp_path / "root", "--role", "router")
    assert result.returncode != 0 and "--role must be agent, collector or both" in result.stderr
    result = install(tmp_path / "root", "--tls-ca", "ca.pem")
    assert result.returncode != 0 and "go together" in result.stderr


def test_the_installed_agent_connects_with_what_install_wrote(tmp_path: Path) -> None:
    """Certificates issued on the trusted machine, installed from a copy without the CA key: the
    agent as installed (its host_id, targets and files) streams to a real collector."""
    from tests.kit import Pki, metric_value, start_collector, wait_for

    trusted = tmp_path / "trusted-ca"
    pki.init_ca(trusted, days=2)
    pki.issue(trusted, role="agent", name="gpu-07", days=2)
    kit = Pki(trusted)
    collector = start_collector(tmp_path, kit, name="col-1")
    agent = None
    try:
        ca_dir = tmp_path / "ca"
        shutil.copytree(trusted, ca_dir, ignore=shutil.ignore_patterns(pki.CA_KEY, "collectors"))
        root = tmp_path / "root"
        result = install(
            root, "--role", "agent", "--ca-dir", str(ca_dir), "--host", "gpu-07", "--collector", collector.target
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # The staged root stands in for /: its absolute paths are read under it. There is no GPU here,
        # so the sim source replaces nvml; nothing else of what install wrote is changed.
        text = (root / "etc/gpulse/agent.toml").read_text()
        text = text.replace('"/etc/gpulse/', f'"{root}/etc/gpulse/').replace(
            '"/var/lib/gpulse/', f'"{root}/var/lib/gpulse/'
        )
        text = text.replace('source = "nvml"', 'source = "sim"')
        config = tmp_path / "agent-staged.toml"
        config.write_text(text)
        gpulse = root / "opt/gpulse/venv/bin/gpulse"
        env = {**os.environ, "PYTHONPATH": site.getsitepackages()[0]}
        checked = subprocess.run([str(gpulse), "check-config", str(config)], capture_output=True, text=True, env=env)
        assert checked.returncode == 0, checked.stderr
        log = (tmp_path / "agent.log").open("wb")
        agent = subprocess.Popen(
            [str(gpulse), "agent", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        wait_for(
            lambda: metric_value(collector.metrics(), "gpulse_host_up", host="gpu-07") == 1,
            30,
            what="the installed agent streaming",
        )
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(15)
            log.close()
        collector.kill()
