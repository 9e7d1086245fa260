"""`gpulse check-config [KIND] FILE`: infers the kind, and names the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulse.cli import main
from tests.kit import ROOT

EXAMPLES = ROOT / "deploy" / "config"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    # The examples name TLS files under /etc/gpulse, not present here; test_check_config_tls.py checks those.
    code = main(["check-config", "--no-tls", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("kind", ["agent", "collector"])
def test_kind_is_inferred_from_the_contents(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "some.toml"  # a name that gives nothing away
    copy.write_text((EXAMPLES / f"{kind}.toml").read_text())
    code, out = run(capsys, str(copy))
    assert code == 0 and f"ok ({kind} config" in out


def test_explicit_kind_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "agent", str(EXAMPLES / "agent.toml"))[0] == 0
    code, out = run(capsys, "router", str(EXAMPLES / "agent.toml"))
    assert code == 2 and "unknown kind 'router'" in out


def test_a_bad_value_names_file_key_and_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text((EXAMPLES / "agent.toml").read_text().replace("interval = 1.0", "interval = -1"))
    code, out = run(capsys, str(path))
    assert code == 2
    assert f"{path}: interval: must be greater than 0, got -1" in out


def test_an_unknown_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "collector.toml"
    path.write_text((EXAMPLES / "collector.toml").read_text().replace("[limits]", "[limits]\nmax_hosst = 3"))
    code, out = run(capsys, str(path))
    assert code == 2 and f"{path}: limits.max_hosst: unknown key" in out


def test_a_secret_from_an_unset_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPULSE_TEST_ROUTING_KEY", raising=False)
    path = tmp_path / "collector.toml"
    path.write_text(
        (EXAMPLES / "collector.toml").read_text()
        + '\n[[alerting.receivers]]\nname = "pd"\ntype = "pagerduty"\nrouting_key_env = "GPULSE_TEST_ROUTING_KEY"\n'
    )
    code, out = run(capsys, str(path))
    assert code == 2
    assert "alerting.receivers[0].routing_key_env: environment variable GPULSE_TEST_ROUTING_KEY is not set" in out
    monkeypatch.setenv("GPULSE_TEST_ROUTING_KEY", "k" * 32)
    assert run(capsys, str(path))[0] == 0


def test_a_file_that_is_neither_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.toml"
    path.write_text('[tls]\nca = "a"\ncert = "b"\nkey = "c"\n')
    code, out = run(capsys, str(path))
    assert code == 2 and "cannot tell an agent config from a collector config" in out


def test_a_missing_file_and_broken_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, str(tmp_path / "none.toml"))
    assert code == 2 and "none.toml: file not found" in out
    broken = tmp_path / "agent.toml"
    broken.write_text("interval = = 3\n")
    code, out = run(capsys, str(broken))
    assert code == 2 and "invalid TOML" in out


@pytest.mark.parametrize("command", ["agent", "collector"])
def test_services_exit_2_on_a_config_error_so_systemd_does_not_restart_them(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The units say RestartPreventExitStatus=2: a bad config stays failed instead of restarting in a loop.
    assert main([command, "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: file not found" in capsys.readouterr().err


BAD_RULE = '[[rule]]\nname = "Hot"\nexpr = "temperatur > 90"\nseverity = "warning"\n'


def test_a_rule_file_is_checked_as_the_collector_would_load_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "site.toml"
    good.write_text('[[rule]]\nname = "Hot"\nexpr = "temperature > 90"\nseverity = "warning"\nfor = "30s"\n')
    code, out = run(capsys, "rules", str(good))
    assert code == 0 and f"{good}: ok (1 rules)" in out
    assert run(capsys, str(good)) == (0, f"{good}: ok (1 rules)\n")  # the kind told by its [[rule]] tables
    bad = tmp_path / "typo.toml"
    bad.write_text(BAD_RULE)
    code, out = run(capsys, "rules", str(bad))
    assert code == 2 and f"{bad}: rule 'Hot': unknown signal 'temperatur'" in out


def test_a_collector_config_is_checked_with_the_rule_files_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, str(EXAMPLES / "collector.toml"))
    assert code == 0 and "rules from builtin:default.toml" in out
    bad = tmp_path / "typo.toml"
    bad.write_text(BAD_RULE)
    path = tmp_path / "collector.toml"
    example = (EXAMPLES / "collector.toml").read_text()
    path.write_text(example.replace('rules = ["builtin:default.toml"]', f'rules = ["{bad}"]'))
    code, out = run(capsys, str(path))
    assert code == 2 and f"{bad}: rule 'Hot': unknown signal 'temperatur'" in out
