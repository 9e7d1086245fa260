"""`gpulse gpu-smoke --full`: against `nvidia-smi -q -x`, and every supported field over a run.

Two parts, each a pure function tested without a GPU, and a shell that runs them on a machine:

- ``compare_xml``: the inventory and one sample against nvidia-smi's XML report, which has every
  GPU's identity and readings with units (``81559 MiB``, ``612.25 W``, ``1980 MHz``);
- ``coverage``: after sampling for a while, every catalog field NVML supports on a GPU must have had
  a value; the fields it does not support are listed, not failed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.records import GpuInfo, Rows
from agent.sources.gpu import GpuBackend
from gpulse.gpusmoke import Row, render
from protos.fields import CATALOG

__all__ = ["Coverage", "compare_xml", "coverage", "parse_smi_xml", "run_full"]

_NAMES = [CATALOG[fid].name for fid in CATALOG.gpu_ids]
_UNITS = {"MiB": 2**20, "W": 1.0, "MHz": 1e6, "C": 1.0, "%": 0.01}


def parse_smi_xml(text: str) -> dict[str, dict[str, str]]:
    """``nvidia-smi -q -x``: per GPU uuid, the few values compared (text as printed, units included)."""
    root = ET.fromstring(text)
    driver = root.findtext("driver_version", "")
    out: dict[str, dict[str, str]] = {}
    for gpu in root.findall("gpu"):
        power = gpu.find("gpu_power_readings")  # power_readings before R530
        if power is None:
            power = gpu.find("power_readings")
        out[gpu.findtext("uuid", "").strip()] = {
            "name": gpu.findtext("product_name", ""),
            "serial": gpu.findtext("serial", ""),
            "pci_bus_id": gpu.findtext("pci/pci_bus_id", ""),
            "driver_version": driver,
            "vbios_version": gpu.findtext("vbios_version", ""),
            "memory_total": gpu.findtext("fb_memory_usage/total", ""),
            "memory_used": gpu.findtext("fb_memory_usage/used", ""),
            "temperature": gpu.findtext("temperature/gpu_temp", ""),
            "power_usage": power.findtext("power_draw", "") if power is not None else "",
            "sm_clock": gpu.findtext("clocks/sm_clock", ""),
            "mig_mode": gpu.findtext("mig_mode/current_mig", ""),
        }
    return out


def _quantity(text: str) -> float:
    """``81559 MiB`` -> bytes, ``612.25 W`` -> watts; NaN for N/A."""
    number, _, unit = text.strip().partition(" ")
    try:
        return float(number) * _UNITS.get(unit.strip(), 1.0)
    except ValueError:
        return math.nan


def compare_xml(inventory: list[GpuInfo], sample: Rows, smi: dict[str, dict[str, str]]) -> list[Row]:
    rows: list[Row] = []
    for info in inventory:
        theirs = smi.get(info.uuid)
        if theirs is None:
            rows.append(Row(info.index, "present", "yes", "no", False, "not in nvidia-smi -q -x"))
            continue
        for attr in ("name", "serial", "driver_version", "vbios_version"):
            text = str(getattr(info, attr))
            rows.append(Row(info.index, attr, text, theirs[attr], text == theirs[attr].strip()))
        bus = info.pci_bus_id.lower().removeprefix("0000")
        rows.append(Row(info.index, "pci_bus_id", info.pci_bus_id, theirs["pci_bus_id"],
                        bus == theirs["pci_bus_id"].strip().lower().removeprefix("0000")))  # fmt: skip
        mig = "Enabled" if info.mig_mode else "Disabled"
        rows.append(Row(info.index, "MIG mode", mig, theirs["mig_mode"], theirs["mig_mode"] in (mig, "", "N/A")))
        values = dict(zip(_NAMES, sample[info.index], strict=True))
        values["memory_total"] = float(info.memory_total_bytes)
        for name, abs_tol, rel_tol in (
            ("memory_total", 2**20, 0.0),
            ("memory_used", 512 * 2**20, 0.05),
            ("temperature", 3.0, 0.0),
            ("power_usage", 30.0, 0.15),
            ("sm_clock", 100e6, 0.15),
        ):
            ours, expected = values[name], _quantity(theirs[name])
            if math.isnan(ours) or math.isnan(expected):
                ok = math.isnan(ours) and math.isnan(expected)
                rows.append(Row(info.index, name, f"{ours:g}", theirs[name], ok, "" if ok else "one side absent"))
                continue
            ok = math.isclose(ours, expected, rel_tol=rel_tol, abs_tol=abs_tol)
            rows.append(Row(info.index, name, f"{ours:g}", f"{expected:g}", ok, "" if ok else "beyond tolerance"))
    return rows


@dataclass(frozen=True)
class Coverage:
    gpu: int
    missing: list[str]  # supported, yet never a value in the run: a failure
    unsupported: list[str]  # the GPU says NOT_SUPPORTED: listed


def coverage(inventory: list[GpuInfo], samples: list[Rows]) -> list[Coverage]:
    out = []
    for info in inventory:
        unsupported = {CATALOG[fid].name for fid in info.unsupported_field_ids}
        seen = {n for rows in samples for n, v in zip(_NAMES, rows[info.index], strict=True) if not math.isnan(v)}
        missing = [n for n in _NAMES if n not in unsupported and n not in seen]
        out.append(Coverage(info.index, missing, sorted(unsupported)))
    return out


def run_full(
    backend: GpuBackend,
    *,
    seconds: float,
    nvidia_smi: str = "nvidia-smi",
    timeout_s: float = 60.0,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    agent_backend: GpuBackend | None = None,
    agent_seconds: float = 60.0,
) -> int:
    """Sample at 1 Hz for ``seconds``, compare one sample with ``nvidia-smi -q -x``, check coverage.

    With ``agent_backend``, then run the agent on it for ``agent_seconds`` against a local collector
    and check every supported field of every GPU has a series at the collector.
    """
    inventory = backend.open()
    samples: list[Rows] = []
    try:
        started = time.monotonic()
        while True:
            samples.append(backend.sample(time.time_ns()))
            if time.monotonic() - started >= seconds:
                break
            sleep(1.0)
    finally:
        backend.close()
    exe = shutil.which(nvidia_smi) or nvidia_smi
    result = subprocess.run([exe, "-q", "-x"], capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"nvidia-smi -q -x failed ({result.returncode}): {result.stderr.strip()}")
    rows = compare_xml(inventory, samples[-1], parse_smi_xml(result.stdout))
    out(render(rows))
    failed = not all(r.ok for r in rows)
    out(f"field coverage over {len(samples)} samples:")
    for c in coverage(inventory, samples):
        out(f"  GPU {c.gpu}: never read though supported: {', '.join(c.missing) or 'none'}")
        out(f"  GPU {c.gpu}: not supported by this GPU: {', '.join(c.unsupported) or 'none'}")
        failed = failed or bool(c.missing)
    if agent_backend is not None:
        import asyncio
        import socket
        import tempfile

        host = socket.gethostname()
        with tempfile.TemporaryDirectory(prefix="gpulse-gpu-smoke-") as tmp:
            text = asyncio.run(agent_against_local_collector(agent_backend, agent_seconds, Path(tmp), host))
        out(f"the agent for {agent_seconds:g} s against a local collector:")
        for c in collector_coverage(inventory, text, host):
            out(f"  GPU {c.gpu}: supported but no series at the collector: {', '.join(c.missing) or 'none'}")
            failed = failed or bool(c.missing)
    return 1 if failed else 0


def collector_coverage(inventory: list[GpuInfo], metrics_text: str, host: str) -> list[Coverage]:
    """From the collector's /metrics after the agent streamed: supported fields with no series."""
    from prometheus_client.parser import text_string_to_metric_families

    seen: set[tuple[str, str]] = set()
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.labels.get("host") == host and "gpu" in s.labels and not math.isnan(s.value):
                seen.add((s.name, s.labels["gpu"]))
    out = []
    for info in inventory:
        unsupported = {CATALOG[fid].name for fid in info.unsupported_field_ids}
        missing = [
            CATALOG[fid].name
            for fid in CATALOG.gpu_ids
            if CATALOG[fid].name not in unsupported and (CATALOG[fid].metric_name, str(info.index)) not in seen
        ]
        out.append(Coverage(info.index, missing, sorted(unsupported)))
    return out


async def agent_against_local_collector(backend: GpuBackend, seconds: float, state_dir: Path, host: str) -> str:
    """Run the agent on ``backend`` streaming over mTLS to a collector on 127.0.0.1; its /metrics after."""
    import asyncio
    import urllib.request

    from agent.daemon import run_agent
    from agent.main import build_agent
    from collector.app import start_collector
    from collector.config import CollectorConfig
    from collector.trust import pki
    from gpulse.demo import _agent_config
    from runtime.tls import TlsFiles

    pki_dir = state_dir / "pki"
    pki.init_ca(pki_dir, name="gpulse gpu-smoke CA", days=1)
    issued = pki.issue(pki_dir, role="collector", name="demo-collector", days=1)
    collector = await start_collector(
        CollectorConfig(
            tls=TlsFiles(pki_dir / pki.CA_CERT, issued.cert, issued.key),
            collector_id="demo-collector",
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            state_dir=state_dir / "collector",
        )
    )
    stop = asyncio.Event()
    try:
        config = _agent_config(pki_dir, host, f"127.0.0.1:{collector.grpc_port}", "nvml", None)
        sampler, shipper = build_agent(config, gpu=backend)
        task = asyncio.create_task(run_agent(sampler, shipper, stop))
        await asyncio.sleep(seconds)
        url = f"http://127.0.0.1:{collector.http_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        stop.set()
        await asyncio.wait_for(task, 30)
        return text
    finally:
        stop.set()
        await collector.stop(grace=1.0)
