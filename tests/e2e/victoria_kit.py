"""The real VictoriaMetrics single-node binary (Debian package victoria-metrics) for e2e tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.kit import free_port, http_get, terminate, wait_for

BINARY = "victoria-metrics"


@dataclass
class VictoriaMetrics:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def export(self, selector: str) -> list[tuple[int, float]]:
        """Every raw sample of the series matching ``selector``: (timestamp ms, value), merged."""
        text = http_get(f"http://127.0.0.1:{self.port}/api/v1/export?{urlencode({'match[]': selector})}")
        out: list[tuple[int, float]] = []
        for line in text.splitlines():
            series = json.loads(line)
            out += zip(series["timestamps"], series["values"], strict=True)
        return sorted(out)

    def log(self) -> str:
        return (self.directory / "victoria-metrics.log").read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.process)


def start_victoria_metrics(directory: Path, port: int = 0) -> VictoriaMetrics:
    if shutil.which(BINARY) is None:
        pytest.fail("the victoria-metrics binary is required (Debian package victoria-metrics)")
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "victoria-metrics.log").open("ab")
    process = subprocess.Popen(
        [
            BINARY,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={directory / 'data'}",
            "-retentionPeriod=1y",
            "-search.latencyOffset=0s",  # read back what was just written
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    vm = VictoriaMetrics(process, port, directory)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"victoria-metrics exited:\n{vm.log()}")
        return http_get(f"http://127.0.0.1:{port}/health", timeout=1).strip() == "OK"

    wait_for(ready, 30, what="victoria-metrics /health")
    return vm
