"""Label matchers (``name=value``, ``!=``, ``=~``, ``!~``) as routes, silences and inhibit rules use them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_OPERATORS = ("=~", "!~", "!=", "=")
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One condition on one label; a missing label matches as the empty string (as in Alertmanager)."""

    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"matcher label name {self.name!r} is not a valid label name")
        if self.op not in _OPERATORS:
            raise ValueError(f"matcher operator {self.op!r} is not one of {', '.join(_OPERATORS)}")
        if self.op in ("=~", "!~"):
            try:
                # Anchored, as Prometheus and Alertmanager anchor label regexes.
                object.__setattr__(self, "_regex", re.compile(f"^(?:{self.value})$"))
            except re.error as exc:
                raise ValueError(f"matcher {self.name}{self.op}{self.value!r}: bad regex: {exc}") from None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``host=node-1``, ``severity!=info``, ``gpu=~"0|1"`` (quotes around the value are optional)."""
        for op in _OPERATORS:
            name, sep, value = text.partition(op)
            # "!=" and "=~" contain "=": take the operator that starts where the name ends.
            if sep and not name.endswith(("!", "=")) and not value.startswith("~"):
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return cls(name.strip(), op, value)
        raise ValueError(f"matcher {text!r} has no operator; expected name=value, name!=value, name=~re or name!~re")

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        hit = self._regex.match(value) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_all(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def match_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
