"""Label and annotation templates in the Prometheus style: ``{{ $labels.host }}``, ``{{ $value }}``.

Checked when rules load, so a typo is refused then rather than rendered wrong at 3 a.m.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_VARIABLE = re.compile(r"^\$(?:labels\.([A-Za-z_][A-Za-z0-9_]*)|(value))(?:\s*\|\s*(humanize|printf\s+\"([^\"]*)\"))?$")


class TemplateError(ValueError):
    """A template that refers to something that does not exist or cannot be formatted."""


def check(template: str, label_names: frozenset[str]) -> None:
    """Refuse placeholders other than known labels and $value, with an optional format."""
    for match in _PLACEHOLDER.finditer(template):
        var = _VARIABLE.match(match.group(1))
        if var is None:
            raise TemplateError(
                f"cannot use {match.group(0)!r}; use {{{{ $labels.NAME }}}} or {{{{ $value }}}}"
                ' (optionally | humanize or | printf "%.1f")'
            )
        if var.group(1) and var.group(1) not in label_names:
            raise TemplateError(
                f"{match.group(0)!r} names label {var.group(1)!r}; known: {', '.join(sorted(label_names))}"
            )
        if var.group(4) is not None:
            try:
                var.group(4) % 1.0
            except (TypeError, ValueError) as exc:
                raise TemplateError(f"bad printf format {var.group(4)!r}: {exc}") from None


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    def substitute(match: re.Match[str]) -> str:
        var = _VARIABLE.match(match.group(1))
        if var is None:
            return match.group(0)
        if var.group(1):
            return labels.get(var.group(1), "")
        if var.group(4) is not None:
            return str(var.group(4) % value)
        if var.group(3) == "humanize":
            return humanize(value)
        return f"{value:.6g}"

    return _PLACEHOLDER.sub(substitute, template)


def humanize(value: float) -> str:
    """1234567 -> 1.235M, 0.0042 -> 4.2m, as Prometheus's humanize does."""
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g}{suffix}"
    for factor, suffix in ((1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= factor and abs(value) < 1:
            return f"{value / factor:.4g}{suffix}"
    return f"{value:.4g}"
