"""`gpulse gpu-smoke`: what the nvml source reads, side by side with nvidia-smi, failing on a mismatch.

The comparison is a pure function over the backend's inventory and one sample and nvidia-smi's CSV,
so it is tested without a GPU; the shell runs both on a real machine.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.records import GpuInfo, Rows
from agent.sources.gpu import GpuBackend
from protos.fields import CATALOG

__all__ = ["QUERY", "Check", "Row", "add_parser", "compare", "parse_nvidia_smi", "render", "run_smoke"]


@dataclass(frozen=True, slots=True)
class Check:
    """One nvidia-smi query field and how to read ours for it."""

    query: str
    label: str
    ours: Callable[[GpuInfo, dict[str, float]], float | str]
    scale: float = 1.0  # nvidia-smi value times this = our unit
    abs_tol: float = 0.0
    rel_tol: float = 0.0


def _field(name: str) -> Callable[[GpuInfo, dict[str, float]], float | str]:
    return lambda info, values: values[name]


def _static(attr: str) -> Callable[[GpuInfo, dict[str, float]], float | str]:
    return lambda info, values: getattr(info, attr)


_MIB = 2**20
# Static identity must match exactly; live readings move between the two reads, so they get a
# tolerance an operator would accept as "the same reading".
CHECKS: tuple[Check, ...] = (
    Check("uuid", "uuid", _static("uuid")),
    Check("name", "name", _static("name")),
    Check("serial", "serial", _static("serial")),
    Check("pci.bus_id", "PCI bus id", _static("pci_bus_id")),
    Check("driver_version", "driver", _static("driver_version")),
    Check("vbios_version", "VBIOS", _static("vbios_version")),
    Check("memory.total", "memory total", _static("memory_total_bytes"), _MIB, abs_tol=_MIB),
    Check("power.max_limit", "power limit max", _static("power_limit_max_watts"), abs_tol=1.0),
    Check("pcie.link.gen.max", "PCIe max gen", _static("pcie_max_generation")),
    Check("pcie.link.width.max", "PCIe max width", _static("pcie_max_width")),
    Check("temperature.gpu", "temperature", _field("temperature"), abs_tol=3.0),
    Check("utilization.gpu", "utilization", _field("utilization"), 0.01, abs_tol=0.25),
    Check("memory.used", "memory used", _field("memory_used"), _MIB, abs_tol=512 * _MIB, rel_tol=0.05),
    Check("power.draw", "power draw", _field("power_usage"), abs_tol=30.0, rel_tol=0.15),
    Check("power.limit", "power limit", _field("power_limit"), abs_tol=1.0),
    Check("clocks.sm", "SM clock", _field("sm_clock"), 1e6, rel_tol=0.15, abs_tol=100e6),
    Check("clocks.mem", "memory clock", _field("memory_clock"), 1e6, rel_tol=0.05, abs_tol=20e6),
    Check("clocks.max.sm", "SM clock max", _field("sm_clock_max"), 1e6, abs_tol=1e6),
    Check("pcie.link.gen.current", "PCIe gen", _field("pcie_link_generation"), abs_tol=1.0),
    Check("pcie.link.width.current", "PCIe width", _field("pcie_link_width")),
    Check("ecc.errors.uncorrected.volatile.total", "ECC DBE volatile", _field("ecc_uncorrected_volatile")),
    Check("ecc.errors.corrected.aggregate.total", "ECC SBE aggregate", _field("ecc_corrected_aggregate"), abs_tol=5),
)
QUERY = ",".join(["index", *(c.query for c in CHECKS)])
_ABSENT = ("[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", "")


@dataclass(frozen=True, slots=True)
class Row:
    gpu: int
    label: str
    ours: str
    theirs: str
    ok: bool
    note: str = ""


def parse_nvidia_smi(text: str) -> dict[int, dict[str, str]]:
    """``nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`` output, per GPU index."""
    keys = QUERY.split(",")
    out: dict[int, dict[str, str]] = {}
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(keys):
            raise ValueError(f"nvidia-smi line has {len(cells)} fields, expected {len(keys)}: {line!r}")
        row = dict(zip(keys, cells, strict=True))
        out[int(row["index"])] = row
    return out


def _normalise_text(query: str, value: str) -> str:
    value = value.strip()
    if query == "pci.bus_id":
        return value.lower().removeprefix("0000")  # nvidia-smi prints 8-digit domains, NVML sometimes 4
    return value


def compare(inventory: list[GpuInfo], sample: Rows, smi: dict[int, dict[str, str]]) -> list[Row]:
    """Every check for every GPU: ours next to nvidia-smi's, and whether they agree within tolerance."""
    rows: list[Row] = []
    names = [CATALOG[fid].name for fid in CATALOG.gpu_ids]
    for info in inventory:
        theirs_all = smi.get(info.index)
        if theirs_all is None:
            rows.append(Row(info.index, "present", "yes", "no", False, "nvidia-smi does not list this GPU"))
            continue
        values = dict(zip(names, (float(v) for v in sample[info.index]), strict=True))
        for check in CHECKS:
            ours = check.ours(info, values)
            theirs = theirs_all[check.query]
            rows.append(_compare_one(info.index, check, ours, theirs))
    listed = {g.index for g in inventory}
    rows += [Row(i, "present", "no", "yes", False, "gpulse does not see this GPU") for i in smi if i not in listed]
    return rows


def _compare_one(gpu: int, check: Check, ours: float | str, theirs: str) -> Row:
    absent_theirs = theirs in _ABSENT
    if isinstance(ours, str):
        a, b = _normalise_text(check.query, ours), _normalise_text(check.query, theirs)
        return Row(gpu, check.label, ours, theirs, (absent_theirs and not ours) or a == b)
    absent_ours = math.isnan(ours)
    if absent_ours or absent_theirs:
        ok = absent_ours and absent_theirs
        note = "" if ok else ("gpulse has no value" if absent_ours else "nvidia-smi has no value")
        return Row(gpu, check.label, "absent" if absent_ours else f"{ours:g}", theirs, ok, note)
    try:
        expected = float(theirs) * check.scale
    except ValueError:
        return Row(gpu, check.label, f"{ours:g}", theirs, False, "nvidia-smi value is not a number")
    ok = math.isclose(ours, expected, rel_tol=check.rel_tol, abs_tol=check.abs_tol) or ours == expected
    return Row(gpu, check.label, f"{ours:g}", f"{expected:g}", ok, "" if ok else "beyond tolerance")


def render(rows: list[Row]) -> str:
    """A plain table, mismatches marked."""
    lines = [f"{'gpu':>3}  {'field':<20} {'gpulse':>26} {'nvidia-smi':>26}  result"]
    for r in rows:
        mark = "ok" if r.ok else f"MISMATCH {r.note}".rstrip()
        lines.append(f"{r.gpu:>3}  {r.label:<20} {r.ours[:26]:>26} {r.theirs[:26]:>26}  {mark}")
    bad = sum(1 for r in rows if not r.ok)
    lines.append(f"{len(rows) - bad} of {len(rows)} checks agree" + (f"; {bad} mismatched" if bad else ""))
    return "\n".join(lines)


def run_smoke(
    backend: GpuBackend,
    *,
    nvidia_smi: str = "nvidia-smi",
    timeout_s: float = 60.0,
    out: Callable[[str], None] = print,
) -> int:
    """Read inventory and one sample, run nvidia-smi, print both; 0 when all agree, 1 on a mismatch."""
    inventory = backend.open()
    try:
        backend.sample(time.time_ns())  # the first read primes rates and the slow tier
        sample = backend.sample(time.time_ns())
    finally:
        backend.close()
    out("gpulse inventory:")
    for g in inventory:
        unsupported = ", ".join(sorted(CATALOG[f].name for f in g.unsupported_field_ids)) or "none"
        out(
            f"  GPU {g.index}: {g.name} {g.uuid} PCI {g.pci_bus_id} driver {g.driver_version} CUDA {g.cuda_version}"
            f" VBIOS {g.vbios_version} {g.memory_total_bytes / 2**30:.0f} GiB, NVLinks {g.nvlink_count},"
            f" MIG {'on' if g.mig_mode else 'off'}; unsupported: {unsupported}"
        )
    exe = shutil.which(nvidia_smi) or nvidia_smi
    result = subprocess.run(
        [exe, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"nvidia-smi failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    rows = compare(inventory, sample, parse_nvidia_smi(result.stdout))
    out(render(rows))
    return 0 if all(r.ok for r in rows) else 1


def add_parser(sub: Any) -> None:
    """Register `gpulse gpu-smoke`."""
    p = sub.add_parser(
        "gpu-smoke",
        help="compare what the nvml source reads with nvidia-smi on this machine",
        epilog="example: gpulse gpu-smoke --nvidia-smi /usr/bin/nvidia-smi",
    )
    p.add_argument("--nvidia-smi", default="nvidia-smi", help="the nvidia-smi to compare with")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds nvidia-smi may take")
    p.add_argument(
        "--full",
        action="store_true",
        help="compare with nvidia-smi -q -x and check every supported field has a value over --seconds",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="how long --full samples at 1 Hz")
    p.add_argument("--agent-seconds", type=float, default=60.0, help="how long --full runs the agent")
    p.add_argument("--no-agent", action="store_true", help="--full without running the agent and a collector")
    p.set_defaults(func=_cmd_gpu_smoke)


def _cmd_gpu_smoke(args: argparse.Namespace) -> int:
    from agent.sources.gpu import BackendUnavailable
    from agent.sources.nvml import NvmlBackend

    try:
        if args.full:
            from gpulse.gpusmoke_full import run_full

            return run_full(
                NvmlBackend(kmsg_path=None),
                seconds=args.seconds,
                nvidia_smi=args.nvidia_smi,
                timeout_s=args.timeout,
                agent_backend=None if args.no_agent else NvmlBackend(),
                agent_seconds=args.agent_seconds,
            )
        return run_smoke(NvmlBackend(kmsg_path=None), nvidia_smi=args.nvidia_smi, timeout_s=args.timeout)
    except BackendUnavailable as exc:
        print(f"gpulse gpu-smoke: {exc}", file=sys.stderr)
        return 3
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"gpulse gpu-smoke: {exc}", file=sys.stderr)
        return 2
