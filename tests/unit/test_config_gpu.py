"""The agent's [gpu] nvml settings and [health] thresholds: read, defaulted, and refused with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config as agent_config
from agent.health import HealthThresholds
from runtime.configfile import ConfigError

BASE = """
host_id = "node-1"
[collector]
targets = ["c1:7443"]
[tls]
ca = "/etc/gpulse/ca.pem"
cert = "/etc/gpulse/agent.pem"
key = "/etc/gpulse/agent-key.pem"
"""


def load(tmp_path: Path, extra: str) -> agent_config.AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(BASE + extra)
    return agent_config.load(path)


def test_defaults_when_absent(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.nvml == agent_config.NvmlConfig() and config.health == HealthThresholds()


def test_reads_nvml_and_health_settings(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[gpu]
source = "nvml"
init_wait = 120
read_budget = 0.25
slow_every = 5
xid_coalesce = 2.5
kernel_log = ""
[health]
window = 120
pcie_replays = 16
retired_pages = 48
xid_hold = 0
""",
    )
    assert (config.nvml.init_wait, config.nvml.read_budget, config.nvml.slow_every) == (120, 0.25, 5)
    assert (config.nvml.xid_coalesce, config.nvml.kernel_log) == (2.5, "")
    assert (config.health.window_s, config.health.pcie_replays, config.health.retired_pages_total) == (120, 16, 48)
    assert config.health.xid_hold_s == 0 and config.health.nvlink_crc_errors == 100  # untouched keys keep defaults


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[gpu]\nslow_every = 0\n", "slow_every"),
        ("[gpu]\ninit_wait = -1\n", "init_wait"),
        ("[gpu]\nread_budget = 0\n", "read_budget"),
        ("[gpu]\nkernel_log = 3\n", "kernel_log"),
        ("[health]\nwindow = 0\n", "window"),
        ("[health]\nbusy_utilization = 2\n", "busy_utilization"),
        ("[health]\npcie_replays = -1\n", "pcie_replays"),
        ("[health]\nthreshold = 1\n", "threshold"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load(tmp_path, extra)
