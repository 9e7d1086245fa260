"""The GPU smoke check's comparison against nvidia-smi output, on the fake NVML and a fake nvidia-smi."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pynvml
import pytest

from agent.sources.nvml import NvmlBackend
from gpulse.gpusmoke import QUERY, compare, parse_nvidia_smi, render, run_smoke
from tests.fakes.nvml import FakeGpu, FakeNvml


def smi_line(index: int, gpu: FakeGpu, **override: str) -> str:
    values = {
        "index": str(index),
        "uuid": gpu.uuid,
        "name": gpu.name,
        "serial": gpu.serial,
        "pci.bus_id": gpu.pci_bus_id,
        "driver_version": "550.90.07",
        "vbios_version": gpu.vbios,
        "memory.total": str(gpu.memory_total // 2**20),
        "power.max_limit": "700.00",
        "pcie.link.gen.max": "5",
        "pcie.link.width.max": "16",
        "temperature.gpu": "65",
        "utilization.gpu": "96",
        "memory.used": str(gpu.memory_used // 2**20 + 300),
        "power.draw": "598.31",
        "power.limit": "700.00",
        "clocks.sm": "1965",
        "clocks.mem": "2619",
        "clocks.max.sm": "1980",
        "pcie.link.gen.current": "5",
        "pcie.link.width.current": "16",
        "ecc.errors.uncorrected.volatile.total": "0",
        "ecc.errors.corrected.aggregate.total": "4",
    }
    values.update(override)
    return ", ".join(values[k] for k in QUERY.split(","))


def read(fake: FakeNvml):  # type: ignore[no-untyped-def]
    b = NvmlBackend(fake, kmsg_path=None, xid_wait_ms=20, budget_s=5.0)
    inv = b.open()
    sample = b.sample(time.time_ns())
    b.close()
    return inv, sample


def test_agreeing_readings_pass_within_tolerance() -> None:
    fake = FakeNvml()
    inv, sample = read(fake)
    smi = parse_nvidia_smi("\n".join(smi_line(i, g) for i, g in enumerate(fake.gpus)))
    rows = compare(inv, sample, smi)
    assert rows and all(r.ok for r in rows), render([r for r in rows if not r.ok])


@pytest.mark.parametrize(
    ("override", "label"),
    [
        ({"temperature.gpu": "80"}, "temperature"),
        ({"uuid": "GPU-other"}, "uuid"),
        ({"power.draw": "300.00"}, "power draw"),
        ({"pcie.link.width.current": "8"}, "PCIe width"),
        ({"ecc.errors.uncorrected.volatile.total": "[N/A]"}, "ECC DBE volatile"),
    ],
)
def test_a_mismatch_beyond_tolerance_fails_and_names_the_field(override: dict[str, str], label: str) -> None:
    fake = FakeNvml()
    inv, sample = read(fake)
    smi = parse_nvidia_smi("\n".join(smi_line(i, g, **(override if i == 1 else {})) for i, g in enumerate(fake.gpus)))
    bad = [(r.gpu, r.label) for r in compare(inv, sample, smi) if not r.ok]
    assert bad == [(1, label)]


def test_a_field_both_sides_lack_agrees_and_one_side_lacking_does_not() -> None:
    fake = FakeNvml()
    for g in fake.gpus:
        g.unsupported_fields.add(pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL)
    inv, sample = read(fake)
    both = parse_nvidia_smi(
        "\n".join(smi_line(i, g, **{"ecc.errors.corrected.aggregate.total": "[N/A]"}) for i, g in enumerate(fake.gpus))
    )
    assert all(r.ok for r in compare(inv, sample, both))
    one = parse_nvidia_smi("\n".join(smi_line(i, g) for i, g in enumerate(fake.gpus)))
    assert [r.note for r in compare(inv, sample, one) if not r.ok] == ["gpulse has no value"] * 2


def test_a_gpu_only_one_side_sees_fails() -> None:
    fake = FakeNvml()
    inv, sample = read(fake)
    rows = compare(inv, sample, parse_nvidia_smi(smi_line(0, fake.gpus[0])))
    assert [(r.gpu, r.note) for r in rows if not r.ok] == [(1, "nvidia-smi does not list this GPU")]


def test_malformed_nvidia_smi_output_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_nvidia_smi("0, GPU-x, too short")


def fake_smi(tmp_path: Path, text: str) -> str:
    script = tmp_path / "nvidia-smi"
    (tmp_path / "out.csv").write_text(text + "\n")
    script.write_text(f'#!/bin/sh\ncase "$1" in --query-gpu=*) cat {tmp_path / "out.csv"};; *) exit 9;; esac\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_run_smoke_prints_both_and_exits_by_the_comparison(tmp_path: Path) -> None:
    fake = FakeNvml()
    lines: list[str] = []
    good = fake_smi(tmp_path, "\n".join(smi_line(i, g) for i, g in enumerate(fake.gpus)))
    assert (
        run_smoke(NvmlBackend(fake, kmsg_path=None, xid_wait_ms=20, budget_s=5.0), nvidia_smi=good, out=lines.append)
        == 0
    )
    text = "\n".join(lines)
    assert "GPU 0: NVIDIA H100 80GB HBM3 GPU-fake-0" in text and "checks agree" in text
    fake2 = FakeNvml()
    bad = fake_smi(tmp_path, "\n".join(smi_line(i, g, **{"temperature.gpu": "99"}) for i, g in enumerate(fake2.gpus)))
    lines.clear()
    assert (
        run_smoke(NvmlBackend(fake2, kmsg_path=None, xid_wait_ms=20, budget_s=5.0), nvidia_smi=bad, out=lines.append)
        == 1
    )
    assert "MISMATCH" in "\n".join(lines)
