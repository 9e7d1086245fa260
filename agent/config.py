"""The agent's configuration: a TOML file, read into a typed dataclass, refused with a clear message."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from agent.health import HealthThresholds
from agent.sources.replay import ReplayConfig, parse_replay
from agent.sources.sim import PROFILES, Fault, FaultKind, LoadPattern
from runtime.configfile import ConfigError, Section, load_toml
from runtime.tls import TlsFiles
from runtime.transport import CLIENT_KEEPALIVE_MS, CLIENT_KEEPALIVE_TIMEOUT_MS, SERVER_MIN_PING_INTERVAL_MS

GPU_SOURCES = ("nvml", "sim", "replay", "none")


@dataclass(frozen=True, slots=True)
class SimConfig:
    count: int = 8
    profile: str = "H100"
    pattern: LoadPattern = LoadPattern.TRAINING
    seed: int = 0
    faults: tuple[Fault, ...] = ()


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    # Capped low: a collector back from a restart must see every agent again within 3 s (p99).
    initial: float = 0.25
    maximum: float = 1.5
    multiplier: float = 2.0
    jitter: float = 0.2  # +/- share of each delay, so a fleet does not reconnect in lockstep


SPOOL_KINDS = ("disk", "memory")


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """Where unacknowledged records wait: on disk under state_dir unless memory is chosen explicitly."""

    kind: str = "disk"
    max_bytes: int = 1024 * 1024 * 1024
    max_age: float = 6 * 86400.0  # below the collector's 7-day limit on frame age; 0 = no age limit
    fsync: str = "interval"  # always | interval | never
    fsync_interval: float = 1.0  # at most this much data is at risk on power loss
    segment_bytes: int = 8 * 1024 * 1024
    max_records: int = 3600  # memory spool only


@dataclass(frozen=True, slots=True)
class NvmlConfig:
    """The nvml source's knobs, under [gpu]."""

    init_wait: float = 0.0  # seconds to keep retrying NVML init at start; 0: fail at once
    read_budget: float = 0.5  # seconds one GPU's reads may take per tick before its row is sent empty
    slow_every: int = 10  # ticks between reads of processes and per-link NVLink state
    xid_coalesce: float = 10.0  # seconds an XID storm is counted before one event carries the count
    kernel_log: str = "/dev/kmsg"  # XIDs from here where NVML events are unsupported; "" to disable


@dataclass(frozen=True, slots=True)
class AgentConfig:
    host_id: str
    collectors: tuple[str, ...]
    tls: TlsFiles
    state_dir: Path = Path("/var/lib/gpulse/agent")
    interval: float = 1.0
    gpu_source: str = "nvml"
    server_name: str = ""  # TLS name to expect from collectors when it differs from the target host
    sim: SimConfig = field(default_factory=SimConfig)
    nvml: NvmlConfig = field(default_factory=NvmlConfig)
    health: HealthThresholds = field(default_factory=HealthThresholds)
    replay: ReplayConfig = field(default_factory=ReplayConfig)  # [replay]: the trace gpu.source = "replay" plays
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    log_level: str = "info"
    max_in_flight: int = 512  # unacknowledged records on the wire before the shipper waits
    rehome_after: float = 300.0  # seconds on a failover collector before trying the preferred one again; 0: stay
    keepalive: float = CLIENT_KEEPALIVE_MS / 1000  # seconds between pings on an idle stream
    keepalive_timeout: float = CLIENT_KEEPALIVE_TIMEOUT_MS / 1000  # unanswered ping: the link is gone
    metrics_listen: str = ""  # [metrics] listen: 'host:port' of an optional local /metrics; "" is off
    metrics_web_config: Path | None = None  # [metrics] web_config_file: exporter-toolkit TLS and users
    spool: SpoolConfig = field(default_factory=SpoolConfig)


def _sim(section: Section) -> SimConfig:
    profile = section.choice("profile", tuple(PROFILES), "H100")
    pattern = LoadPattern(section.choice("pattern", tuple(p.value for p in LoadPattern), "training"))
    count = section.get("count", int, 8)
    if not 1 <= count <= 64:
        raise section.error("count", f"must be between 1 and 64, got {count}")
    faults = []
    for f in section.sections("faults"):
        kind = FaultKind(f.choice("kind", tuple(k.value for k in FaultKind), "xid"))
        gpu = f.get("gpu", int, 0)
        if not 0 <= gpu < count:
            raise f.error("gpu", f"must be between 0 and {count - 1}, got {gpu}")
        severity = f.get("severity", float, 0.5)
        if not 0.0 <= severity <= 1.0:
            raise f.error("severity", f"must be between 0 and 1, got {severity}")
        faults.append(
            Fault(
                kind,
                gpu,
                at=f.get("at", float, 0.0),
                duration=f.get("duration", float, 0.0),
                severity=severity,
                xid=f.get("xid", int, 0),
                count=f.get("count", int, 1),
            )
        )
        f.finish()
    config = SimConfig(count, profile, pattern, section.get("seed", int, 0), tuple(faults))
    section.finish()
    return config


def _nvml(section: Section) -> NvmlConfig:
    config = NvmlConfig(
        init_wait=section.get("init_wait", float, 0.0),
        read_budget=section.positive("read_budget", 0.5),
        slow_every=section.get("slow_every", int, 10),
        xid_coalesce=section.get("xid_coalesce", float, 10.0),
        kernel_log=section.get("kernel_log", str, "/dev/kmsg"),
    )
    if config.init_wait < 0:
        raise section.error("init_wait", f"must be 0 (fail at once) or more seconds, got {config.init_wait}")
    if config.slow_every < 1:
        raise section.error("slow_every", f"must be at least 1 tick, got {config.slow_every}")
    if config.xid_coalesce < 0:
        raise section.error("xid_coalesce", f"must be 0 (send each) or more seconds, got {config.xid_coalesce}")
    return config


def _health(section: Section) -> HealthThresholds:
    d = HealthThresholds()
    config = HealthThresholds(
        window_s=section.positive("window", d.window_s),
        pcie_replays=section.get("pcie_replays", float, d.pcie_replays),
        nvlink_crc_errors=section.get("nvlink_crc_errors", float, d.nvlink_crc_errors),
        retired_pages_total=section.positive("retired_pages", d.retired_pages_total),
        remapped_uncorrectable=section.positive("remapped_uncorrectable", d.remapped_uncorrectable),
        xid_hold_s=section.get("xid_hold", float, d.xid_hold_s),
        busy_utilization=section.get("busy_utilization", float, d.busy_utilization),
    )
    for key, value in (
        ("pcie_replays", config.pcie_replays),
        ("nvlink_crc_errors", config.nvlink_crc_errors),
        ("xid_hold", config.xid_hold_s),
    ):
        if value < 0:
            raise section.error(key, f"must be 0 or more, got {value}")
    if not 0.0 <= config.busy_utilization <= 1.0:
        raise section.error("busy_utilization", f"must be between 0 and 1, got {config.busy_utilization}")
    section.finish()
    return config


def _backoff(section: Section) -> BackoffConfig:
    config = BackoffConfig(
        initial=section.positive("initial", 0.25),
        maximum=section.positive("max", 1.5),
        multiplier=section.positive("multiplier", 2.0),
        jitter=section.get("jitter", float, 0.2),
    )
    if not 0.0 <= config.jitter < 1.0:
        raise section.error("jitter", f"must be in [0, 1), got {config.jitter}")
    section.finish()
    return config


def _spool(section: Section) -> SpoolConfig:
    config = SpoolConfig(
        kind=section.choice("kind", SPOOL_KINDS, "disk"),
        max_bytes=section.get("max_bytes", int, 1024 * 1024 * 1024),
        max_age=section.get("max_age", float, 6 * 86400.0),
        fsync=section.choice("fsync", ("always", "interval", "never"), "interval"),
        fsync_interval=section.positive("fsync_interval", 1.0),
        segment_bytes=section.get("segment_bytes", int, 8 * 1024 * 1024),
        max_records=section.get("max_records", int, 3600),
    )
    if config.max_bytes < 64 * 1024:
        raise section.error("max_bytes", f"must be at least 65536 (64 KiB), got {config.max_bytes}")
    if config.max_age < 0:
        raise section.error("max_age", f"must be 0 (no limit) or more seconds, got {config.max_age}")
    if config.segment_bytes < 4096:
        raise section.error("segment_bytes", f"must be at least 4096, got {config.segment_bytes}")
    if config.max_records < 2:
        raise section.error("max_records", f"must be at least 2, got {config.max_records}")
    section.finish()
    return config


def _metrics_listen(section: Section) -> tuple[str, Path | None]:
    listen = section.get("listen", str, "")
    web = section.get("web_config_file", Path, Path()) if "web_config_file" in section.data else None
    if web is not None:
        from runtime.webconfig import load

        load(web)  # refused here, naming the file and key, rather than at the first scrape
    if listen:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise section.error("listen", f"expected 'host:port' (e.g. '127.0.0.1:9411'), got {listen!r}")
    section.finish()
    return listen, web


def parse(path: Path, data: dict[str, object]) -> AgentConfig:
    root = Section(path, "", data)
    metrics_listen, metrics_web = _metrics_listen(root.section("metrics"))
    collector = root.section("collector")
    targets = collector.require("targets", list)
    if not targets or not all(isinstance(t, str) and ":" in t for t in targets):
        raise collector.error("targets", "must be a non-empty list of 'host:port' strings")
    server_name = collector.get("server_name", str, "")
    rehome_after = collector.get("rehome_after", float, 300.0)
    if rehome_after < 0:
        raise collector.error("rehome_after", f"must be 0 (never) or a number of seconds, got {rehome_after}")
    keepalive = collector.get("keepalive", float, CLIENT_KEEPALIVE_MS / 1000)
    if keepalive * 1000 < SERVER_MIN_PING_INTERVAL_MS:
        # Pinged more often than that, a collector answers GOAWAY too_many_pings and drops the stream.
        raise collector.error(
            "keepalive",
            f"must be at least {SERVER_MIN_PING_INTERVAL_MS / 1000:g} s, the most often collectors accept pings;"
            f" got {keepalive:g}",
        )
    keepalive_timeout = collector.positive("keepalive_timeout", CLIENT_KEEPALIVE_TIMEOUT_MS / 1000)
    collector.finish()
    tls = root.section("tls")
    tls_files = TlsFiles(tls.require("ca", Path), tls.require("cert", Path), tls.require("key", Path))
    tls.finish()
    gpu = root.section("gpu")
    source = gpu.choice("source", GPU_SOURCES, "nvml")
    nvml = _nvml(gpu)
    gpu.finish()
    log = root.section("log")
    level = log.choice("level", ("debug", "info", "warning", "error"), "info")
    log.finish()
    config = AgentConfig(
        host_id=root.get("host_id", str, "") or socket.gethostname(),
        collectors=tuple(targets),
        tls=tls_files,
        state_dir=root.get("state_dir", Path, Path("/var/lib/gpulse/agent")),
        interval=root.positive("interval", 1.0),
        gpu_source=source,
        server_name=server_name,
        sim=_sim(root.section("sim")),
        nvml=nvml,
        health=_health(root.section("health")),
        replay=parse_replay(root.section("replay"), required=source == "replay"),
        backoff=_backoff(root.section("backoff")),
        log_level=level,
        max_in_flight=root.get("max_in_flight", int, 512),
        rehome_after=rehome_after,
        keepalive=keepalive,
        keepalive_timeout=keepalive_timeout,
        metrics_listen=metrics_listen,
        metrics_web_config=metrics_web,
        spool=_spool(root.section("spool")),
    )
    root.finish()
    return config


def load(path: Path) -> AgentConfig:
    """Read and check an agent config file; raises ConfigError naming the file, key and problem."""
    return parse(path, load_toml(path))


__all__ = ["AgentConfig", "BackoffConfig", "ConfigError", "SimConfig", "SpoolConfig", "load", "parse"]
