from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from agent.config import parse
from agent.record import RecordPlan, parse_fault, record
from agent.sources.gpu import BackendUnavailable
from agent.sources.replay import ReplayBackend
from agent.sources.sim import FaultKind
from protos.fields import CATALOG
from runtime.configfile import ConfigError
from tests.kit import gpu_rows

TEMP = CATALOG.gpu_ids.index(CATALOG.gpu("temperature").id)


def recorded(tmp_path: Path, **plan: object) -> Path:
    out = io.StringIO()
    record(out, RecordPlan(**{"hosts": 2, "gpus": 2, "duration": 10.0, **plan}))  # type: ignore[arg-type]
    path = tmp_path / "trace.jsonl"
    path.write_text(out.getvalue())
    return path


def test_replay_plays_the_trace_on_the_live_clock(tmp_path: Path) -> None:
    path = recorded(tmp_path, faults=(parse_fault("kind=xid,host=1,gpu=1,at=4,xid=43"),))
    backend = ReplayBackend(path, host="sim-001")
    gpus = backend.open()
    assert [g.index for g in gpus] == [0, 1] and gpus[0].uuid.startswith("GPU-")
    assert backend.field_ids == CATALOG.gpu_ids
    live = 5_000_000_000_000
    first = gpu_rows(backend.sample(live))
    assert first.shape == (2, len(CATALOG.gpu_ids)) and 20 < first[0, TEMP] < 95
    assert backend.drain_events() == []
    gpu_rows(backend.sample(live + 3_500_000_000))  # trace t+3.5: not yet
    assert backend.drain_events() == []
    gpu_rows(backend.sample(live + 4_000_000_000))
    (event,) = backend.drain_events()
    assert event.xid.xid == 43 and event.xid.gpu_index == 1
    assert event.unix_ns == live + 4_000_000_000  # stamped with live time
    # past the end without looping: not read
    assert np.isnan(gpu_rows(backend.sample(live + 60_000_000_000))).all()


def test_replay_loops_and_speeds_up(tmp_path: Path) -> None:
    path = recorded(tmp_path, faults=(parse_fault("kind=xid,host=0,gpu=0,at=2,xid=13"),))
    backend = ReplayBackend(path, speed=2.0, loop=True)
    backend.open()
    live = 10**15
    gpu_rows(backend.sample(live))
    gpu_rows(backend.sample(live + 1_000_000_000))  # trace +2s at double speed
    assert [e.xid.xid for e in backend.drain_events()] == [13]
    gpu_rows(backend.sample(live + 6_000_000_000))  # +12s: the second lap, at +1s
    gpu_rows(backend.sample(live + 6_600_000_000))  # +13.2s: lap two, +2.2s
    assert [e.xid.xid for e in backend.drain_events()] == [13]
    assert np.isfinite(gpu_rows(backend.sample(live + 7_000_000_000))).any()


def test_unusable_traces_refuse_to_start(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="not found"):
        ReplayBackend(tmp_path / "nope.jsonl").open()
    path = recorded(tmp_path)
    with pytest.raises(BackendUnavailable, match="no host 'other'"):
        ReplayBackend(path, host="other").open()
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(BackendUnavailable, match="not a gpulse trace"):
        ReplayBackend(tmp_path / "bad.jsonl").open()


def _config(tmp_path: Path, **replay: object) -> dict[str, object]:
    return {
        "collector": {"targets": ["127.0.0.1:7443"]},
        "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem"},
        "gpu": {"source": "replay"},
        "replay": replay,
    }


def test_replay_config(tmp_path: Path) -> None:
    config = parse(tmp_path / "a.toml", _config(tmp_path, path="/var/lib/t.jsonl", host="n1", speed=10, loop=True))
    assert config.replay.path == Path("/var/lib/t.jsonl") and config.replay.speed == 10.0 and config.replay.loop
    with pytest.raises(ConfigError, match=r"replay.path: required key is missing"):
        parse(tmp_path / "a.toml", _config(tmp_path))
    with pytest.raises(ConfigError, match=r"replay.speed: must be greater than 0"):
        parse(tmp_path / "a.toml", _config(tmp_path, path="/t", speed=0))
    with pytest.raises(ConfigError, match=r"replay.lop: unknown key"):
        parse(tmp_path / "a.toml", _config(tmp_path, path="/t", lop=True))


def test_fault_specs() -> None:
    host, fault = parse_fault("kind=straggler,host=1,gpu=3,at=120,severity=0.25,duration=60")
    assert (host, fault.kind, fault.gpu, fault.at, fault.severity, fault.duration) == (
        1,
        FaultKind.STRAGGLER,
        3,
        120.0,
        0.25,
        60.0,
    )
    for bad, reason in (
        ("kind=melt", "kind must be one of"),
        ("kind=xid,color=red", "unknown key"),
        ("xid", "key=value"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_fault(bad)


def test_a_host_whose_gpu_count_changes_mid_trace_is_refused_at_open(tmp_path: Path) -> None:
    path = recorded(tmp_path, hosts=1, duration=3.0)
    lines = path.read_text().splitlines()
    host_line = next(line for line in lines if '"type":"host"' in line)
    fewer = host_line.replace(host_line[host_line.index('"gpus":') :], '"gpus":[]}')
    frame = next(line for line in lines if '"type":"frame"' in line)
    later = frame.replace('"unix_ns":1700000000000000000', '"unix_ns":1700000099000000000')
    later = later[: later.index('"gpu":')] + '"gpu":[]}'
    path.write_text("\n".join([*lines, fewer, later]) + "\n")
    with pytest.raises(BackendUnavailable, match="changes its number of GPUs"):
        ReplayBackend(path).open()
