"""Rule expressions: a small PromQL-like language parsed once into a tree evaluated over numpy arrays.

Every node evaluates to one float per series (GPU row or host slot) at once; a comparison gives 1.0
where it holds and 0.0 elsewhere, and NaN (not read) never satisfies a comparison.

    expr     := and_expr ("or" and_expr)*
    and_expr := cmp ("and" cmp)*
    cmp      := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum      := prod (("+" | "-") prod)*
    prod     := unary (("*" | "/") unary)*
    unary    := "-" unary | atom
    atom     := NUMBER | SIGNAL | "(" expr ")" | "abs" "(" expr ")"
              | FUNC "(" SIGNAL "[" DURATION "]" ")"        FUNC: rate increase delta absent
                                                             avg_over_time min_over_time max_over_time
              | "xids" "(" CODE ("," CODE)* ")" "[" DURATION "]"
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

WINDOW_FUNCTIONS = ("rate", "increase", "delta", "absent", "avg_over_time", "min_over_time", "max_over_time")
_COMPARISONS: dict[str, Callable[[Array, Array], npt.NDArray[np.bool_]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_ARITHMETIC: dict[str, Callable[[Array, Array], Array]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TOKEN = re.compile(
    r"\s*(?:(?P<duration>\d+(?:\.\d+)?(?:ms|s|m|h|d)\b)|(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![A-Za-z_0-9.]))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|==|!=|[<>+\-*/(),\[\]]))"
)


class ExprError(ValueError):
    """An expression that cannot be parsed or refers to something unknown."""


def parse_duration(text: str | float | int) -> float:
    """Seconds from "500ms", "30s", "5m", "2h", "1d" or a plain number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ExprError(f"duration must not be negative, got {text}")
        return float(text)
    if not isinstance(text, str):
        raise ExprError(f"duration must be a string like '30s' or a number, got {text!r}")
    match = _DURATION.match(text.strip())
    if not match:
        raise ExprError(f"invalid duration {text!r}; expected e.g. '500ms', '30s', '5m', '2h', '1d'")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Context(Protocol):
    """What an expression reads: current values, windows over the history, and the XID log."""

    def current(self, signal: str) -> Array: ...

    def window(self, function: str, signal: str, seconds: float) -> Array: ...

    def xids(self, codes: frozenset[int], seconds: float) -> Array: ...


class Node(Protocol):
    def evaluate(self, ctx: Context) -> Array: ...

    def signals(self) -> set[str]: ...


@dataclass(frozen=True)
class Number:
    value: float

    def evaluate(self, ctx: Context) -> Array:
        return np.float64(self.value)  # type: ignore[return-value]  # broadcasts like an array

    def signals(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class Signal:
    name: str

    def evaluate(self, ctx: Context) -> Array:
        return ctx.current(self.name)

    def signals(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class Window:
    function: str
    signal: str
    seconds: float

    def evaluate(self, ctx: Context) -> Array:
        return ctx.window(self.function, self.signal, self.seconds)

    def signals(self) -> set[str]:
        return {self.signal}


@dataclass(frozen=True)
class Xids:
    codes: frozenset[int]
    seconds: float

    def evaluate(self, ctx: Context) -> Array:
        return ctx.xids(self.codes, self.seconds)

    def signals(self) -> set[str]:
        return {"xid"}


@dataclass(frozen=True)
class Abs:
    inner: Node

    def evaluate(self, ctx: Context) -> Array:
        return np.abs(self.inner.evaluate(ctx))

    def signals(self) -> set[str]:
        return self.inner.signals()


@dataclass(frozen=True)
class Negate:
    inner: Node

    def evaluate(self, ctx: Context) -> Array:
        return -self.inner.evaluate(ctx)

    def signals(self) -> set[str]:
        return self.inner.signals()


@dataclass(frozen=True)
class Arithmetic:
    op: str
    left: Node
    right: Node

    def evaluate(self, ctx: Context) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _ARITHMETIC[self.op](self.left.evaluate(ctx), self.right.evaluate(ctx))

    def signals(self) -> set[str]:
        return self.left.signals() | self.right.signals()


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node

    def evaluate(self, ctx: Context) -> Array:
        with np.errstate(invalid="ignore"):
            return _COMPARISONS[self.op](self.left.evaluate(ctx), self.right.evaluate(ctx)).astype(np.float64)

    def signals(self) -> set[str]:
        return self.left.signals() | self.right.signals()


@dataclass(frozen=True)
class Logical:
    op: str  # "and" | "or"
    left: Node
    right: Node

    def evaluate(self, ctx: Context) -> Array:
        a = _truth(self.left.evaluate(ctx))
        b = _truth(self.right.evaluate(ctx))
        return (a & b if self.op == "and" else a | b).astype(np.float64)

    def signals(self) -> set[str]:
        return self.left.signals() | self.right.signals()


def _truth(values: Array) -> npt.NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        return np.asarray(values > 0)


def truth(values: Array) -> npt.NDArray[np.bool_]:
    """Where an expression holds: positive and not NaN."""
    return _truth(values)


def value_node(node: Node) -> Node:
    """The node whose value an alert reports as ``$value``: the left side of the first comparison."""
    while isinstance(node, Logical):
        node = node.left
    return node.left if isinstance(node, Compare) else node


class _Parser:
    def __init__(self, text: str, known: Callable[[str], bool]) -> None:
        self.text = text
        self.known = known
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise ExprError(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExprError(f"unexpected end of expression{f', expected {expected!r}' if expected else ''}")
        if expected is not None and token[1] != expected:
            raise ExprError(f"expected {expected!r}, found {token[1]!r}")
        self.i += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == text

    def parse(self) -> Node:
        if not self.tokens:
            raise ExprError("empty expression")
        node = self.expr()
        if self.peek() is not None:
            raise ExprError(f"unexpected {self.peek()[1]!r} after a complete expression")  # type: ignore[index]
        return node

    def expr(self) -> Node:
        node = self.and_expr()
        while self.at("or"):
            self.take()
            node = Logical("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.cmp()
        while self.at("and"):
            self.take()
            node = Logical("and", node, self.cmp())
        return node

    def cmp(self) -> Node:
        node = self.sum()
        token = self.peek()
        if token is not None and token[1] in _COMPARISONS:
            self.take()
            node = Compare(token[1], node, self.sum())
        return node

    def sum(self) -> Node:
        node = self.prod()
        while (token := self.peek()) is not None and token[1] in ("+", "-"):
            self.take()
            node = Arithmetic(token[1], node, self.prod())
        return node

    def prod(self) -> Node:
        node = self.unary()
        while (token := self.peek()) is not None and token[1] in ("*", "/"):
            self.take()
            node = Arithmetic(token[1], node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("-"):
            self.take()
            return Negate(self.unary())
        return self.atom()

    def atom(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            return Number(float(text))
        if text == "(":
            node = self.expr()
            self.take(")")
            return node
        if kind != "name":
            raise ExprError(f"unexpected {text!r}")
        if text == "abs":
            self.take("(")
            node = self.expr()
            self.take(")")
            return Abs(node)
        if text == "xids":
            return self.xids()
        if text in WINDOW_FUNCTIONS:
            self.take("(")
            signal = self.signal()
            seconds = self.window()
            self.take(")")
            return Window(text, signal, seconds)
        if self.at("("):
            raise ExprError(f"unknown function {text!r}; known: abs, xids, {', '.join(WINDOW_FUNCTIONS)}")
        if text in ("and", "or"):
            raise ExprError(f"{text!r} needs a condition on each side")
        self.i -= 1
        return Signal(self.signal())

    def signal(self) -> str:
        kind, text = self.take()
        if kind != "name":
            raise ExprError(f"expected a signal name, found {text!r}")
        if not self.known(text):
            raise ExprError(f"unknown signal {text!r}")
        return text

    def window(self) -> float:
        self.take("[")
        kind, text = self.take()
        if kind != "duration":
            raise ExprError(f"expected a duration like 30s or 5m inside [], found {text!r}")
        self.take("]")
        seconds = parse_duration(text)
        if seconds <= 0:
            raise ExprError("a window must be longer than 0s")
        return seconds

    def xids(self) -> Node:
        self.take("(")
        codes = set()
        while True:
            kind, text = self.take()
            if kind != "number" or not text.isdigit():
                raise ExprError(f"xids() takes XID codes (whole numbers), found {text!r}")
            codes.add(int(text))
            if self.at(","):
                self.take()
                continue
            self.take(")")
            break
        return Xids(frozenset(codes), self.window())


def parse(text: str, known: Callable[[str], bool]) -> Node:
    """Parse an expression; ``known`` says which signal names exist. Raises ExprError."""
    return _Parser(text, known).parse()


def windows(node: object) -> list[Window]:
    """Every windowed function in a tree (to size the history)."""
    found: list[Window] = []
    if isinstance(node, Window):
        found.append(node)
    for attr in ("inner", "left", "right"):
        child = getattr(node, attr, None)
        if child is not None:
            found.extend(windows(child))
    return found
