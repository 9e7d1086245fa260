"""What a running agent has loaded: none of the heavy libraries the collector uses.

The agent runs on every GPU host, so whichever source it reads (sim, replay or nvml) it keeps to
the standard library, grpc, protobuf, psutil, structlog and, for the nvml source, pynvml. numpy
alone would add about 11 MiB of resident memory (and, through OpenBLAS, a thread per core on a big
host); cryptography is for the collector's PKI.
Read from /proc/PID/maps of real agent processes after they have streamed to a real collector, so
whatever they import lazily on the way counts too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.record import RecordPlan, record
from tests.kit import ROOT, Collector, Pki, Service, agent_config, metric_value, start_agent, start_collector, wait_for

# A library is loaded when its compiled extension modules are mapped into the process.
HEAVY = {"numpy": "/numpy/", "OpenBLAS": "openblas", "cryptography": "/cryptography/"}


def loaded(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name, marker in HEAVY.items() if marker in maps}


def assert_streams_light(collector: Collector, agent: Service, host: str) -> None:
    """Once the agent's GPU series reach the collector, nothing heavy is mapped into it."""

    def streaming() -> bool:
        return (metric_value(collector.metrics(), "gpulse_gpu_temperature_celsius", host=host, gpu="0") or 0) > 0

    wait_for(streaming, what=f"{host}'s GPU series at the collector")
    assert agent.process is not None and agent.running, agent.log()
    assert loaded(agent.process.pid) == set(), agent.log()


def test_the_sim_agent_streams_without_numpy_or_cryptography(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(tmp, test_pki, "node-light", [collector.target], sim={"count": 8})
    services.append(agent)
    assert_streams_light(collector, agent, "node-light")


def test_the_replay_agent_streams_without_numpy_or_cryptography(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    trace = tmp / "trace.jsonl"
    with trace.open("w") as out:
        record(out, RecordPlan(hosts=1, gpus=8, duration=30.0))
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    replay = {"path": str(trace), "loop": True}
    agent = start_agent(tmp, test_pki, "node-replay", [collector.target], gpu={"source": "replay"}, replay=replay)
    services.append(agent)
    assert_streams_light(collector, agent, "node-replay")


def test_the_nvml_agent_streams_without_numpy_or_cryptography(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    config = agent_config(tmp, test_pki, "node-nvml", [collector.target])
    agent = Service("agent-node-nvml", config, tmp / "agent-node-nvml.log", [])
    services.append(agent)
    agent.process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.nvml_agent", str(config), "8"],
        stdout=agent.log_path.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    assert_streams_light(collector, agent, "node-nvml")
