"""Tools that say what they did: sim-fault's outcome, and the agent's first connection in its log."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.kit import ROOT, Pki, Service, collector_config, start_agent, start_collector, wait_for


def sim_fault(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpulse.cli", "sim-fault", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_agent_logs_its_first_connection_and_sim_fault_reports_the_outcome(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(tmp, test_pki, "node-t", [collector.target])
    services.append(agent)
    # The very first stream is logged, although no error came before it.
    wait_for(lambda: "collector stream open" in agent.log(), what="the first connection in the agent's log")
    assert "collector stream failed" not in agent.log()
    state_dir = str(tmp / "agent-node-t")
    refused = sim_fault("dbe", "--gpu", "9", "--state-dir", state_dir)
    assert refused.returncode == 2
    assert "rejected" in refused.stderr and "gpu" in refused.stderr and "between 0 and 1" in refused.stderr
    applied = sim_fault("dbe", "--gpu", "1", "--state-dir", state_dir)
    assert applied.returncode == 0, applied.stderr
    assert "applied by the agent" in applied.stdout


def test_sim_fault_with_no_agent_behind_the_state_dir_fails_and_withdraws_it(tmp: Path) -> None:
    missing = sim_fault("dbe", "--state-dir", str(tmp / "nowhere"))
    assert missing.returncode == 1 and "no such directory" in missing.stderr
    idle = tmp / "idle-agent-dir"
    idle.mkdir()
    nobody = sim_fault("dbe", "--state-dir", str(idle), "--wait", "0.5")
    assert nobody.returncode == 1
    assert "no agent took the fault within 0.5s" in nobody.stderr
    # Withdrawn, so an agent started later does not apply a stale fault.
    assert not list((idle / "sim-faults").glob("*.toml"))
    assert list((idle / "sim-faults").glob("*.withdrawn"))


def test_demo_on_a_busy_port_prints_one_line_and_exits_non_zero(tmp: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gpulse.cli", "demo", "--http-port", str(port), "--state-dir", str(tmp / "demo")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode != 0
    # One line: no grpc Server.__del__ traceback, no aiohttp "Unclosed client session".
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"gpulse demo: cannot listen for HTTP on 127.0.0.1:{port}: ")
    assert "ddress already in use" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "Unclosed" not in done.stdout + done.stderr


def test_collector_on_a_busy_http_port_exits_with_one_line(tmp: Path, test_pki: Pki) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config, _, _ = collector_config(tmp, test_pki, http_port=busy.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "gpulse.cli", "collector", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "cannot listen for HTTP" in done.stderr, done.stderr
    assert "ddress already in use" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "Unclosed" not in done.stdout + done.stderr
