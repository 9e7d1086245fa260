"""The agent process as `gpulse agent` runs it, with the nvml source reading the counting fake pynvml.

    python -m tests.fakes.nvml_agent CONFIG GPUS

The agent's real NVML code path, in a process of its own, for tests and benchmarks that look at the
process from outside (its memory, what it has loaded). Only the agent and the fake are imported
here, so nothing of the test harness is counted as the agent's.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def main(config_path: Path, gpus: int) -> None:
    from agent import config as agent_config
    from agent.main import run
    from agent.sources.nvml import NvmlBackend
    from runtime import logs
    from tests.fakes.nvml import FakeGpu, FakeNvml

    config = agent_config.load(config_path)
    logs.configure(config.log_level)
    fake = FakeNvml([FakeGpu(uuid=f"GPU-fake-{i}", pci_bus_id=f"00000000:{0x18 + i:02X}:00.0") for i in range(gpus)])
    asyncio.run(run(config, asyncio.Event(), gpu=NvmlBackend(fake, kmsg_path=None)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
