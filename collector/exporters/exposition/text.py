"""Vectorised pieces of the Prometheus text format: label escaping, value formatting, series blocks.

A scrape of a large fleet is millions of ``name{labels} value`` lines. The label part of each line
is fixed until the fleet's layout changes, so callers keep it as a cached prefix string; only the
values are formatted per scrape, in bulk, with the cheapest exact formatting for each value.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_LABEL_VALUE", "ObjectArray", "block", "escape", "format_value", "format_values", "header"]

ObjectArray = npt.NDArray[np.object_]

_SMALL_INTS = 4096
_SMALL_INT_TEXT: ObjectArray = np.array([str(i) for i in range(_SMALL_INTS)], dtype=object)
_EXACT_INT_LIMIT = 2.0**53  # beyond this a float64 is not a whole number we can print digit for digit


MAX_LABEL_VALUE = 256  # agent-supplied strings (model, serial, versions) are cut here, never a scrape's worth


def escape(value: str) -> str:
    """Escape a label value (backslash, double quote, newline), cut to MAX_LABEL_VALUE characters."""
    return value[:MAX_LABEL_VALUE].replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_values(values: npt.NDArray[np.float64]) -> list[str]:
    """Exposition text for each (finite or infinite, never NaN) value, exact and round-trippable.

    Whole numbers (bytes, clocks, counts, flags) print as integers, which is much cheaper than
    ``repr`` of a float; small ones (flags, states, counts) come from a table; the rest use ``repr``.
    """
    n = len(values)
    if n == 0:
        return []
    whole = np.isfinite(values) & (np.trunc(values) == values) & (np.abs(values) < _EXACT_INT_LIMIT)
    if whole.all():
        ints = values.astype(np.int64)
        small = (ints >= 0) & (ints < _SMALL_INTS)
        if small.all():
            return list(_SMALL_INT_TEXT[ints].tolist())
        out = np.empty(n, dtype=object)
        out[small] = _SMALL_INT_TEXT[ints[small]]
        out[~small] = list(map(int.__repr__, ints[~small].tolist()))
        return list(out.tolist())
    out = np.empty(n, dtype=object)
    fraction = ~whole & np.isfinite(values)
    out[fraction] = list(map(float.__repr__, values[fraction].tolist()))
    odd = ~whole & ~fraction
    if odd.any():
        out[odd] = [_special_text(v) for v in values[odd].tolist()]
    if whole.any():
        ints = values[whole].astype(np.int64)
        small = (ints >= 0) & (ints < _SMALL_INTS)
        texts = np.empty(len(ints), dtype=object)
        texts[small] = _SMALL_INT_TEXT[ints[small]]
        texts[~small] = list(map(int.__repr__, ints[~small].tolist()))
        out[whole] = texts
    return list(out.tolist())


def format_value(value: float) -> str:
    """One value, formatted exactly as :func:`format_values` would (for the few series not in bulk)."""
    if math.isfinite(value) and value.is_integer() and abs(value) < _EXACT_INT_LIMIT:
        return int.__repr__(int(value))
    return float.__repr__(value) if math.isfinite(value) else _special_text(value)


def _special_text(value: float) -> str:
    if value != value:
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def header(name: str, kind: str, help_text: str) -> str:
    """The HELP and TYPE lines of a family, without a trailing newline (series prefixes bring theirs)."""
    help_escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {help_escaped}\n# TYPE {name} {kind}"


def block(head: str, prefixes: list[str], texts: list[str]) -> str:
    """One family: its header, then each ``prefix`` (which starts with a newline) followed by its value."""
    parts: list[str] = [""] * (2 * len(prefixes) + 1)
    parts[0] = head
    parts[1::2] = prefixes
    parts[2::2] = texts
    return "".join(parts)
