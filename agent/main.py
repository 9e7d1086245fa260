"""Building an agent from its config and running it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

import grpc

from agent.config import AgentConfig
from agent.daemon import Sampler, run_agent
from agent.exposition import serve as serve_metrics
from agent.gpu_watch import default_gpu_watch
from agent.placement import rank
from agent.shipper import Shipper
from agent.sources.gpu import BackendUnavailable, GpuBackend
from agent.sources.host import HostSource
from agent.sources.sim import SimBackend
from agent.sources.sim_faults import INBOX_DIR, FaultInbox
from agent.spool.base import Spool
from agent.spool.disk import DiskSpool, DiskSpoolConfig
from agent.spool.memory import MemorySpool
from agent.status import STATUS_FILE, publish_status
from runtime import logs
from runtime.heap import release_after_start
from runtime.lifecycle import Lifecycle
from runtime.tls import WatchedChannelCredentials, channel_credentials

# How long start-up may take before the heap is released without waiting for a collector.
STARTUP_TIMEOUT_S = 30.0


def make_gpu_backend(config: AgentConfig) -> GpuBackend | None:
    """The one GPU backend, picked once from config."""
    if config.gpu_source == "sim":
        sim = config.sim
        return SimBackend(
            config.host_id,
            count=sim.count,
            profile=sim.profile,
            pattern=sim.pattern,
            seed=sim.seed,
            faults=list(sim.faults),
            fault_source=FaultInbox(config.state_dir / INBOX_DIR, sim.count).take,  # `gpulse sim-fault`
        )
    if config.gpu_source == "replay":
        from agent.sources.replay import ReplayBackend

        replay = config.replay
        assert replay.path is not None  # the config refuses replay without a path
        return ReplayBackend(replay.path, host=replay.host, speed=replay.speed, loop=replay.loop)
    if config.gpu_source == "nvml":
        try:
            from agent.sources.nvml import NvmlBackend
        except ImportError as exc:
            raise BackendUnavailable(f"the nvml source is not available: {exc}") from exc
        nvml = config.nvml
        return NvmlBackend(
            init_wait_s=nvml.init_wait,
            budget_s=min(nvml.read_budget, config.interval * 0.8),
            slow_every=nvml.slow_every,
            xid_window_s=nvml.xid_coalesce,
            kmsg_path=Path(nvml.kernel_log) if nvml.kernel_log else None,
        )
    if config.gpu_source == "none":
        return None
    raise BackendUnavailable(f"GPU source {config.gpu_source!r} is not available in this build")


def make_spool(config: AgentConfig) -> Spool:
    """The spool, picked once from config: on disk under the state dir unless memory is chosen."""
    spool = config.spool
    if spool.kind == "memory":
        return MemorySpool(spool.max_records)
    return DiskSpool(
        config.state_dir / "spool",
        DiskSpoolConfig(
            max_bytes=spool.max_bytes,
            max_age_seconds=spool.max_age,
            fsync=spool.fsync,
            fsync_interval_seconds=spool.fsync_interval,
            segment_bytes=spool.segment_bytes,
        ),
    )


def build_agent(
    config: AgentConfig,
    *,
    gpu: GpuBackend | None = None,
    spool: Spool | None = None,
    credentials: Callable[[], grpc.ChannelCredentials] | None = None,
) -> tuple[Sampler, Shipper]:
    wakeup = asyncio.Event()
    spool = spool or make_spool(config)
    sampler = Sampler(
        host_id=config.host_id,
        gpu=gpu if gpu is not None else make_gpu_backend(config),
        host=HostSource(),
        spool=spool,
        wakeup=wakeup,
        interval=config.interval,
        gpu_source=config.gpu_source,
        gpu_watch=functools.partial(default_gpu_watch, thresholds=config.health, slow_every=config.nvml.slow_every),
    )
    watched = WatchedChannelCredentials(config.tls) if credentials is None else None
    shipper = Shipper(
        spool=spool,
        targets=rank(config.host_id, config.collectors),  # spread hosts over collectors
        credentials=credentials or watched or (lambda: channel_credentials(config.tls)),
        backoff=config.backoff,
        wakeup=wakeup,
        server_name=config.server_name,
        max_in_flight=config.max_in_flight,
        credentials_changed=watched.changed if watched is not None else None,
        rehome_after=config.rehome_after,
        keepalive=config.keepalive,
        keepalive_timeout=config.keepalive_timeout,
        diagnose=watched.diagnose if watched is not None else None,
    )
    return sampler, shipper


async def run(
    config: AgentConfig,
    stop: asyncio.Event,
    *,
    gpu: GpuBackend | None = None,
    lifecycle: Lifecycle | None = None,
    reload_config: Callable[[], AgentConfig] | None = None,
) -> None:
    sampler, shipper = build_agent(config, gpu=gpu)
    stop_metrics = (
        serve_metrics(sampler, config.metrics_listen, config.metrics_web_config) if config.metrics_listen else None
    )
    if lifecycle is not None and reload_config is not None:
        lifecycle.on_reload(lambda: reload_agent(reload_config, shipper))
    status = asyncio.create_task(publish_status(config.state_dir / STATUS_FILE, sampler, shipper))
    # Start-up's freed heap would otherwise stay resident for the agent's whole life: give it back once
    # the first stream is open and the first frames are through.
    release = asyncio.create_task(
        release_after_start(shipper.connected, give_up_after=STARTUP_TIMEOUT_S, settle=2 * config.interval)
    )
    try:
        await run_agent(sampler, shipper, stop, lifecycle)
    finally:
        status.cancel()
        release.cancel()
        await asyncio.gather(status, release, return_exceptions=True)
        if stop_metrics is not None:
            stop_metrics()


async def reload_agent(reload_config: Callable[[], AgentConfig], shipper: Shipper) -> str:
    """SIGHUP: re-read the config; log level and certificate paths apply now, the rest at restart."""
    config = reload_config()  # a ConfigError leaves everything as it was
    logs.configure(config.log_level)
    if isinstance(shipper.credentials, WatchedChannelCredentials):
        # The stream is rebuilt only if the certificate files differ from those in use.
        shipper.credentials.use(config.tls)
    return f"config reloaded (log level {config.log_level})"
