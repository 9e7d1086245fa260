"""Alerting rules: loaded from TOML files, checked completely before any of them is used.

A rule file holds ``[[rule]]`` tables:

    [[rule]]
    name = "GpuPcieReplayStorm"
    expr = "rate(pcie_replay[1m]) > 5"
    for = "30s"
    keep_firing_for = "5m"
    severity = "warning"
    labels = { component = "pcie" }
    annotations = { summary = "PCIe replays at {{ $value | humanize }}/s on {{ $labels.host }} GPU {{ $labels.gpu }}" }

A bad rule refuses the whole set, naming the file, the rule and the reason, so a half-loaded
rule pack never runs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from collector.alert import Severity
from collector.detect import expr as ex
from collector.detect import templates
from runtime.configfile import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RULE_KEYS = frozenset({"name", "expr", "for", "keep_firing_for", "severity", "labels", "annotations", "immediate"})
_RESERVED_LABELS = frozenset({"alertname", "severity", "host", "gpu", "uuid", "model"})
GPU_LABELS = frozenset({"host", "gpu", "uuid", "model"})
HOST_LABELS = frozenset({"host"})
# Signals that change on an agent event rather than on a frame: rules reading them are evaluated
# the moment such an event arrives.
EVENT_SIGNALS = frozenset({"xid", "lost", "health", "spool_dropped_records", "gpus_missing"})


class RuleError(ConfigError):
    """A rule that cannot be used; the message names the file, the rule and the reason."""

    def __init__(self, path: str, rule: str, reason: str) -> None:
        super().__init__(path, f"rule {rule!r}" if rule else "", reason)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class Rule:
    name: str
    expr_text: str
    expr: ex.Node
    value: ex.Node
    scope: str  # "gpu" or "host"
    severity: Severity
    for_seconds: float = 0.0
    keep_firing_for: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    immediate: bool = False  # evaluated when an event it reads arrives, not only on the tick
    source: str = ""


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    sources: tuple[str, ...]


def default_rules_text() -> str:
    return resources.files("collector.detect").joinpath("rules/default.toml").read_text()


DEFAULT_RULES = "builtin:default.toml"


def load_rules(paths: Sequence[Path | str], *, gpu_signals: frozenset[str], host_signals: frozenset[str]) -> RuleSet:
    """Read every file (``builtin:default.toml`` names the shipped pack); raises RuleError."""
    rules: list[Rule] = []
    for path in paths:
        text = default_rules_text() if str(path) == DEFAULT_RULES else _read(Path(path))
        rules.extend(parse_rules(str(path), text, gpu_signals=gpu_signals, host_signals=host_signals))
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.name in seen:
            raise RuleError(rule.source, rule.name, f"a rule of this name is already defined in {seen[rule.name]}")
        seen[rule.name] = rule.source
    return RuleSet(tuple(rules), tuple(str(p) for p in paths))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise RuleError(str(path), "", "file not found") from None
    except OSError as exc:
        raise RuleError(str(path), "", f"cannot read: {exc.strerror or exc}") from None


def parse_rules(source: str, text: str, *, gpu_signals: frozenset[str], host_signals: frozenset[str]) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(source, "", f"invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"rule"})
    if unknown:
        raise RuleError(source, "", f"unknown top-level key {unknown[0]!r}; rules go in [[rule]] tables")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RuleError(source, "", "'rule' must be an array of tables ([[rule]])")
    known: Callable[[str], bool] = lambda name: name in gpu_signals or name in host_signals  # noqa: E731
    return [_rule(source, i, table, known, gpu_signals) for i, table in enumerate(tables)]


def _rule(source: str, index: int, table: Any, known: Callable[[str], bool], gpu_signals: frozenset[str]) -> Rule:
    if not isinstance(table, dict):
        raise RuleError(source, f"#{index + 1}", "a rule must be a table")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError(source, f"#{index + 1}", f"'name' must be an identifier like GpuLost, got {name!r}")

    def fail(reason: str) -> RuleError:
        return RuleError(source, name, reason)

    extra = sorted(set(table) - _RULE_KEYS)
    if extra:
        raise fail(f"unknown key {extra[0]!r}")
    text = table.get("expr")
    if not isinstance(text, str):
        raise fail("'expr' is required and must be a string")
    try:
        node = ex.parse(text, known)
        for_seconds = ex.parse_duration(table.get("for", 0))
        keep = ex.parse_duration(table.get("keep_firing_for", 0))
    except ex.ExprError as exc:
        raise fail(str(exc)) from None
    used = node.signals()
    scope = "gpu" if (used & gpu_signals) else "host"
    try:
        severity = Severity.parse(str(table.get("severity", "")))
    except ValueError as exc:
        raise fail(str(exc)) from None
    labels = _strings(table.get("labels", {}), "labels", fail)
    annotations = _strings(table.get("annotations", {}), "annotations", fail)
    reserved = sorted(set(labels) & _RESERVED_LABELS)
    if reserved:
        raise fail(f"label {reserved[0]!r} is set by detection and cannot be overridden")
    available = (GPU_LABELS if scope == "gpu" else HOST_LABELS) | {"alertname", "severity"} | set(labels)
    for key, template in [*labels.items(), *annotations.items()]:
        try:
            templates.check(template, frozenset(available))
        except templates.TemplateError as exc:
            raise fail(f"{key}: {exc}") from None
    immediate = table.get("immediate", bool(used & EVENT_SIGNALS))
    if not isinstance(immediate, bool):
        raise fail("'immediate' must be true or false")
    return Rule(
        name=name,
        expr_text=text,
        expr=node,
        value=ex.value_node(node),
        scope=scope,
        severity=severity,
        for_seconds=for_seconds,
        keep_firing_for=keep,
        labels=labels,
        annotations=annotations,
        immediate=immediate,
        source=source,
    )


def _strings(value: Any, key: str, fail: Callable[[str], RuleError]) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise fail(f"'{key}' must be a table of strings")
    for k in value:
        if not _NAME.match(k):
            raise fail(f"{key} name {k!r} is not a valid label name")
    return dict(value)
