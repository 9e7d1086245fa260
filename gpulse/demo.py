"""`gpulse demo`: a collector and several simulated agents in one process, on a throwaway PKI."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.config import AgentConfig, SimConfig
from agent.daemon import run_agent
from agent.main import build_agent, make_gpu_backend
from agent.sources.gpu import BackendUnavailable, GpuBackend
from agent.sources.sim import Fault, FaultKind, LoadPattern, SimBackend
from collector.actions.config import BreakerConfig, RemediationConfig
from collector.alerting.config import AlertingConfig
from collector.alerting.routing import Route, Timing
from collector.app import start_collector
from collector.config import CollectorConfig
from collector.detect.config import DetectConfig
from collector.trust import pki
from runtime.tls import TlsFiles

log = structlog.get_logger("gpulse.demo")


@dataclass(frozen=True, slots=True)
class DemoHost:
    host_id: str
    profile: str
    pattern: LoadPattern
    gpus: int


DEMO_HOSTS = (
    DemoHost("sim-h100-01", "H100", LoadPattern.TRAINING, 8),
    DemoHost("sim-h100-02", "H100", LoadPattern.TRAINING, 8),
    DemoHost("sim-a100-01", "A100", LoadPattern.MIXED, 8),
    DemoHost("sim-a100-02", "A100", LoadPattern.INFERENCE, 4),
)


@dataclass(frozen=True, slots=True)
class DemoFault:
    """The fault the demo injects, so the log receiver shows a page and, once it clears, its resolve."""

    after: float = 60.0  # seconds after start; 0 or less: no fault
    duration: float = 45.0
    host_index: int = 0
    gpu: int = 3
    kind: FaultKind = FaultKind.POWER_BRAKE
    severity: float = 0.8
    # With it, an XID that calls for a reboot, so remediation (dry-run) shows the node it would drain.
    xid: int = 79


# Dry-run: the log and `gpulse top` show "would drain" without touching anything. Half the demo's
# hosts may be drained before the breaker trips, and the node is resumed 30 s after it is healthy.
DEMO_REMEDIATION = RemediationConfig(
    mode="dry-run", hold=30.0, cooldown=60.0, tick=1.0, breaker=BreakerConfig(max_fraction=0.5)
)

# Short timers, so the demo shows the page and its resolve within a few minutes.
DEMO_ALERTING = AlertingConfig(route=Route("log", timing=Timing(group_wait=1.0, group_interval=5.0)))


def default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "gpulse" / "demo"


def local_nvml_backend() -> GpuBackend | None:
    """Real NVML when this machine has NVIDIA GPUs; None otherwise."""
    try:
        from agent.sources.nvml import NvmlBackend

        backend = NvmlBackend()
        backend.open()
    except (ImportError, BackendUnavailable):
        return None
    return backend


async def run_demo(
    stop: asyncio.Event,
    *,
    state_dir: Path,
    http_port: int = 9410,
    hosts: int = 4,
    fault: DemoFault | None = None,
    rules: tuple[str, ...] = (),
) -> None:
    """Make a PKI, start a collector and agents, and run until ``stop`` is set; leaves nothing running."""
    fault = fault or DemoFault()
    pki_dir = state_dir / "pki"
    shutil.rmtree(pki_dir, ignore_errors=True)
    pki.init_ca(pki_dir, name="gpulse demo CA", days=2)
    collector_cert = pki.issue(pki_dir, role="collector", name="demo-collector", days=2)
    ca = pki_dir / pki.CA_CERT
    collector_config = CollectorConfig(
        tls=TlsFiles(ca, collector_cert.cert, collector_cert.key),
        collector_id="demo-collector",
        listen="127.0.0.1:0",
        http_listen=f"127.0.0.1:{http_port}",
        state_dir=state_dir / "collector",
        stale_after=30.0,
        alerting=DEMO_ALERTING,
        detect=DetectConfig(rules=rules) if rules else DetectConfig(),
        remediation=DEMO_REMEDIATION,
    )
    collector = await start_collector(collector_config)
    target = f"127.0.0.1:{collector.grpc_port}"
    tasks: list[asyncio.Task[None]] = []
    agent_stop = asyncio.Event()
    plan: list[tuple[str, AgentConfig, GpuBackend | None]] = []
    nvml = local_nvml_backend()
    faulty: SimBackend | None = None
    for i, spec in enumerate(DEMO_HOSTS[: max(0, hosts)]):
        config = _agent_config(pki_dir, spec.host_id, target, "sim", spec)
        backend = make_gpu_backend(config)
        if i == fault.host_index and isinstance(backend, SimBackend):
            faulty = backend
        plan.append((spec.host_id, config, backend))
    if nvml is not None:
        import socket

        local = socket.gethostname()
        plan.append((local, _agent_config(pki_dir, local, target, "nvml", None), nvml))
    for host_id, config, backend in plan:
        sampler, shipper = build_agent(config, gpu=backend)
        tasks.append(asyncio.create_task(run_agent(sampler, shipper, agent_stop), name=f"agent-{host_id}"))
    print(
        f"gpulse demo: collector on {target}, {len(plan)} agents "
        f"({'real NVML GPUs found' if nvml else 'simulated GPUs'}).\n"
        f"  metrics: http://127.0.0.1:{collector.http_port}/metrics\n"
        f"  fleet:   http://127.0.0.1:{collector.http_port}/api/v1/fleet\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    injector = None
    if faulty is not None and fault.after > 0:
        print(
            f"In {fault.after:.0f} s a {fault.kind.value} fault goes into {faulty.host_id} GPU {fault.gpu}: "
            "watch for ALERT FIRING, then ALERT RESOLVED once it clears"
            + (
                f"; with it XID {fault.xid}, and remediation (dry-run) says it would drain the node."
                if fault.xid
                else "."
            ),
            flush=True,
        )
        injector = asyncio.create_task(_inject_later(faulty, fault), name="demo-fault")
    try:
        await stop.wait()
    finally:
        if injector is not None:
            injector.cancel()
        agent_stop.set()
        await asyncio.gather(*tasks, *([injector] if injector else []), return_exceptions=True)
        await collector.stop(grace=1.0)
        log.info("demo stopped")


async def _inject_later(backend: SimBackend, fault: DemoFault) -> None:
    await asyncio.sleep(fault.after)
    backend.inject_now(Fault(fault.kind, fault.gpu, duration=fault.duration, severity=fault.severity))
    if fault.xid:
        backend.inject_now(Fault(FaultKind.XID, fault.gpu, duration=fault.duration, xid=fault.xid))
    print(
        f"gpulse demo: injected a {fault.kind.value} fault into {backend.host_id} GPU {fault.gpu} "
        f"for {fault.duration:.0f} s; the log receiver shows the alert, and its resolve once it clears.",
        flush=True,
    )


def _agent_config(pki_dir: Path, host_id: str, target: str, source: str, spec: DemoHost | None) -> AgentConfig:
    issued = pki.issue(pki_dir, role="agent", name=host_id, days=2)
    sim = SimConfig(count=spec.gpus, profile=spec.profile, pattern=spec.pattern) if spec else SimConfig()
    return AgentConfig(
        host_id=host_id,
        collectors=(target,),
        tls=TlsFiles(pki_dir / pki.CA_CERT, issued.cert, issued.key),
        state_dir=pki_dir.parent / "agents" / host_id,
        interval=1.0,
        gpu_source=source,
        server_name="demo-collector",
        sim=sim,
    )
