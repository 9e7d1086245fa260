"""The ledger in a running collector: a simulated agent's Slurm job shows up in /metrics (promtool
clean, no job id on any series but the bounded top-idle gauge) and in `gpulse report`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.kit import Pki, Service, metric_value, start_agent, start_collector, wait_for


def test_a_simulated_job_is_metered_exported_and_reported(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki, ledger={"price_per_kwh": 0.2, "price_per_gpu_hour": 2.0})
    services.append(collector)
    services.append(start_agent(tmp, test_pki, "node-l", [collector.target], sim={"count": 2}))
    text = wait_for(
        lambda: (
            (t := collector.metrics())
            and (metric_value(t, "gpulse_ledger_host_allocated_gpu_seconds_total", host="node-l") or 0) >= 4
            and (metric_value(t, "gpulse_ledger_user_energy_joules_total", user="research") or 0) > 0
            and t
        ),
        timeout=40,
        what="allocated GPU-seconds and a user's energy from the agent's job",
    )
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    with_job = {line.split("{")[0] for line in text.splitlines() if "job_id=" in line and not line.startswith("#")}
    assert with_job <= {"gpulse_ledger_top_idle_job_gpu_seconds"}
    assert (metric_value(text, "gpulse_ledger_fleet_energy_joules_total") or 0) > 0

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gpulse.cli", "report", "--url", collector.url(""), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    by_user = json.loads(report("--by", "user", "--format", "json", "--since", "1h").stdout)
    (research,) = [g for g in by_user["groups"] if g["name"] == "research"]
    assert research["gpu_hours"] > 0 and research["energy_kwh"] > 0
    assert research["cost"] > research["energy_kwh"] * 0.2  # GPU-hours are priced too
    by_job = json.loads(report("--format", "json").stdout)
    job = next(g for g in by_job["groups"] if g["name"].startswith("slurm:"))
    assert job["hosts"][0]["host"] == "node-l" and job["busy_source"] == "utilization"
    assert job["peak_power_watts"] >= job["mean_power_watts"] > 0
    table = report("--by", "host")
    assert table.returncode == 0, table.stderr
    assert "node-l" in table.stdout and "waste" in table.stdout and "stranded" in table.stdout
    csv_out = report("--by", "model", "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("model,gpu_hours") and any("H100" in line for line in csv_out[1:])
    bad = report("--from", "yesterday")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
    for query, reason in (
        ("by=gpu", "by must be one of"),
        ("from=soon", "Unix nanoseconds"),
        ("from=9&to=1", "before"),
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(collector.url(f"/api/v1/ledger/report?{query}"), timeout=10)
        assert refused.value.code == 400 and reason in json.loads(refused.value.read())["error"]
