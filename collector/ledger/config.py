"""The collector's ``[ledger]`` table: where the ledger lives, what counts as idle, and the prices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.configfile import Section


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    enabled: bool = True
    # The ledger's SQLite file; relative to the collector's state_dir (CollectorConfig.ledger_path).
    path: Path = Path("ledger.sqlite")
    interval: float = 1.0  # seconds between metering passes over the store
    flush_interval: float = 10.0  # seconds between writes to the file
    idle_threshold: float = 0.05  # activity (SM activity or utilisation, 0..1) below this is low
    idle_after: float = 300.0  # a GPU low for longer than this is idle, for the whole low stretch
    max_gap: float = 30.0  # seconds between samples beyond which the interval is a marked gap
    job_end_grace: float = 120.0  # a job no GPU has shown for this long has ended
    price_per_kwh: float = 0.0
    price_per_gpu_hour: float = 0.0
    currency: str = "USD"
    rollup_cap: int = 100  # at most this many user (and account) series; the rest are "__other__"
    top_jobs: int = 10  # open jobs exported with their id, the most idle first


def parse_ledger(section: Section) -> LedgerConfig:
    """Read ``[ledger]``; raises ConfigError naming the key."""
    path = section.get("path", Path, Path("ledger.sqlite"))
    threshold = section.get("idle_threshold", float, 0.05)
    if not 0.0 < threshold <= 1.0:
        raise section.error("idle_threshold", f"must be in (0, 1], got {threshold}")
    config = LedgerConfig(
        enabled=section.get("enabled", bool, True),
        path=path,
        interval=section.positive("interval", 1.0),
        flush_interval=section.positive("flush_interval", 10.0),
        idle_threshold=threshold,
        idle_after=section.positive("idle_after", 300.0),
        max_gap=section.positive("max_gap", 30.0),
        job_end_grace=section.positive("job_end_grace", 120.0),
        price_per_kwh=_non_negative(section, "price_per_kwh"),
        price_per_gpu_hour=_non_negative(section, "price_per_gpu_hour"),
        currency=section.get("currency", str, "USD"),
        rollup_cap=_at_least(section, "rollup_cap", 100),
        top_jobs=_at_least(section, "top_jobs", 10),
    )
    section.finish()
    return config


def _non_negative(section: Section, key: str) -> float:
    value = section.get(key, float, 0.0)
    if value < 0:
        raise section.error(key, f"must not be negative, got {value}")
    return value


def _at_least(section: Section, key: str, default: int) -> int:
    value = section.get(key, int, default)
    if value < 1:
        raise section.error(key, f"must be at least 1, got {value}")
    return value
