"""Build and drive the C stub ``libnvidia-ml.so.1``, so tests run nvidia-ml-py's real ctypes layer.

``build`` compiles ``nvml_stub.c`` with the system compiler into a cache keyed by the source's hash;
``StubConfig`` writes the key=value file the library reads (again whenever it changes) and reads
the stub's per-GPU call counts. See the C file's header for the keys.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pynvml

SOURCE = Path(__file__).with_name("nvml_stub.c")
ENV_CONFIG = "GPULSE_NVML_STUB"
ENV_COUNTS = "GPULSE_NVML_STUB_COUNTS"

# Field values a healthy GPU answers, in NVML's units; a field left out answers NOT_SUPPORTED.
_COMMON_FIELDS: dict[int, int] = {
    pynvml.NVML_FI_DEV_MEMORY_TEMP: 52,
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: 123_456_789,
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: 0,
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: 0,
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: 4,
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: 0,
    pynvml.NVML_FI_DEV_RETIRED_SBE: 0,
    pynvml.NVML_FI_DEV_RETIRED_DBE: 0,
    pynvml.NVML_FI_DEV_RETIRED_PENDING: 0,
    pynvml.NVML_FI_DEV_REMAPPED_COR: 1,
    pynvml.NVML_FI_DEV_REMAPPED_UNC: 0,
    pynvml.NVML_FI_DEV_REMAPPED_PENDING: 0,
    pynvml.NVML_FI_DEV_REMAPPED_FAILURE: 0,
    pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER: 0,
    pynvml.NVML_FI_DEV_PERF_POLICY_POWER: 0,
    pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL: 0,
    pynvml.NVML_FI_DEV_NVLINK_GET_STATE: 1,  # every link up unless a test says otherwise
    pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC: 0,
    pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY: 0,
    pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY: 0,
}


@dataclass
class StubGpu:
    """One GPU of the stub: scalar readings as the C file's keys, field values by NVML field id."""

    values: dict[str, str | int] = field(default_factory=dict)
    fields: dict[int | tuple[int, int], int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # NVML function -> nvmlReturn_t on every call
    delays_ms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def h100(cls, index: int = 0) -> StubGpu:
        """An H100 SXM5: 18 NVLink links, instant power, no fan of its own."""
        return cls(
            values={
                "name": "NVIDIA H100 80GB HBM3",
                "uuid": f"GPU-4a3c6b1e-0000-4000-8000-{index:012x}",
                "pci": f"00000000:{0x18 + index:02X}:00.0",
                "memory_total": 80 * 2**30,
                "memory_used": 66 * 2**30,
                "power_max_mw": 700_000,
                "power_default_mw": 700_000,
                "power_limit_mw": 700_000,
            },
            fields={
                **_COMMON_FIELDS,
                pynvml.NVML_FI_DEV_POWER_INSTANT: 612_000,
                pynvml.NVML_FI_DEV_POWER_CURRENT_LIMIT: 700_000,
                pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT: 18,
            },
            errors={"nvmlDeviceGetFanSpeed": pynvml.NVML_ERROR_NOT_SUPPORTED},
        )

    @classmethod
    def a100(cls, index: int = 0) -> StubGpu:
        """An A100 SXM4 40GB: 12 NVLink links, 400 W, Ampere's field set (no instant power)."""
        return cls(
            values={
                "name": "NVIDIA A100-SXM4-40GB",
                "uuid": f"GPU-a100a100-0000-4000-8000-{index:012x}",
                "pci": f"00000000:{0x07 + index:02X}:00.0",
                "vbios": "92.00.45.00.03",
                "memory_total": 40 * 2**30,
                "memory_used": 12 * 2**30,
                "power_mw": 287_000,
                "power_limit_mw": 400_000,
                "power_min_mw": 100_000,
                "power_max_mw": 400_000,
                "power_default_mw": 400_000,
                "sm_clock": 1410,
                "sm_clock_max": 1410,
                "mem_clock": 1215,
                "pcie_gen": 4,
                "pcie_max_gen": 4,
            },
            fields={
                **_COMMON_FIELDS,
                pynvml.NVML_FI_DEV_POWER_CURRENT_LIMIT: 400_000,
                pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT: 12,
            },
            errors={"nvmlDeviceGetFanSpeed": pynvml.NVML_ERROR_NOT_SUPPORTED},
        )


@dataclass
class StubConfig:
    """The stub's configuration file; ``write()`` after each change (the library re-reads it)."""

    path: Path
    gpus: list[StubGpu]
    driver: str = "550.90.07"
    cuda: int = 12040
    errors: dict[str, int] = field(default_factory=dict)  # calls without a GPU: init, events
    xids: list[tuple[int, int]] = field(default_factory=list)  # (gpu, xid), each delivered once
    lib: Path | None = None

    def write(self) -> None:
        lines = [f"driver={self.driver}", f"cuda={self.cuda}", f"gpus={len(self.gpus)}"]
        lines += [f"error.{fn}={code}" for fn, code in self.errors.items()]
        for i, g in enumerate(self.gpus):
            lines += [f"gpu{i}.{k}={v}" for k, v in g.values.items()]
            for fid, value in g.fields.items():
                key = ".".join(map(str, fid)) if isinstance(fid, tuple) else str(fid)
                lines.append(f"gpu{i}.field.{key}={value}")
            lines += [f"gpu{i}.error.{fn}={code}" for fn, code in g.errors.items()]
            lines += [f"gpu{i}.delay_ms.{fn}={ms}" for fn, ms in g.delays_ms.items()]
        lines += [f"xid={gpu}:{xid}" for gpu, xid in self.xids]
        # Whole-file replace: the library never sees half a file.
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.path)

    def env(self) -> dict[str, str]:
        """The environment a child process needs to load this stub as libnvidia-ml.so.1."""
        assert self.lib is not None
        env = dict(os.environ)
        env[ENV_CONFIG] = str(self.path)
        env["LD_LIBRARY_PATH"] = f"{self.lib.parent}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":")
        return env


def build(cache: Path, *, old_driver: bool = False) -> Path:
    """Compile the stub (once per source hash) and return the path of its ``libnvidia-ml.so.1``."""
    flags = ["-DGPULSE_STUB_OLD_DRIVER"] if old_driver else []
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    out = cache / f"nvml-stub-{digest}" / "libnvidia-ml.so.1"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".build-{os.getpid()}.so")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("the NVML stub needs a C compiler (apt-get install gcc)")
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-Wl,-soname,libnvidia-ml.so.1",
         *flags, "-o", str(tmp), str(SOURCE), "-lpthread"],
        check=True,
    )  # fmt: skip
    tmp.replace(out)
    return out


class StubLibrary:
    """The stub loaded into this process, where nvidia-ml-py will find it by its soname."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Loaded globally first, so pynvml's own dlopen("libnvidia-ml.so.1") finds it by soname.
        self.lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        self.lib.gpulseStubCallCount.restype = ctypes.c_ulong
        self.lib.gpulseStubCallCount.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def calls(self, fn: str | None = None, gpu: int = -2) -> int:
        """Calls counted: of ``fn`` (all functions if None), on ``gpu`` (-1 no GPU, -2 any)."""
        return int(self.lib.gpulseStubCallCount(fn.encode() if fn else None, gpu))

    def reset(self) -> None:
        self.lib.gpulseStubResetCounts()
        self.lib.gpulseStubResetXids()


def read_counts(path: Path) -> dict[tuple[str, int], int]:
    """The counts another process's stub wrote at nvmlShutdown: (function, gpu or -1) -> calls."""
    out: dict[tuple[str, int], int] = {}
    for line in path.read_text().splitlines():
        fn, gpu, n = line.split()
        out[(fn, int(gpu))] = int(n)
    return out


__all__ = ["ENV_CONFIG", "ENV_COUNTS", "StubConfig", "StubGpu", "StubLibrary", "build", "read_counts"]
