from __future__ import annotations

from pathlib import Path

import pytest

from collector.alert import AlertState
from collector.detect.backtest import backtest
from gpulse.cli import main


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "t.jsonl"
    code = main(
        [
            "record",
            str(path),
            "--hosts",
            "2",
            "--gpus",
            "4",
            "--duration",
            "180",
            "--seed",
            "2",
            "--fault",
            "kind=dbe,host=1,gpu=2,at=60",
            "--fault",
            "kind=pcie_replay_storm,host=0,gpu=1,at=90,severity=0.5",
        ]
    )
    assert code == 0
    return path


def test_backtest_finds_the_recorded_faults_at_their_times(trace: Path) -> None:
    result = backtest(trace)
    assert result.frames == 2 * 181 and result.events == 1
    firing = {
        (a.name, a.labels["host"], a.labels.get("gpu")): at - result.start
        for at, a in result.alerts
        if a.state is AlertState.FIRING
    }
    assert firing[("GpuXidMemoryUncorrectable", "sim-001", "2")] == 60.0  # on the event, not the next tick
    assert firing[("GpuVolatileDbe", "sim-001", "2")] <= 62.0
    assert 90.0 < firing[("GpuPcieReplayRate", "sim-000", "1")] <= 105.0
    assert {host for _, host, _ in firing} == {"sim-000", "sim-001"}
    assert {gpu for _, host, gpu in firing if host == "sim-001"} == {"2"}


def test_backtest_command_prints_alerts_with_times(
    trace: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rules = tmp_path / "only-dbe.toml"
    rules.write_text(
        '[[rule]]\nname = "Dbe"\nexpr = "increase(ecc_uncorrected_volatile[5m]) > 0"\nseverity = "critical"\n'
    )
    assert main(["backtest", str(trace), "--rules", str(rules)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].split()[:5] == ["+", "61.0s", "firing", "critical", "Dbe"] or out[0].split()[:4] == [
        "+61.0s",
        "firing",
        "critical",
        "Dbe",
    ]
    assert "sim-001 gpu 2" in out[0]


def test_backtest_command_refuses_bad_rules_and_traces(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "bad.toml"
    rules.write_text('[[rule]]\nname = "X"\nexpr = "rate(nope[1m]) > 1"\nseverity = "info"\n')
    assert main(["backtest", str(trace), "--rules", str(rules)]) == 2
    assert "bad.toml: rule 'X': unknown signal 'nope'" in capsys.readouterr().err
    (tmp_path / "t.jsonl").write_text("hello\n")
    assert main(["backtest", str(tmp_path / "t.jsonl")]) == 2
    assert "t.jsonl:1: invalid JSON" in capsys.readouterr().err
