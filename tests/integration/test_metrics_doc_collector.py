"""docs/metrics.md lists every family a running collector serves, its own health included."""

from __future__ import annotations

import re
from pathlib import Path

from tests.kit import ROOT, Pki, Service, start_agent, start_collector, wait_for


def test_every_family_a_running_collector_serves_is_documented(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    services.append(start_agent(tmp, test_pki, "node-doc", [collector.target]))
    wait_for(lambda: 'host="node-doc"' in collector.metrics(), what="the agent's series")
    served = set(re.findall(r"^# HELP (\S+)", collector.metrics(), re.MULTILINE))
    served = {name for name in served if not name.endswith("_created")}
    documented = set(re.findall(r"`((?:gpulse|DCGM)_[A-Za-z0-9_]+)", (ROOT / "docs" / "metrics.md").read_text()))
    own = {n for n in served if n.startswith(("gpulse_collector_", "gpulse_detect_", "gpulse_alert"))}
    assert len(own) > 30, sorted(served)
    assert not sorted(served - documented), f"served but not in docs/metrics.md: {sorted(served - documented)}"
