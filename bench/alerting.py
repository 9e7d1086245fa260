"""Alert storm: from detection's push to rows in the durable outbox, against one commit per alert.

A fabric fault can fire an alert on every GPU at once. gpulse writes each push (and each dispatcher
flush) in one SQLite transaction, so a storm costs a few disk syncs; the baseline is the same lifecycle
committing every alert on its own (each alert pushed by itself), as a naive durable store would;
both then flush their groups into the outbox the same way. Both run in the same process, on
the same disk, with ``synchronous=FULL``. A third figure is the steady state: detection re-sending
every firing alert on each evaluation, which must cost no disk writes at all.

    .venv/bin/python -m bench.alerting [--alerts 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.alert import Alert, AlertState
from collector.alerting.config import AlertingConfig
from collector.alerting.receivers import LogConfig
from collector.alerting.routing import Route, Timing
from collector.alerting.service import AlertingService


def storm(n: int) -> list[Alert]:
    return [
        Alert(
            {"alertname": "GpuNvlinkDown", "severity": "critical", "host": f"node-{i // 8:04d}", "gpu": str(i % 8)},
            AlertState.FIRING,
            1.7e9,
        )
        for i in range(n)
    ]


async def _nothing(now: float) -> int:
    return 0


async def run(directory: Path, alerts: list[Alert], *, batched: bool) -> tuple[float, float, int]:
    """Seconds to push the storm durably, seconds for one re-push of it, and outbox rows written."""
    config = AlertingConfig(
        receivers=(LogConfig("log"),),
        route=Route("log", group_by=("alertname", "host"), timing=Timing(0, 60, 3600)),
    )
    service = AlertingService(config, directory, CollectorRegistry(), clock=lambda: 1.7e9)
    await service.start(background=False)
    try:
        started = time.perf_counter()
        if batched:
            service.push(alerts, 1.7e9)
        else:
            for alert in alerts:
                service.push([alert], 1.7e9)
        assert service.deliverer is not None
        service.deliverer.deliver_due = _nothing  # type: ignore[method-assign]  # measure up to the outbox
        await service.step(1.7e9)
        pushed = time.perf_counter() - started
        started = time.perf_counter()
        service.push(alerts, 1.7e9)  # the next evaluation re-sends everything
        repush = time.perf_counter() - started
        return pushed, repush, sum(service.state.outbox_depth().values())
    finally:
        await service.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=2000)
    args = parser.parse_args()
    alerts = storm(args.alerts)
    with tempfile.TemporaryDirectory() as tmp:
        base_s, _, base_rows = asyncio.run(run(Path(tmp) / "baseline", alerts, batched=False))
        ours_s, repush_s, rows = asyncio.run(run(Path(tmp) / "gpulse", alerts, batched=True))
    assert rows == base_rows
    print(f"storm of {args.alerts} alerts ({rows} outbox rows, one per host group)")
    print(f"  gpulse (one transaction per push):    {ours_s * 1e3:8.1f} ms  {args.alerts / ours_s:10,.0f} alerts/s")
    print(f"  baseline (one commit per alert):      {base_s * 1e3:8.1f} ms  {args.alerts / base_s:10,.0f} alerts/s")
    print(f"  ratio:                                {base_s / ours_s:8.1f}x")
    print(f"  steady state, re-push of all firing:  {repush_s * 1e3:8.1f} ms  {args.alerts / repush_s:10,.0f} alerts/s")


if __name__ == "__main__":
    main()
