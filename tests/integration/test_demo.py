"""`gpulse demo`: one command, no config, runs until Ctrl-C and leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from tests.kit import ROOT, free_port, http_get, metric_value, wait_for


def test_demo_serves_metrics_and_stops_cleanly_on_ctrl_c(tmp: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpulse.cli", "demo", "--state-dir", str(tmp), "--http-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = b""
        while b"Ctrl-C" not in banner:
            line = process.stdout.readline()
            assert line, f"demo exited early: {banner.decode()}"
            banner += line
        assert f"http://127.0.0.1:{port}/metrics".encode() in banner

        def all_hosts_reporting() -> str | None:
            text = http_get(f"http://127.0.0.1:{port}/metrics")
            return text if metric_value(text, "gpulse_collector_connected_agents") == 4 else None

        text = wait_for(all_hosts_reporting, what="four simulated agents")
        for host in ("sim-h100-01", "sim-h100-02", "sim-a100-01", "sim-a100-02"):
            wait_for(
                lambda h=host: metric_value(
                    http_get(f"http://127.0.0.1:{port}/metrics"), "gpulse_gpu_power_usage_watts", host=h
                ),
                what=f"GPU series of {host}",
            )
        children = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        assert not [c for c in children if c.is_running()]
        assert (tmp / "pki" / "ca.pem").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert text
