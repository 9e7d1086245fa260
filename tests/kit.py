"""Test kit shared by the integration and e2e tests: a PKI, and real collector/agent processes.

Everything runs on 127.0.0.1 with real certificates, real files and real subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from collector.trust import pki

ROOT = Path(__file__).resolve().parent.parent


def gpu_rows(rows: list[list[float]]) -> npt.NDArray[np.float64]:
    """A GPU backend's sample as an array to index in tests, once it is checked to be what the agent
    expects: plain lists of numbers, one equal-length row per GPU (the agent itself runs without numpy)."""
    assert isinstance(rows, list) and all(isinstance(row, list) for row in rows), type(rows)
    assert len({len(row) for row in rows}) <= 1, "rows of different lengths"
    assert all(isinstance(v, (int, float)) and not isinstance(v, np.generic) for row in rows for v in row)
    return np.array(rows, dtype=np.float64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the thing polled may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}; last error: {last_exc}")


def terminate(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            return float(value)
    return None


def alert_labels(name: str, host: str, gpu: str = "", severity: str = "critical") -> dict[str, str]:
    """An alert's labels as detection would set them."""
    out = {"alertname": name, "severity": severity, "host": host}
    if gpu:
        out["gpu"] = gpu
    return out


def push_alerts(collector: Collector, *alerts: dict[str, str], state: str = "firing") -> None:
    """Push alerts with these labels through the collector's HTTP API, into the lifecycle detection feeds."""
    body = [
        {"labels": a, "state": state, "starts_at": 1.7e9, "annotations": {"summary": a["alertname"]}} for a in alerts
    ]
    request = urllib.request.Request(
        collector.url("/api/v1/alerts"), json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["accepted"] == len(alerts)


@dataclass
class Pki:
    """A CA in ``directory`` plus helpers to issue certificates from it."""

    directory: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        pki.init_ca(directory, name="gpulse test CA", days=2)
        pki.issue(directory, role="collector", name="collector", days=2)
        return cls(directory)

    @property
    def ca(self) -> Path:
        return self.directory / pki.CA_CERT

    def collector(self, name: str = "collector") -> tuple[Path, Path]:
        cert = self.directory / "collectors" / f"{name}.pem"
        if not cert.exists():
            pki.issue(self.directory, role="collector", name=name, days=2)
        return cert, self.directory / "collectors" / f"{name}-key.pem"

    def agent(self, host: str) -> tuple[Path, Path]:
        cert = self.directory / "agents" / f"{host}.pem"
        if not cert.exists():
            pki.issue(self.directory, role="agent", name=host, days=2)
        return cert, self.directory / "agents" / f"{host}-key.pem"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """Write a (two-level, plus arrays of tables) dict as TOML."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")

    def emit_table(name: str, table: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        nested = []
        for k, v in table.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                nested.append((k, v))
            elif isinstance(v, dict):
                nested.append((k, [v]))
            else:
                lines.append(f"{k} = {toml_value(v)}")
        for k, items in nested:
            for item in items:
                lines.append(f"[[{name}.{k}]]")
                lines.extend(f"{ik} = {toml_value(iv)}" for ik, iv in item.items())

    for name, table in tables:
        emit_table(name, table)
    for name, items in arrays:
        for item in items:
            lines.append(f"[[{name}]]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in item.items())
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Service:
    """A gpulse subprocess (collector or agent) with its config file and log."""

    name: str
    config: Path
    log_path: Path
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpulse.cli", *self.args, "--config", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or say goodbye."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"{self.name} did not stop within {timeout}s of SIGTERM:\n{self.log()}") from None
        return int(self.process.returncode)


@dataclass
class Collector(Service):
    grpc_port: int = 0
    http_port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def metrics(self) -> str:
        return http_get(self.url("/metrics"))

    def wait_ready(self, timeout: float = 20.0) -> Collector:
        def ready() -> bool:
            if not self.running:
                raise AssertionError(f"collector exited early:\n{self.log()}")
            return "ok" in http_get(self.url("/healthz"), timeout=1.0)

        wait_for(ready, timeout, what="collector /healthz")
        return self


def collector_config(
    tmp: Path, kit: Pki, *, name: str = "collector", grpc_port: int = 0, http_port: int = 0, **extra: Any
) -> tuple[Path, int, int]:
    cert, key = kit.collector(name)
    grpc_port = grpc_port or free_port()
    http_port = http_port or free_port()
    data: dict[str, Any] = {
        "collector_id": name,
        "listen": f"127.0.0.1:{grpc_port}",
        "http_listen": f"127.0.0.1:{http_port}",
        "state_dir": str(tmp / f"{name}-state"),
        "tls": {"ca": kit.ca, "cert": cert, "key": key},
    }
    for key_, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key_), dict):
            data[key_].update(value)
        else:
            data[key_] = value
    return write_toml(tmp / f"{name}.toml", data), grpc_port, http_port


def start_collector(tmp: Path, kit: Pki, *, name: str = "collector", **extra: Any) -> Collector:
    config, grpc_port, http_port = collector_config(tmp, kit, name=name, **extra)
    collector = Collector(name, config, tmp / f"{name}.log", ["collector"], grpc_port=grpc_port, http_port=http_port)
    return collector.start().wait_ready()  # type: ignore[return-value]


def agent_config(
    tmp: Path, kit: Pki, host: str, targets: list[str], *, cert_host: str | None = None, **extra: Any
) -> Path:
    cert, key = kit.agent(cert_host or host)
    data: dict[str, Any] = {
        "host_id": host,
        "interval": 0.5,
        "state_dir": str(tmp / f"agent-{host}"),
        "collector": {"targets": targets, "server_name": "collector"},
        "tls": {"ca": kit.ca, "cert": cert, "key": key},
        "gpu": {"source": "sim"},
        "sim": {"count": 2, "profile": "H100", "seed": 1},
        "backoff": {"initial": 0.2, "max": 2.0},
    }
    for key_, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key_), dict):
            data[key_].update(value)
        else:
            data[key_] = value
    return write_toml(tmp / f"agent-{host}.toml", data)


def start_agent(tmp: Path, kit: Pki, host: str, targets: list[str], **extra: Any) -> Service:
    config = agent_config(tmp, kit, host, targets, **extra)
    return Service(f"agent-{host}", config, tmp / f"agent-{host}.log", ["agent"]).start()
