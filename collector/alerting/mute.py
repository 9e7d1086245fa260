"""The one question the notifier asks of inhibition and silences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Muter(Protocol):
    def mutes(self, labels: Mapping[str, str]) -> bool:
        """True when an alert with these labels must not notify now."""
        ...
