from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.nvml_stub import ENV_CONFIG, StubConfig, StubGpu, StubLibrary, build
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


@pytest.fixture(scope="session")
def nvml_stub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where compiled NVML stubs are kept: beside the run's temp dirs, so later runs reuse them by hash."""
    return tmp_path_factory.getbasetemp().parent / "nvml-stub-cache"


@pytest.fixture(scope="session")
def nvml_stub_lib(nvml_stub_cache: Path) -> StubLibrary:
    """The C stub libnvidia-ml.so.1, loaded into this process for the real nvidia-ml-py to use."""
    return StubLibrary(build(nvml_stub_cache))


@pytest.fixture
def nvml_stub(nvml_stub_lib: StubLibrary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StubConfig:
    """A fresh stub configuration (one H100) for this test; change it and call ``write()``."""
    config = StubConfig(tmp_path / "nvml-stub.conf", [StubGpu.h100(0)], lib=nvml_stub_lib.path)
    config.write()
    monkeypatch.setenv(ENV_CONFIG, str(config.path))
    nvml_stub_lib.reset()
    return config
