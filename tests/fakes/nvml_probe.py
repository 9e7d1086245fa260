"""The nvml source in a process of its own, over whatever libnvidia-ml.so.1 the loader finds.

    python -m tests.fakes.nvml_probe TICKS

Opens the backend with the real nvidia-ml-py, samples TICKS ticks and prints one JSON object:
inventory, the last row by field name, unsupported fields, the XID source and events. For a stub
built unlike the one loaded into the test process (an old driver), which needs a fresh process.
"""

from __future__ import annotations

import json
import math
import sys
import time


def main(ticks: int) -> None:
    from agent.sources.nvml import NvmlBackend
    from protos.fields import CATALOG

    backend = NvmlBackend(kmsg_path=None, budget_s=5.0, xid_wait_ms=20)
    inventory = backend.open()
    rows = []
    for _ in range(ticks):
        rows = backend.sample(time.time_ns())
    names = [CATALOG[fid].name for fid in CATALOG.gpu_ids]
    print(
        json.dumps(
            {
                "inventory": [
                    {"uuid": g.uuid, "name": g.name, "driver": g.driver_version, "mig": g.mig_mode} for g in inventory
                ],
                "unsupported": [sorted(CATALOG[fid].name for fid in g.unsupported_field_ids) for g in inventory],
                "rows": [{n: (None if math.isnan(v) else v) for n, v in zip(names, row, strict=True)} for row in rows],
                "xid_source": backend.xid_source,
                "errors": backend.stats.errors,
            }
        )
    )
    backend.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
