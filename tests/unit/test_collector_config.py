"""Collector config keys for exposition formats (and the exporters that hang off the collector)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector import config as collector_config
from runtime.configfile import ConfigError

BASE = {"tls": {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}}


def test_exposition_formats_default_to_gpulse_and_accept_dcgm() -> None:
    assert collector_config.parse(Path("c.toml"), dict(BASE)).exposition_formats == ("gpulse",)
    config = collector_config.parse(Path("c.toml"), {**BASE, "exposition": {"formats": ["gpulse", "dcgm"]}})
    assert config.exposition_formats == ("gpulse", "dcgm")


def test_an_unknown_exposition_format_names_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"c.toml: exposition.formats: must be a non-empty list of 'gpulse', 'dcgm'"):
        collector_config.parse(Path("c.toml"), {**BASE, "exposition": {"formats": ["dcgm-exporter"]}})
    with pytest.raises(ConfigError, match=r"exposition\.format: unknown key"):
        collector_config.parse(Path("c.toml"), {**BASE, "exposition": {"format": "dcgm"}})


def test_remote_write_is_off_by_default_and_configured_by_its_table() -> None:
    assert collector_config.parse(Path("c.toml"), dict(BASE)).remote_write is None
    config = collector_config.parse(
        Path("c.toml"),
        {**BASE, "remote_write": {"url": "http://127.0.0.1:9090/api/v1/write", "external_labels": {"dc": "x"}}},
    )
    assert config.remote_write is not None
    assert config.remote_write.url.endswith("/api/v1/write") and config.remote_write.external_labels == {"dc": "x"}
    with pytest.raises(ConfigError, match=r"remote_write\.url: required key is missing"):
        collector_config.parse(Path("c.toml"), {**BASE, "remote_write": {"timeout": 3}})
