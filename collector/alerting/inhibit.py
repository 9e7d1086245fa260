"""Inhibition: a firing source alert mutes target alerts that share its ``equal`` labels.

The defaults encode the two cases an on-call cares about: a host that is down mutes that host's GPU
alerts, and a GPU that is lost mutes that GPU's other alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from collector.alerting.alert import Alert
from collector.alerting.matchers import Matcher, match_all, parse_all


@dataclass(frozen=True, slots=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


DEFAULT_RULES = (
    InhibitRule(parse_all(["alertname=HostDown"]), parse_all(["gpu=~.+"]), ("host",)),
    InhibitRule(parse_all(["alertname=GpuLost"]), parse_all(["alertname!=GpuLost"]), ("host", "gpu")),
)


class Inhibitor:
    """Mutes by the firing alerts ``sources()`` returns (the lifecycle's, read at each question)."""

    def __init__(self, rules: Iterable[InhibitRule], sources: Callable[[], Iterable[Alert]]) -> None:
        self.rules = tuple(rules)
        self._sources = sources

    def mutes(self, labels: Mapping[str, str]) -> bool:
        return self.inhibited_by(labels) is not None

    def inhibited_by(self, labels: Mapping[str, str]) -> Alert | None:
        """The source alert that inhibits ``labels``, if any."""
        rules = [r for r in self.rules if match_all(r.target, labels)]
        if not rules:
            return None
        for source in self._sources():
            if source.labels == labels:
                continue  # an alert never inhibits itself
            for rule in rules:
                if match_all(rule.source, source.labels) and all(
                    source.labels.get(name, "") == labels.get(name, "") for name in rule.equal
                ):
                    return source
        return None
