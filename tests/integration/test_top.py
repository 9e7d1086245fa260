"""`gpulse top --once` against a real collector fed by a real simulated agent."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.kit import ROOT, Pki, Service, http_get, metric_value, start_agent, start_collector, wait_for


def test_top_shows_the_fleet_from_the_collectors_api(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    services.append(start_agent(tmp, test_pki, "node-top", [collector.target]))
    wait_for(
        lambda: metric_value(collector.metrics(), "gpulse_gpu_temperature_celsius", host="node-top", gpu="1"),
        what="GPU values from the agent",
    )
    # An alert from an outside generator (as Prometheus rules would send), through the alert API.
    alert = {
        "labels": {"alertname": "GpuLost", "severity": "critical", "host": "node-top", "gpu": "1"},
        "annotations": {"summary": "GPU 1 on node-top is lost"},
        "starts_at": time.time(),
    }
    request = urllib.request.Request(
        collector.url("/api/v1/alerts"), json.dumps([alert]).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    wait_for(lambda: '"firing"' in http_get(collector.url("/api/v1/alerts")), what="the alert firing")
    result = subprocess.run(
        [sys.executable, "-m", "gpulse.cli", "top", "--once", "--url", collector.url("")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "1 hosts (1 up), 2 GPUs" in lines[0]
    assert any(ln.startswith("node-top") and "up, last frame" in ln for ln in lines)
    gpu_lines = [ln for ln in lines if re.match(r"  [01] +H100", ln)]
    assert len(gpu_lines) == 2, result.stdout
    assert all(re.search(r"\d+°C +\d+W", ln) for ln in gpu_lines), result.stdout
    assert "\x1b[" not in result.stdout
    assert re.search(r"[1-9]\d* firing", lines[0])
    assert "GpuLost" in gpu_lines[1]
    listed = lines[lines.index("FIRING ALERTS") + 1 :]
    assert any("critical" in ln and "node-top gpu 1" in ln and "GPU 1 on node-top is lost" in ln for ln in listed)
