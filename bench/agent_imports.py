"""What the running agent imports, and what each import costs: ``python -X importtime`` on ``gpulse agent``.

Starts a real collector and the installed ``gpulse agent`` command (the nvml source over the C stub
libnvidia-ml.so.1 of tests/fakes/nvml_stub, 8 H100s, the local ``[metrics] listen`` on) under
``-X importtime``, lets it stream for a few seconds so lazy imports happen too, stops it, and prints
the costliest top-level imports and whether anything the agent must not load was loaded (numpy,
aiohttp, the collector's modules). Exits 1 if one was. ``-X importtime`` sees ``import`` statements
only, not ``importlib.import_module``: the agent's start-up path uses none.

    .venv/bin/python -m bench.agent_imports [--top 15] [--seconds 3]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FORBIDDEN = ("numpy", "aiohttp", "collector")
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


@dataclass(frozen=True)
class Import:
    module: str
    self_us: int
    cumulative_us: int
    depth: int


def parse(stderr: str) -> list[Import]:
    """The ``-X importtime`` lines of a process's stderr."""
    out = []
    for line in stderr.splitlines():
        m = _LINE.match(line)
        if m:
            out.append(Import(m.group(4), int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2))
    return out


def forbidden(imports: list[Import]) -> list[str]:
    return sorted({i.module for i in imports if i.module.split(".")[0] in FORBIDDEN})


def run_agent(seconds: float) -> list[Import]:
    from tests.fakes.nvml_stub import StubConfig, StubGpu, build
    from tests.kit import Pki, Service, agent_config, free_port, metric_value, start_collector, wait_for

    with tempfile.TemporaryDirectory(prefix="gpulse-imports-") as tmp_name:
        tmp = Path(tmp_name)
        kit = Pki.create(tmp / "pki")
        collector = start_collector(tmp, kit)
        stub = StubConfig(tmp / "nvml-stub.conf", [StubGpu.h100(i) for i in range(8)], lib=build(tmp / "stub"))
        stub.write()
        config = agent_config(tmp, kit, "imports-host", [collector.target], log={"level": "warning"},
                              gpu={"source": "nvml"}, metrics={"listen": f"127.0.0.1:{free_port()}"})  # fmt: skip
        agent = Service(
            "agent", config, tmp / "agent.log", ["agent"], env={**stub.env(), "PYTHONPROFILEIMPORTTIME": "1"}
        )
        agent.start()
        try:
            wait_for(lambda: metric_value(collector.metrics(), "gpulse_host_up", host="imports-host") == 1,
                     what="the agent's first frame")  # fmt: skip
            time.sleep(seconds)
            agent.stop()
        finally:
            agent.kill()
            collector.kill()
        return parse((tmp / "agent.log").read_text(errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    imports = run_agent(args.seconds)
    top = sorted((i for i in imports if i.depth == 0), key=lambda i: -i.cumulative_us)[: args.top]
    total = sum(i.self_us for i in imports)
    print(f"{len(imports)} modules imported, {total / 1e3:.0f} ms in all (self times summed)")
    print("| top-level import | cumulative ms | self ms |")
    print("|---|---|---|")
    for i in top:
        print(f"| `{i.module}` | {i.cumulative_us / 1e3:.1f} | {i.self_us / 1e3:.1f} |")
    bad = forbidden(imports)
    print(f"not to be loaded ({', '.join(FORBIDDEN)}): {', '.join(bad) if bad else 'none loaded'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
