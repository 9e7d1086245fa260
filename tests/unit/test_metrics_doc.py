"""docs/metrics.md lists every series the exposition and remote write can produce."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from collector.exporters.remote_write import RemoteWriteMetrics
from tests.exposed_names import exposed_metric_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_every_exposed_series_is_documented() -> None:
    text = DOC.read_text()
    documented = set(re.findall(r"`((?:gpulse|DCGM)_[A-Za-z0-9_]+)", text))
    ours = {n for n in exposed_metric_names() if n.startswith(("gpulse_gpu", "gpulse_host", "DCGM_"))}
    registry = CollectorRegistry()
    RemoteWriteMetrics(registry)
    remote = {
        line.split("{")[0].split(" ")[0]
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("gpulse_") and "_created" not in line
    }
    assert len(ours) > 80 and remote
    missing = sorted((ours | remote) - documented)
    assert not missing, f"not in docs/metrics.md: {missing}"
