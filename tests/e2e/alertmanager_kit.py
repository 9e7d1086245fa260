"""A real Alertmanager (/usr/bin/prometheus-alertmanager) on 127.0.0.1, with a temporary config and storage."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit import free_port, http_get, terminate, wait_for

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
    if shutil.which(ALERTMANAGER) is None:
        pytest.fail("the alertmanager binary is required (Debian package prometheus-alertmanager)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(config or QUIET_CONFIG))
    port = free_port()
    log = (directory / "alertmanager.log").open("ab")
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: one standalone instance on loopback
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    alertmanager = Alertmanager(directory, port, process)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"alertmanager exited:\n{alertmanager.log()}")
        http_get(f"{alertmanager.url}/-/ready", timeout=1)
        return True

    wait_for(ready, timeout=30, what="alertmanager /-/ready")
    return alertmanager
