"""The routing tree: label matchers lead an alert to receivers; ``continue`` lets it match further siblings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.alerting.matchers import Matcher, match_all


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a new group waits, how often it may page again on change, and when it repeats."""

    group_wait: float = 5.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0
    critical_bypasses_group_wait: bool = True


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the tree. Unset fields (None) inherit from the parent when the tree is built."""

    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ("alertname", "host")
    timing: Timing = field(default_factory=Timing)
    continue_: bool = False
    routes: tuple[Route, ...] = ()
    path: str = "root"  # stable identity, part of every group key

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes (leaves or this node) an alert with ``labels`` goes to, in tree order."""
        if not match_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            hits = child.match(labels)
            found.extend(hits)
            if hits and not child.continue_:
                break
        return found or [self]

    def group_key(self, labels: Mapping[str, str]) -> str:
        """Alerts with equal group-by labels on the same route share a group and a notification."""
        values = ",".join(f'{name}="{labels.get(name, "")}"' for name in self.group_by)
        return f"{self.path}:{{{values}}}"

    def walk(self) -> list[Route]:
        out = [self]
        for child in self.routes:
            out.extend(child.walk())
        return out
