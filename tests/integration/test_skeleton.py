"""A real collector and real agents, over mTLS on 127.0.0.1, in separate processes."""

from __future__ import annotations

from pathlib import Path

from tests.kit import Pki, Service, metric_value, start_agent, start_collector, wait_for


def test_two_agents_stream_gpu_and_host_series(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    for host in ("node-a", "node-b"):
        services.append(start_agent(tmp, test_pki, host, [collector.target]))

    def both_hosts_have_gpu_series() -> str | None:
        text = collector.metrics()
        ok = all(
            metric_value(text, "gpulse_gpu_temperature_celsius", host=h, gpu="1") is not None
            for h in ("node-a", "node-b")
        )
        return text if ok else None

    text = wait_for(both_hosts_have_gpu_series, what="GPU series from both hosts")
    # Per-GPU series carry host, index, uuid and model; per-host series carry the host.
    line = next(ln for ln in text.splitlines() if ln.startswith('gpulse_gpu_power_usage_watts{host="node-a",gpu="0"'))
    assert 'uuid="GPU-' in line and 'model="NVIDIA H100 80GB HBM3"' in line
    assert 100 < float(line.rpartition(" ")[2]) <= 700
    assert metric_value(text, "gpulse_host_memory_total_bytes", host="node-b") > 0
    assert metric_value(text, "gpulse_host_up", host="node-a") == 1
    assert metric_value(text, "gpulse_collector_connected_agents") == 2
    assert metric_value(text, "gpulse_collector_frames_applied_total") >= 2
    # A field the GPU does not support is absent, never 0: the sim H100 has no fan.
    assert "gpulse_gpu_fan_speed_ratio{" not in text


def test_agent_reconnects_when_collector_comes_back(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(tmp, test_pki, "node-r", [collector.target])
    services.append(agent)
    wait_for(lambda: metric_value(collector.metrics(), "gpulse_host_up", host="node-r") == 1, what="first connect")
    collector.stop()
    restarted = collector.start().wait_ready()  # same ports, same config
    services.append(restarted)
    wait_for(lambda: metric_value(restarted.metrics(), "gpulse_host_up", host="node-r") == 1, what="reconnect")
    assert agent.running


def test_second_agent_on_the_same_spool_exits_with_a_clear_error(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    first = start_agent(tmp, test_pki, "node-s", [collector.target])
    services.append(first)
    wait_for(lambda: metric_value(collector.metrics(), "gpulse_host_up", host="node-s") == 1, what="first agent")
    second = start_agent(tmp, test_pki, "node-s", [collector.target])  # same config, same state_dir
    services.append(second)
    assert second.process is not None
    assert second.process.wait(20) == 1
    assert "is in use by another agent" in second.log()
    assert "Traceback" not in second.log()
    assert first.running
