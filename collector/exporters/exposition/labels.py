"""Cached line prefixes (``\\nname{labels} ``) per family and row, rebuilt only for rows that changed.

A row's labels are fixed while the same host or GPU occupies it, so a scrape never builds label
text: it gathers prefixes for the rows it emits and joins them with freshly formatted values.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np

from collector.exporters.exposition.text import ObjectArray

__all__ = ["PrefixTable"]


class PrefixTable:
    """``table[f, row]`` is the prefix of family ``f``'s series for ``row``; ``labels[row]`` its label text."""

    def __init__(self, names: Sequence[str | tuple[str, str]], label_text: Callable[[int], str]) -> None:
        # A family is a name, or (name, extra labels) for series that add their own, e.g. ',status="ok"'.
        self.families = [(n, "") if isinstance(n, str) else n for n in names]
        self.names = [name for name, _ in self.families]
        self.label_text = label_text
        self.table: ObjectArray = np.empty((len(self.names), 0), dtype=object)
        self.labels: list[str] = []
        self._keys: list[Hashable] = []

    def refresh(self, keys: Sequence[Hashable]) -> None:
        """Bring the table in line with ``keys`` (one per row, None for an empty row)."""
        n = len(keys)
        if n > self.table.shape[1]:
            grown = np.full((len(self.names), max(n, 2 * self.table.shape[1])), "", dtype=object)
            grown[:, : self.table.shape[1]] = self.table
            self.table = grown
            self.labels.extend([""] * (grown.shape[1] - len(self.labels)))
            self._keys.extend([None] * (grown.shape[1] - len(self._keys)))
        for row, key in enumerate(keys):
            if key is None or self._keys[row] == key:
                continue
            labels = self.label_text(row)
            self.labels[row] = labels
            self.table[:, row] = [f"\n{name}{{{labels}{extra}}} " for name, extra in self.families]
            self._keys[row] = key
