from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit import Pki, Service


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One CA for the whole run: issuing is cheap, making a CA per test is not needed."""
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Register started services here; they are all killed at the end of the test, pass or fail."""
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
