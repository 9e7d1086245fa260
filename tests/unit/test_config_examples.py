"""The annotated example configs in deploy/config: they parse, their commented-out settings parse too,
and every key the parsers read is documented in them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from agent import config as agent_config
from collector import config as collector_config
from tests.kit import ROOT

EXAMPLES = ROOT / "deploy" / "config"
PARSERS = {
    "agent": ["agent/config.py", "agent/sources/replay.py"],
    "collector": [
        "collector/config.py",
        "collector/alerting/config.py",
        "collector/alerting/receivers/*.py",
        "collector/detect/config.py",
        "collector/exporters/remote_write.py",
        "collector/ledger/config.py",
        "collector/http/config.py",
    ],
}
LOADERS = {"agent": agent_config.parse, "collector": collector_config.parse}
SECRETS = {
    "GPULSE_PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef",
    "GPULSE_WEBHOOK_TOKEN": "webhook-token",
    "GPULSE_REMOTE_WRITE_TOKEN": "rw-token",
}
# Section methods (and the parsers' small helpers) whose first string argument is a config key.
_READ = re.compile(
    r"""(?:\.(?:require|positive|choice|secret|section|sections)\(|_at_least\(\w+,\s*|_host_port\(\w+,\s*|"""
    r"""_non_negative\(\w+,\s*|_matchers\(\w+,\s*)"([a-z_][a-z0-9_]*)\"|"""
    # Section.get always names a type (a dict's .get does not):
    r"""\.get\("([a-z_][a-z0-9_]*)",\s*(?:str|int|float|bool|list|Path)\b""",
)


def keys_read(kind: str) -> set[str]:
    keys: set[str] = set()
    for pattern in PARSERS[kind]:
        for path in sorted(ROOT.glob(pattern)):
            keys |= {a or b for a, b in _READ.findall(path.read_text())}
    return keys


def documented(text: str, key: str) -> bool:
    as_setting = re.search(rf"(^|[\s#]){re.escape(key)}\s*=", text, re.M)
    as_table = re.search(rf"^#?\s*\[\[?([\w.]*\.)?{re.escape(key)}\]\]?\s*$", text, re.M)
    return bool(as_setting or as_table)


def uncommented(text: str) -> str:
    """The example with every commented-out setting and table switched on."""
    return re.sub(r"^# (?=\[|[A-Za-z_][\w-]*\s*=)", "", text, flags=re.M)


@pytest.mark.parametrize("kind", ["agent", "collector"])
def test_example_parses_as_shipped(kind: str) -> None:
    path = EXAMPLES / f"{kind}.toml"
    config = {"agent": agent_config.load, "collector": collector_config.load}[kind](path)
    assert config.log_level == "info"


@pytest.mark.parametrize("kind", ["agent", "collector"])
def test_example_parses_with_every_optional_setting_switched_on(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / f"{kind}.toml"
    path.write_text(uncommented((EXAMPLES / f"{kind}.toml").read_text()))
    config = LOADERS[kind](path, tomllib.loads(path.read_text()))
    if kind == "collector":
        assert isinstance(config, collector_config.CollectorConfig)
        assert config.crl is not None and config.remote_write is not None
        assert {r.name for r in config.alerting.receivers} == {"oncall", "am", "hook"}


@pytest.mark.parametrize("kind", ["agent", "collector"])
def test_every_key_the_parsers_read_is_documented(kind: str) -> None:
    text = (EXAMPLES / f"{kind}.toml").read_text()
    keys = keys_read(kind)
    assert len(keys) > 10, "the key scan found too little: has the parser's style changed?"
    missing = sorted(k for k in keys if not documented(text, k))
    assert not missing, f"keys read by the {kind} parser but not in deploy/config/{kind}.toml: {missing}"
