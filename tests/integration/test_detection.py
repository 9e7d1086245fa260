"""A real collector detects faults injected into a real simulated agent, over mTLS on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

from agent.record import RecordPlan, parse_fault, record
from tests.kit import Collector, Pki, Service, collector_config, metric_value, start_agent, start_collector, wait_for

WARM = """
[[rule]]
name = "SiteGpuWarm"
expr = "temperature > 0"
severity = "info"
"""


def test_collector_detects_an_injected_fault_and_reloads_its_rules(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    site_rules = tmp / "site.toml"
    site_rules.write_text(WARM)
    collector = start_collector(
        tmp,
        test_pki,
        detect={"rules": ["builtin:default.toml", str(site_rules)], "interval": 0.5, "reload_check_interval": 0.2},
    )
    services.append(collector)
    agent = start_agent(
        tmp,
        test_pki,
        "node-d",
        [collector.target],
        sim={
            "count": 4,
            "faults": [{"kind": "dbe", "gpu": 1, "at": 2.0}, {"kind": "remap_failure", "gpu": 3, "at": 2.0}],
        },
    )
    services.append(agent)

    def alert(name: str, gpu: str) -> float | None:
        return metric_value(
            collector.metrics(), "gpulse_detect_alert", alertname=name, host="node-d", gpu=gpu, alertstate="firing"
        )

    # The XID 48 the DBE raises is a hard fault: it fires on the event, and the counters follow.
    wait_for(lambda: alert("GpuXidMemoryUncorrectable", "1") == 1, what="DBE XID alert")
    wait_for(lambda: alert("GpuVolatileDbe", "1") == 1, what="DBE counter alert")
    wait_for(lambda: alert("GpuRowRemapFailure", "3") == 1, what="remap failure alert")
    text = collector.metrics()
    assert metric_value(text, "gpulse_detect_alert", alertname="GpuVolatileDbe", gpu="0") is None  # healthy GPUs
    assert metric_value(text, "gpulse_detect_immediate_evaluations_total") >= 1
    assert metric_value(text, "gpulse_detect_peer_score", host="node-d", gpu="2", signal="sm_clock") is not None
    assert metric_value(text, "gpulse_detect_alert", alertname="SiteGpuWarm", gpu="0", alertstate="firing") == 1

    # Edit the site rules in place: the running collector picks them up without a restart.
    site_rules.write_text(WARM.replace("SiteGpuWarm", "SiteGpuVeryWarm").replace("> 0", "> 1"))
    os.utime(site_rules, (1, 1))
    wait_for(
        lambda: metric_value(collector.metrics(), "gpulse_detect_alert", alertname="SiteGpuVeryWarm", gpu="0") == 1,
        what="reloaded rule firing",
    )
    assert metric_value(collector.metrics(), "gpulse_detect_alert", alertname="SiteGpuWarm", gpu="0") is None
    # A broken edit is refused and counted; the running rules stay.
    site_rules.write_text(WARM.replace("temperature", "temprature"))
    os.utime(site_rules, (2, 2))
    wait_for(
        lambda: metric_value(collector.metrics(), "gpulse_detect_rule_reloads_total", result="failure") == 1,
        what="refused reload",
    )
    assert "rule 'SiteGpuWarm': unknown signal 'temprature'" in collector.log()
    assert metric_value(collector.metrics(), "gpulse_detect_alert", alertname="SiteGpuVeryWarm", gpu="0") == 1
    assert collector.running and agent.running


def test_collector_refuses_to_start_with_a_bad_rule_file(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    bad = tmp / "bad.toml"
    bad.write_text('[[rule]]\nname = "Oops"\nexpr = "rate(temperature) > 1"\nseverity = "warning"\n')
    config, grpc_port, http_port = collector_config(tmp, test_pki, detect={"rules": [str(bad)]})
    collector = Collector("collector", config, tmp / "c.log", ["collector"], grpc_port=grpc_port, http_port=http_port)
    services.append(collector.start())
    assert collector.process is not None
    assert collector.process.wait(20) == 2
    assert "config error: " in collector.log() and "bad.toml: rule 'Oops': expected '['" in collector.log()


def test_a_replayed_trace_is_detected_as_if_live(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    trace = tmp / "trace.jsonl"
    with trace.open("w") as out:
        record(
            out, RecordPlan(hosts=2, gpus=4, duration=30.0, faults=(parse_fault("kind=xid,host=1,gpu=2,at=2,xid=79"),))
        )
    collector = start_collector(tmp, test_pki, detect={"interval": 0.5})
    services.append(collector)
    agent = start_agent(
        tmp,
        test_pki,
        "node-r",
        [collector.target],
        gpu={"source": "replay"},
        replay={"path": str(trace), "host": "sim-001"},
    )
    services.append(agent)
    wait_for(
        lambda: (
            metric_value(
                collector.metrics(), "gpulse_detect_alert", alertname="GpuXidRebootRequired", host="node-r", gpu="2"
            )
            == 1
        ),
        what="the trace's XID 79 alert",
    )
    text = collector.metrics()
    # The replayed GPUs are the trace's, under the agent's own host id.
    assert metric_value(text, "gpulse_gpu_temperature_celsius", host="node-r", gpu="3") > 20
    assert metric_value(text, "gpulse_detect_alert", alertname="GpuXidRebootRequired", gpu="1") is None
