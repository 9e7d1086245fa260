"""`gpulse gpu-smoke --full` against the C stub libnvidia-ml.so.1 and a fake `nvidia-smi -q -x`."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from agent.records import GpuInfo
from gpulse.gpusmoke_full import collector_coverage, coverage
from protos.fields import CATALOG
from tests.fakes.nvml_stub import StubConfig, StubGpu, build

REPO = Path(__file__).resolve().parents[2]

SMI_XML = """<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>550.90.07</driver_version>
  <attached_gpus>1</attached_gpus>
  <gpu id="00000000:18:00.0">
    <product_name>NVIDIA H100 80GB HBM3</product_name>
    <serial>1654922001234</serial>
    <uuid>{uuid}</uuid>
    <vbios_version>96.00.99.00.01</vbios_version>
    <mig_mode><current_mig>Disabled</current_mig><pending_mig>Disabled</pending_mig></mig_mode>
    <pci><pci_bus_id>00000000:18:00.0</pci_bus_id></pci>
    <fb_memory_usage><total>81920 MiB</total><reserved>0 MiB</reserved><used>67584 MiB</used></fb_memory_usage>
    <temperature><gpu_temp>{temp} C</gpu_temp></temperature>
    <gpu_power_readings><power_draw>612.00 W</power_draw></gpu_power_readings>
    <clocks><sm_clock>1980 MHz</sm_clock><mem_clock>2619 MHz</mem_clock></clocks>
  </gpu>
</nvidia_smi_log>
"""


def smoke(tmp_path: Path, cache: Path, temp: int, *extra: str) -> subprocess.CompletedProcess[str]:
    config = StubConfig(tmp_path / "stub.conf", [StubGpu.h100(0)], lib=build(cache))
    config.write()
    xml = tmp_path / "smi.xml"
    xml.write_text(SMI_XML.format(uuid=config.gpus[0].values["uuid"], temp=temp))
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\n[ "$1 $2" = "-q -x" ] || exit 9\ncat {xml}\n')
    smi.chmod(0o755)
    return subprocess.run(
        [sys.executable, "-m", "gpulse.cli", "gpu-smoke", "--full", "--seconds", "2", "--agent-seconds", "4",
         "--nvidia-smi", str(smi), *extra],
        cwd=REPO, env=config.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_full_smoke_agrees_with_nvidia_smi_xml_and_lists_unsupported_fields(
    tmp_path: Path, nvml_stub_cache: Path
) -> None:
    result = smoke(tmp_path, nvml_stub_cache, temp=64)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MISMATCH" not in result.stdout
    assert "never read though supported: none" in result.stdout
    assert "the agent for 4 s against a local collector:" in result.stdout
    assert "supported but no series at the collector: none" in result.stdout
    assert "not supported by this GPU: fan_speed" in result.stdout  # the SXM board's missing fan


def test_full_smoke_fails_on_a_reading_nvidia_smi_disagrees_with(tmp_path: Path, nvml_stub_cache: Path) -> None:
    result = smoke(tmp_path, nvml_stub_cache, 90, "--no-agent")  # the stub reads 64 C
    assert result.returncode == 1
    assert "temperature" in result.stdout and "MISMATCH beyond tolerance" in result.stdout


def test_a_supported_field_without_a_value_is_a_failure() -> None:
    names = [CATALOG[fid].name for fid in CATALOG.gpu_ids]
    fan = CATALOG.gpu("fan_speed").id
    info = GpuInfo(index=0, uuid="GPU-x", name="x", unsupported_field_ids=frozenset({fan}))
    row = [1.0 if n not in ("fan_speed", "temperature") else math.nan for n in names]
    (c,) = coverage([info], [[row], [row]])
    assert c.missing == ["temperature"] and c.unsupported == ["fan_speed"]


def test_a_supported_field_with_no_series_at_the_collector_is_listed() -> None:
    info = GpuInfo(index=0, uuid="GPU-x", name="x")
    temp = CATALOG.gpu("temperature").metric_name
    power = CATALOG.gpu("power_usage").metric_name
    text = f'{temp}{{host="h",gpu="0"}} 64\n{power}{{host="h",gpu="0"}} NaN\n{power}{{host="other",gpu="0"}} 1\n'
    (c,) = collector_coverage([info], text, "h")
    assert "temperature" not in c.missing and "power_usage" in c.missing  # NaN or another host's is no value
