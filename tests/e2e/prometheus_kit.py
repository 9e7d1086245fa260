"""A real Prometheus (/usr/bin/prometheus) on 127.0.0.1 for e2e tests, with a temporary config and TSDB."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.binaries import launch, wait_ready
from tests.kit import free_port, http_get, terminate

PROMETHEUS = "/usr/bin/prometheus"


@dataclass
class Prometheus:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        reply = json.loads(http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10))
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, expr: str, **params: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, **params)
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.process)


def start_prometheus(directory: Path, config: dict[str, Any], *flags: str, port: int = 0) -> Prometheus:
    """Start Prometheus with ``config`` (rule files copied next to it by the caller) and wait until ready."""
    port = port or free_port()
    process = launch(
        PROMETHEUS,
        "prometheus",
        directory,
        "prometheus",
        config,
        [
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *flags,
        ],
    )
    prometheus = Prometheus(directory, port, process)
    wait_ready(process, prometheus.url, "prometheus", prometheus.log)
    return prometheus
