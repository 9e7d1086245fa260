"""The collector's configuration: a TOML file, read into a typed dataclass, refused with a clear message."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from collector.actions.config import RemediationConfig
from collector.actions.config import parse as parse_remediation
from collector.alerting.config import AlertingConfig
from collector.alerting.config import parse as parse_alerting
from collector.detect.config import DetectConfig, parse_detect
from collector.exporters.exposition.fleet import FORMATS
from collector.exporters.remote_write import RemoteWriteConfig
from collector.exporters.remote_write import parse_config as parse_remote_write
from collector.http.config import WebSettings, parse_web
from collector.ingest.server import IngestLimits
from collector.ledger.config import LedgerConfig, parse_ledger
from runtime.configfile import ConfigError, Section, load_toml
from runtime.tls import TlsFiles


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    tls: TlsFiles
    collector_id: str = field(default_factory=socket.gethostname)
    listen: str = "0.0.0.0:7443"
    http_listen: str = "127.0.0.1:9410"
    state_dir: Path = Path("/var/lib/gpulse/collector")
    stale_after: float = 120.0
    limits: IngestLimits = field(default_factory=IngestLimits)
    crl: Path | None = None  # revocation list from `gpulse pki revoke`, re-read when it changes
    log_level: str = "info"
    exposition_formats: tuple[str, ...] = ("gpulse",)  # add "dcgm" for dcgm-exporter names and units
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)  # [detect]: rule files, evaluation interval
    remote_write: RemoteWriteConfig | None = None  # [remote_write]: push every frame to a receiver
    remediation: RemediationConfig = field(default_factory=RemediationConfig)  # [remediation]: off by default
    ledger: LedgerConfig = field(default_factory=LedgerConfig)  # [ledger]: jobs, energy, idle GPU-hours

    @property
    def ledger_path(self) -> Path:
        """The job ledger's SQLite file (state backup includes it): ``[ledger] path``, under state_dir if relative."""
        return self.state_dir / self.ledger.path

    web: WebSettings = field(default_factory=WebSettings)  # [web]: TLS, users and roles of the HTTP port


def _host_port(section: Section, key: str, default: str) -> str:
    value = section.get(key, str, default)
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise section.error(key, f"expected 'host:port', got {value!r}")
    return value


def _exposition_formats(section: Section) -> tuple[str, ...]:
    formats = section.get("formats", list, ["gpulse"])
    if not formats or not all(isinstance(f, str) and f in FORMATS for f in formats):
        raise section.error("formats", f"must be a non-empty list of {', '.join(map(repr, FORMATS))}; got {formats!r}")
    section.finish()
    return tuple(dict.fromkeys(formats))


def _at_least(section: Section, key: str, default: int, minimum: int) -> int:
    value = section.get(key, int, default)
    if value < minimum:
        raise section.error(key, f"must be at least {minimum}, got {value}")
    return value


def parse(path: Path, data: dict[str, object]) -> CollectorConfig:
    root = Section(path, "", data)
    tls = root.section("tls")
    tls_files = TlsFiles(tls.require("ca", Path), tls.require("cert", Path), tls.require("key", Path))
    crl = tls.get("crl", Path, Path()) if "crl" in tls.data else None
    tls.finish()
    limits = root.section("limits")
    ingest = IngestLimits(
        max_future_seconds=limits.positive("max_future_seconds", 300.0),
        max_age_seconds=limits.positive("max_age_seconds", 7 * 86400.0),
        max_gpus_per_host=limits.get("max_gpus_per_host", int, 64),
        max_message_bytes=_at_least(limits, "max_message_bytes", 4 * 1024 * 1024, 64 * 1024),
        max_hosts=_at_least(limits, "max_hosts", 10_000, 1),
        max_series_per_host=_at_least(limits, "max_series_per_host", 20_000, 1),
        max_boots_per_host=_at_least(limits, "max_boots_per_host", 16, 1),
        records_per_second=limits.positive("records_per_second", 200.0),
        records_burst=limits.positive("records_burst", 20_000.0),
    )
    limits.finish()
    log = root.section("log")
    level = log.choice("level", ("debug", "info", "warning", "error"), "info")
    log.finish()
    formats = _exposition_formats(root.section("exposition"))
    http_listen = _host_port(root, "http_listen", "127.0.0.1:9410")
    config = CollectorConfig(
        tls=tls_files,
        crl=crl,
        collector_id=root.get("collector_id", str, "") or socket.gethostname(),
        listen=_host_port(root, "listen", "0.0.0.0:7443"),
        http_listen=http_listen,
        state_dir=root.get("state_dir", Path, Path("/var/lib/gpulse/collector")),
        stale_after=root.positive("stale_after", 120.0),
        limits=ingest,
        log_level=level,
        exposition_formats=formats,
        alerting=parse_alerting(root.section("alerting")),
        detect=parse_detect(root.section("detect")),
        remote_write=parse_remote_write(root.section("remote_write")),
        remediation=parse_remediation(root.section("remediation")),
        ledger=parse_ledger(root.section("ledger")),
        web=parse_web(root.section("web"), http_listen),
    )
    root.finish()
    return config


def load(path: Path) -> CollectorConfig:
    """Read and check a collector config file; raises ConfigError naming the file, key and problem."""
    return parse(path, load_toml(path))


__all__ = ["CollectorConfig", "ConfigError", "load", "parse"]
