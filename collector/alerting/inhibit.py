"""Inhibition: a firing source alert mutes target alerts that share its ``equal`` labels.

The defaults encode the two cases an on-call cares about: a host that is down mutes that host's GPU
alerts, and a GPU that is lost mutes that GPU's other alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from collector.alert import Alert
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
    """Mutes by the firing alerts ``sources()`` returns (the lifecycle's).

    Sources are indexed per rule by their ``equal`` label values, and the index is rebuilt only when
    ``generation()`` changes, so a storm of N alerts costs O(N), not O(N^2), to check.
    """

    def __init__(
        self,
        rules: Iterable[InhibitRule],
        sources: Callable[[], Iterable[Alert]],
        generation: Callable[[], int] | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self._sources = sources
        self._generation = generation
        self._index: list[dict[tuple[str, ...], list[Alert]]] = []
        self._indexed_at: int | None = None

    def _sources_by_rule(self) -> list[dict[tuple[str, ...], list[Alert]]]:
        current = self._generation() if self._generation is not None else None
        if current is None or current != self._indexed_at:
            self._index = [{} for _ in self.rules]
            for source in self._sources():
                for rule, index in zip(self.rules, self._index, strict=True):
                    if match_all(rule.source, source.labels):
                        key = tuple(source.labels.get(name, "") for name in rule.equal)
                        index.setdefault(key, []).append(source)
            self._indexed_at = current
        return self._index

    def mutes(self, labels: Mapping[str, str]) -> bool:
        return self.inhibited_by(labels) is not None

    def inhibited_by(self, labels: Mapping[str, str]) -> Alert | None:
        """The source alert that inhibits ``labels``, if any."""
        if not any(match_all(r.target, labels) for r in self.rules):
            return None
        for rule, index in zip(self.rules, self._sources_by_rule(), strict=True):
            if not match_all(rule.target, labels):
                continue
            for source in index.get(tuple(labels.get(name, "") for name in rule.equal), ()):
                if source.labels != labels:  # an alert never inhibits itself
                    return source
        return None
