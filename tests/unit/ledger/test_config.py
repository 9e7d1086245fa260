"""``[ledger]`` in the collector config: defaults, the file's place under state_dir, refusals by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import parse
from runtime.configfile import ConfigError

BASE = {"tls": {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}, "state_dir": "/srv/gpulse"}


def test_the_ledger_file_is_under_state_dir_unless_absolute() -> None:
    assert parse(Path("c.toml"), dict(BASE)).ledger_path == Path("/srv/gpulse/ledger.sqlite")
    config = parse(Path("c.toml"), {**BASE, "ledger": {"path": "/data/jobs.sqlite", "price_per_kwh": 0.12}})
    assert config.ledger_path == Path("/data/jobs.sqlite")
    assert config.ledger.price_per_kwh == 0.12


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"idle_threshold": 0}, r"c.toml: ledger.idle_threshold: must be in \(0, 1\], got 0"),
        ({"price_per_kwh": -1}, r"ledger.price_per_kwh: must not be negative, got -1"),
        ({"idle_after": 0}, r"ledger.idle_after: must be greater than 0"),
        ({"rollup_cap": 0}, r"ledger.rollup_cap: must be at least 1, got 0"),
        ({"idle_treshold": 0.1}, r"ledger.idle_treshold: unknown key"),
    ],
)
def test_bad_ledger_settings_are_refused_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(Path("c.toml"), {**BASE, "ledger": table})
