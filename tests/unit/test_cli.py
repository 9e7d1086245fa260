"""The `gpulse` command: each run loads only the modules of the command it runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpulse.cli import EXTERNAL_COMMANDS, build_parser, main
from tests.kit import ROOT

OTHER_COMMANDS_MODULES = sorted({registrar.partition(":")[0] for registrar in EXTERNAL_COMMANDS.values()})


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_agent_command_loads_no_other_command_module() -> None:
    loaded = loaded_after("from gpulse.cli import build_parser\nbuild_parser('agent').parse_args(['agent'])")
    assert "gpulse.cli" in loaded
    assert loaded.isdisjoint(OTHER_COMMANDS_MODULES)


def test_an_external_command_loads_only_its_own_module() -> None:
    loaded = loaded_after("from gpulse.cli import build_parser\nbuild_parser('silence')")
    assert "gpulse.silences" in loaded
    assert loaded.isdisjoint(set(OTHER_COMMANDS_MODULES) - {"gpulse.silences"})


def test_full_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out
    for command in ("agent", "collector", "demo", "top", "pki", "check-config", *EXTERNAL_COMMANDS):
        assert command in usage


@pytest.mark.parametrize("command", sorted(EXTERNAL_COMMANDS))
def test_each_external_command_parses_through_main(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: gpulse {command}" in capsys.readouterr().out


def test_unknown_command_is_refused_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2
    assert "gpu-smoke" in capsys.readouterr().err


def test_parser_built_for_a_command_still_parses_it() -> None:
    args = build_parser("agent").parse_args(["agent", "--config", "/tmp/agent.toml"])
    assert args.command == "agent"
    assert str(args.config) == "/tmp/agent.toml"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_the_package_and_the_wire_protocol(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from protos.codec import PROTOCOL_VERSION
    from runtime import __version__

    with pytest.raises(SystemExit) as exit_:
        main([flag])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"gpulse {__version__} (wire protocol {PROTOCOL_VERSION})"
