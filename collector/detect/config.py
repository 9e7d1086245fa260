"""The collector's ``[detect]`` table: which rule files, how often to evaluate, how to compare peers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collector.detect.rules import DEFAULT_RULES
from runtime.configfile import Section


@dataclass(frozen=True, slots=True)
class DetectConfig:
    enabled: bool = True
    rules: tuple[str, ...] = (DEFAULT_RULES,)  # files; "builtin:default.toml" is the shipped pack
    interval: float = 1.0  # seconds between evaluations
    reload_check_interval: float = 5.0  # seconds between checks for changed rule files
    min_peers: int = 3
    baseline_half_life: float = 600.0


def parse_detect(section: Section) -> DetectConfig:
    """Read ``[detect]``; raises ConfigError naming the key. Rule files are checked when loaded."""
    rules = section.get("rules", list, [DEFAULT_RULES])
    if not rules or not all(isinstance(r, str) and r for r in rules):
        raise section.error("rules", 'must be a non-empty list of paths (or "builtin:default.toml")')
    for rule_file in rules:
        if rule_file != DEFAULT_RULES and not Path(rule_file).is_absolute():
            raise section.error("rules", f"rule file paths must be absolute, got {rule_file!r}")
    min_peers = section.get("min_peers", int, 3)
    if min_peers < 2:
        raise section.error("min_peers", f"must be at least 2, got {min_peers}")
    config = DetectConfig(
        enabled=section.get("enabled", bool, True),
        rules=tuple(rules),
        interval=section.positive("interval", 1.0),
        reload_check_interval=section.positive("reload_check_interval", 5.0),
        min_peers=min_peers,
        baseline_half_life=section.positive("baseline_half_life", 600.0),
    )
    section.finish()
    return config
