"""`gpulse top --once` against a real collector fed by a real simulated agent."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from gpulse.client import Client
from gpulse.top import run
from tests.api_server import serve
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
    assert "1 hosts (1 up), 2 GPUs" in lines[1]
    assert re.search(r"[1-9]\d* firing", lines[1])
    # The suggested action leads the summary; at 80 columns the rest of the summary may be cut.
    assert any(
        ln.startswith("CRIT GpuLost") and "node-top/1" in ln and re.search(r"\[\w+\] GPU", ln) for ln in lines
    ), lines
    gpu_lines = [ln for ln in lines if re.match(r"node-top +[01] +H100", ln)]
    assert len(gpu_lines) == 2, result.stdout
    assert all(re.search(r"\d+°C +\d+W", ln) for ln in gpu_lines), result.stdout
    assert "\x1b[" not in result.stdout
    # The GPU with the alert comes first.
    assert gpu_lines[0].split()[1] == "1" and "GpuLost" in gpu_lines[0]
    # The fleet API names each GPU's jobs (the sim runs Slurm jobs), and top filters on them.
    fleet = wait_for(
        lambda: (
            (f := json.loads(http_get(collector.url("/api/v1/fleet"))))
            and all(g["jobs"] for g in f["hosts"][0]["gpus"])
            and f
        ),
        what="jobs in the fleet API",
    )
    job = fleet["hosts"][0]["gpus"][0]["jobs"][0]
    assert re.fullmatch(r"slurm \d+", job)
    for pattern, count in (("slurm", 2), ("no-such-job", 0)):
        only = subprocess.run(
            [sys.executable, "-m", "gpulse.cli", "top", "--once", "--url", collector.url(""), "--job", pattern],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert only.returncode == 0, only.stderr
        assert f"GPUs {'1-2' if count else '0'} of {count}" in only.stdout.splitlines()[-1], only.stdout


def fleet_of(hosts: int, gpus: int) -> dict[str, Any]:
    """The /api/v1/fleet shape (collector/http/app.py fleet_summary) for a large simulated fleet."""
    now = time.time()
    return {
        "hosts": [
            {
                "host_id": f"gpu-node-{h:04d}",
                "connected": h != 7,
                "boot_id": "b",
                "last_frame_unix": now - (600 if h == 7 else 1),
                "clock_skew_seconds": 0.0,
                "gpus": [
                    {
                        "index": g,
                        "uuid": f"GPU-{h}-{g}",
                        "model": "NVIDIA H100 80GB HBM3" if h % 2 else "NVIDIA A100-SXM4-80GB",
                        "health": "warn" if (h, g) == (321, 5) else "ok",
                        "lost": False,
                        "jobs": [f"slurm {1000 + h // 4}"],
                        "utilization": 0.9,
                        "temperature": 60.0 + (h * g) % 20,
                        "power_usage": 650.0,
                        "memory_used": 70.5 * 2**30,
                        "sm_clock": 1980.0,
                    }
                    for g in range(gpus)
                ],
            }
            for h in range(hosts)
        ]
    }


def test_top_at_fleet_scale_fits_80_by_24_with_the_trouble_on_top() -> None:
    fleet = fleet_of(500, 8)
    alert = {
        "labels": {"alertname": "GpuXidCritical", "severity": "critical", "host": "gpu-node-0421", "gpu": "6"},
        "state": "firing",
        "starts_at": time.time() - 60,
        "annotations": {"summary": "XID 79 on gpu-node-0421 GPU 6: fallen off the bus"},
    }

    async def fleet_handler(_: web.Request) -> web.Response:
        return web.json_response(fleet)

    async def alerts_handler(_: web.Request) -> web.Response:
        return web.json_response({"alerts": [alert]})

    app = web.Application()
    app.router.add_get("/api/v1/fleet", fleet_handler)
    app.router.add_get("/api/v1/alerts", alerts_handler)

    def top(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "gpulse.cli", "top", "--once", "--url", url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "80", "LINES": "24"},
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) <= 24 and all(len(ln) <= 80 for ln in lines), done.stdout
        return lines

    with serve(app) as url:
        lines = top()
        assert "500 hosts (499 up), 4000 GPUs" in lines[1] and "1 firing" in lines[1]
        assert lines[2].startswith("CRIT GpuXidCritical") and "gpu-node-0421/6" in lines[2]
        table = lines[lines.index(next(ln for ln in lines if ln.startswith("HOST "))) + 1 : -1]
        # The alerted GPU, the down host's GPUs, then the warning, before any healthy GPU.
        assert table[0].split()[:2] == ["gpu-node-0421", "6"]
        assert [ln.split()[0] for ln in table[1:9]] == ["gpu-node-0007"] * 8
        assert table[9].split()[:2] == ["gpu-node-0321", "5"]
        # Every column an operator needs is there at 80 columns: power and memory included.
        assert "650W" in table[10] and "70.5G" in table[10] and not table[10].endswith("…")
        assert lines[-1].startswith(f"GPUs 1-{len(table)} of 4000, page 1/")
        page = top("--page", "3")
        assert page[-1].startswith(f"GPUs {2 * len(table) + 1}-{3 * len(table)} of 4000, page 3/")
        hosts = top("--hosts")
        assert hosts[-1].startswith("hosts 1-") and "of 500" in hosts[-1]
        host_rows = hosts[hosts.index(next(ln for ln in hosts if ln.startswith("HOST "))) + 1 : -1]
        assert host_rows[0].startswith("gpu-node-0421") and host_rows[1].startswith("gpu-node-0007")
        assert "5.2kW" in host_rows[2]
        only = top("--model", "H100", "--job", "slurm 1080", "--health", "ok")
        only_rows = only[only.index(next(ln for ln in only if ln.startswith("HOST "))) + 1 : -1]
        # slurm 1080 runs on hosts 320-323; of those the odd ones are H100; GPU 5 on 321 is not ok.
        assert {ln.split()[0] for ln in only_rows} == {"gpu-node-0321", "gpu-node-0323"}
        assert len(only_rows) == 15 and "of 15" in only[-1]


def test_live_top_pages_with_keys_and_quits(tmp: Path) -> None:
    fleet = fleet_of(50, 8)

    async def fleet_handler(_: web.Request) -> web.Response:
        return web.json_response(fleet)

    async def alerts_handler(_: web.Request) -> web.Response:
        return web.json_response({"alerts": []})

    app = web.Application()
    app.router.add_get("/api/v1/fleet", fleet_handler)
    app.router.add_get("/api/v1/alerts", alerts_handler)
    pressed = iter(["n", "n", "p", "h", "n", "n", "n", "q"])
    out = io.StringIO()
    with serve(app) as url:
        code = run(Client.checked(url), interval=30.0, out=out, size=lambda: (80, 24), keys=lambda _: next(pressed))
    assert code == 0
    frames = [f for f in out.getvalue().split("\x1b[H\x1b[2J") if f]
    footers = [f.splitlines()[-2] for f in frames]  # the last line is the keys' help
    assert [ft.split(";")[0].split(", ")[-1] for ft in footers] == [
        "page 1/22",
        "page 2/22",
        "page 3/22",
        "page 2/22",
        "page 1/3",
        "page 2/3",
        "page 3/3",
        "page 3/3",  # `n` on the last page stays there
    ], footers
    assert footers[4].startswith("hosts 1-")
    assert all(len(f.splitlines()) <= 24 and all(len(ln) <= 80 for ln in f.splitlines()) for f in frames)
    assert frames[0].splitlines()[-1].startswith("keys: n/p page")
