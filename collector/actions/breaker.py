"""The circuit breaker's rule, pure: may one more host be drained, given how many were in the window?"""

from __future__ import annotations

import math

from collector.actions.config import BreakerConfig


def limit(config: BreakerConfig, hosts: int) -> int:
    """Hosts that may be drained within the window: ``max_fraction`` of the fleet (at least one),
    and no more than ``max_hosts`` when that is set."""
    allowed = max(1, math.floor(config.max_fraction * max(1, hosts)))
    return min(allowed, config.max_hosts) if config.max_hosts else allowed


def trips(config: BreakerConfig, hosts: int, drained_in_window: int) -> str:
    """Why draining one more host trips the breaker ("" when it does not)."""
    allowed = limit(config, hosts)
    if drained_in_window + 1 <= allowed:
        return ""
    return f"{drained_in_window + 1} hosts drained within {config.window:g}s (limit {allowed} of {max(1, hosts)} hosts)"
