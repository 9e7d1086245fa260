"""A real Alertmanager (/usr/bin/prometheus-alertmanager) on 127.0.0.1, with a temporary config and storage."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.binaries import launch, wait_ready
from tests.kit import free_port, http_get, terminate

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"

# Route everything to a receiver that sends nowhere: the tests read Alertmanager's own API.
QUIET_CONFIG: dict[str, Any] = {
    "route": {"receiver": "null", "group_by": ["alertname"], "group_wait": "1s"},
    "receivers": [{"name": "null"}],
}


@dataclass
class Alertmanager:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts Alertmanager holds as active (not resolved)."""
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return list(json.loads(http_get(f"{self.url}/api/v2/alerts?{query}", timeout=10)))

    def log(self) -> str:
        return (self.directory / "alertmanager.log").read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.process)


def start_alertmanager(directory: Path, config: dict[str, Any] | None = None) -> Alertmanager:
    port = free_port()
    process = launch(
        ALERTMANAGER,
        "prometheus-alertmanager",
        directory,
        "alertmanager",
        config or QUIET_CONFIG,
        [
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: one standalone instance on loopback
        ],
    )
    alertmanager = Alertmanager(directory, port, process)
    wait_ready(process, alertmanager.url, "alertmanager", alertmanager.log)
    return alertmanager
