"""Starting the real Prometheus and Alertmanager binaries for the e2e tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit import http_get, wait_for


def launch(
    binary: str, package: str, directory: Path, name: str, config: dict[str, Any], args: list[str]
) -> subprocess.Popen[bytes]:
    """Write ``name``.yml into ``directory`` and start ``binary`` on it, its output in ``name``.log."""
    if shutil.which(binary) is None:
        pytest.fail(f"the {name} binary is required (Debian package {package})")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yml").write_text(yaml.safe_dump(config))
    log = (directory / f"{name}.log").open("ab")
    return subprocess.Popen(
        [binary, f"--config.file={directory / f'{name}.yml'}", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )


def wait_ready(process: subprocess.Popen[bytes], url: str, name: str, log: Callable[[], str]) -> None:
    """Wait for ``url``/-/ready to answer 200; fail with the log if the process exits first."""

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited:\n{log()}")
        http_get(f"{url}/-/ready", timeout=1)  # 503 until ready, which raises and is retried
        return True

    wait_for(ready, 30, what=f"{name} /-/ready")
