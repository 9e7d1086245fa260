"""A real Prometheus (/usr/bin/prometheus) on 127.0.0.1 for e2e tests, with a temporary config and TSDB."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit import free_port, http_get, terminate, wait_for

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
    if shutil.which(PROMETHEUS) is None:
        pytest.fail("the prometheus binary is required (Debian package prometheus)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = port or free_port()
    log = (directory / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    prometheus = Prometheus(directory, port, process)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{prometheus.log()}")
        return "Ready" in http_get(f"{prometheus.url}/-/ready", timeout=1)

    wait_for(ready, 30, what="prometheus /-/ready")
    return prometheus
