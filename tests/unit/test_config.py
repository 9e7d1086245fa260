from __future__ import annotations

from pathlib import Path

import pytest

from agent import config as agent_config
from collector import config as collector_config
from gpulse.cli import main
from runtime.configfile import ConfigError

AGENT = """
host_id = "node-1"
interval = 0.5
[collector]
targets = ["c1:7443", "c2:7443"]
[tls]
ca = "/etc/gpulse/ca.pem"
cert = "/etc/gpulse/agent.pem"
key = "/etc/gpulse/agent-key.pem"
[gpu]
source = "sim"
[sim]
count = 4
profile = "A100"
[[sim.faults]]
kind = "xid"
gpu = 2
at = 60
xid = 79
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_agent_config_reads_every_section(tmp_path: Path) -> None:
    config = agent_config.load(write(tmp_path, AGENT))
    assert config.host_id == "node-1"
    assert config.collectors == ("c1:7443", "c2:7443")
    assert config.interval == 0.5
    assert config.sim.count == 4 and config.sim.profile == "A100"
    assert config.sim.faults[0].xid == 79 and config.sim.faults[0].gpu == 2


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (("interval = 0.5", "interval = -1"), "interval", "must be greater than 0"),
        (("interval = 0.5", 'interval = "fast"'), "interval", "expected float, got str"),
        (('source = "sim"', 'source = "cuda"'), "gpu.source", "must be one of nvml, sim, replay, none"),
        (("count = 4", "count = 4\ncolour = 1"), "sim.colour", "unknown key"),
        (("gpu = 2", "gpu = 9"), "sim.faults[0].gpu", "must be between 0 and 3"),
        (('targets = ["c1:7443", "c2:7443"]', "targets = []"), "collector.targets", "non-empty list"),
        (('cert = "/etc/gpulse/agent.pem"\n', ""), "tls.cert", "required key is missing"),
        (("[tls]", "keepalive = 5.0\n[tls]"), "collector.keepalive", "at least 10 s, the most often collectors"),
        (("[tls]", "keepalive_timeout = 0\n[tls]"), "collector.keepalive_timeout", "must be greater than 0"),
    ],
)
def test_bad_agent_config_names_file_key_and_problem(
    tmp_path: Path, edit: tuple[str, str], key: str, problem: str
) -> None:
    path = write(tmp_path, AGENT.replace(*edit))
    with pytest.raises(ConfigError) as caught:
        agent_config.load(path)
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(path) in str(caught.value)


def test_keepalive_settings_reach_the_channel_the_shipper_opens(tmp_path: Path) -> None:
    from agent.main import build_agent
    from agent.spool.memory import MemorySpool

    def channel_options(text: str) -> dict[str, int | str]:
        config = agent_config.load(write(tmp_path, text))
        _, shipper = build_agent(config, spool=MemorySpool(), credentials=lambda: None)  # type: ignore[arg-type]
        return dict(shipper.channel_options)

    default = channel_options(AGENT)
    assert (default["grpc.keepalive_time_ms"], default["grpc.keepalive_timeout_ms"]) == (20_000, 10_000)
    options = channel_options(AGENT.replace("[tls]", "keepalive = 12.5\nkeepalive_timeout = 4\n[tls]"))
    assert (options["grpc.keepalive_time_ms"], options["grpc.keepalive_timeout_ms"]) == (12_500, 4_000)
    assert options["grpc.http2.ping_timeout_ms"] == 4_000  # what recent gRPC cores time a ping out by


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        agent_config.load(write(tmp_path, "host_id = \n"))
    with pytest.raises(ConfigError, match="file not found"):
        agent_config.load(tmp_path / "nope.toml")


def test_collector_config_defaults_and_errors(tmp_path: Path) -> None:
    text = '[tls]\nca = "a"\ncert = "b"\nkey = "c"\n'
    config = collector_config.load(write(tmp_path, text, "c.toml"))
    assert config.listen == "0.0.0.0:7443"
    with pytest.raises(ConfigError, match="listen: expected 'host:port', got 'nowhere'"):
        collector_config.load(write(tmp_path, 'listen = "nowhere"\n' + text, "c.toml"))


def test_agent_command_exits_non_zero_naming_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, AGENT.replace("interval = 0.5", "interval = 0"))
    assert main(["agent", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "interval" in err and "must be greater than 0" in err


def test_spool_section_defaults_to_disk_with_at_most_a_second_at_risk(tmp_path: Path) -> None:
    config = agent_config.load(write(tmp_path, AGENT))
    assert config.spool.kind == "disk" and config.spool.fsync == "interval" and config.spool.fsync_interval == 1.0
    text = AGENT + '[spool]\nkind = "memory"\nmax_records = 100\n'
    assert agent_config.load(write(tmp_path, text)).spool.max_records == 100


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ('fsync = "sometimes"', "spool.fsync", "must be one of always, interval, never"),
        ("max_bytes = 10", "spool.max_bytes", "at least 65536"),
        ("max_age = -1", "spool.max_age", "0 (no limit) or more"),
        ("fsync_interval = 0", "spool.fsync_interval", "greater than 0"),
        ("segment_size = 1", "spool.segment_size", "unknown key"),
    ],
)
def test_bad_spool_settings_are_refused(tmp_path: Path, section: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        agent_config.load(write(tmp_path, AGENT + f"[spool]\n{section}\n"))
    assert caught.value.key == key and problem in caught.value.problem


def test_the_agent_spools_on_disk_under_its_state_dir_unless_memory_is_chosen(tmp_path: Path) -> None:
    from agent.main import make_spool
    from agent.spool.disk import DiskSpool
    from agent.spool.memory import MemorySpool

    text = AGENT.replace('host_id = "node-1"\n', f'host_id = "node-1"\nstate_dir = "{tmp_path / "state"}"\n')
    disk = make_spool(agent_config.load(write(tmp_path, text)))
    try:
        assert isinstance(disk, DiskSpool) and disk.directory == tmp_path / "state" / "spool"
    finally:
        disk.close()
    memory = make_spool(agent_config.load(write(tmp_path, text + '[spool]\nkind = "memory"\n')))
    assert isinstance(memory, MemorySpool)
