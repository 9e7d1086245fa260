"""A real agent with its optional local /metrics on: scraped directly, promtool-clean, same names."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.kit import Pki, Service, free_port, http_get, metric_value, start_agent, start_collector, wait_for


def test_agent_serves_its_own_metrics(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    port = free_port()
    services.append(
        start_agent(
            tmp,
            test_pki,
            "node-m",
            [collector.target],
            metrics={"listen": f"127.0.0.1:{port}"},
            sim={"count": 2, "faults": [{"kind": "xid", "gpu": 1, "at": 0.2, "xid": 31}]},
        )
    )

    def scraped() -> str | None:
        text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        return text if metric_value(text, "gpulse_gpu_xid_errors_total", host="node-m", gpu="1", xid="31") else None

    text = wait_for(scraped, what="the agent's /metrics with the injected XID")
    assert metric_value(text, "gpulse_gpu_power_usage_watts", host="node-m", gpu="0") > 0
    assert metric_value(text, "gpulse_host_memory_total_bytes", host="node-m") > 0
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_a_bad_listen_address_is_refused_with_the_key(tmp: Path, test_pki: Pki) -> None:
    from agent import config as agent_config
    from runtime.configfile import ConfigError
    from tests.kit import agent_config as write_agent_config

    path = write_agent_config(tmp, test_pki, "node-z", ["127.0.0.1:1"], metrics={"listen": "9411"})
    try:
        agent_config.load(path)
    except ConfigError as exc:
        assert "metrics.listen: expected 'host:port'" in str(exc)
    else:
        raise AssertionError("a listen address without a host was accepted")
