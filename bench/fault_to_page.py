"""Fault to page: an XID on a simulated GPU until the page arrives, gpulse against the classic pipeline.

Both pipelines watch the same agents and the same faults in the same run:

- gpulse: agent -> mTLS stream -> collector (detection evaluates XID rules the moment the event is
  applied) -> alert lifecycle -> PagerDuty receiver -> the PagerDuty fake (tests/fakes/pagerduty.py),
  all with the default detection and alerting settings (critical alerts skip group_wait);
- classic: a real Prometheus (/usr/bin/prometheus) scraping every agent's local /metrics every 15 s and
  evaluating deploy/prometheus/alerting.rules.yml every 15 s, then a real Alertmanager
  (/usr/bin/prometheus-alertmanager) with its default timings (group_wait 30 s), grouped by alertname,
  host and GPU, posting to a webhook.

Agents run in this process so that the fault's time is known exactly: each GPU backend is wrapped so
the XID event's own timestamp (the sample at which the backend reported it, as NVML would) is
recorded as it leaves the backend. Every GPU of every agent gets one XID 79 ("fell off the bus",
critical), staggered over a few seconds; each is its own incident in both pipelines.

    .venv/bin/python -m bench.fault_to_page [--agents 3] [--timeout 150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.sources.sim import Fault, FaultKind, SimBackend
from protos import telemetry_pb2 as pb
from tests.e2e.alertmanager_kit import start_alertmanager
from tests.e2e.prometheus_kit import start_prometheus
from tests.fakes.pagerduty import FakePagerDuty
from tests.kit import ROOT, Collector, Pki, agent_config, collector_config, free_port, wait_for

GPUS = 8
XID = 79
KEY = "0123456789abcdef0123456789abcdef"


class RecordingBackend:
    """A GPU backend that notes when each XID leaves it: the fault's time, on the agent's clock."""

    def __init__(self, inner: SimBackend, host: str, faults: dict[tuple[str, str], float]) -> None:
        self.inner = inner
        self.host = host
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def drain_events(self) -> list[pb.Event]:
        events = self.inner.drain_events()
        for event in events:
            if event.WhichOneof("kind") == "xid":
                self.faults.setdefault((self.host, str(event.xid.gpu_index)), event.unix_ns / 1e9)
        return events


class StampedList(list[dict[str, Any]]):
    """The PagerDuty fake's list of accepted events, noting when each arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []

    def append(self, item: dict[str, Any]) -> None:
        self.arrived.append(time.time())
        super().append(item)


class Webhook:
    """Alertmanager's webhook receiver: notes when each firing alert arrived."""

    def __init__(self) -> None:
        self.pages: dict[tuple[str, str], float] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.time()
                for alert in body.get("alerts", []):
                    if alert.get("status") == "firing":
                        labels = alert["labels"]
                        pages.setdefault((labels.get("host", ""), labels.get("gpu", "")), now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"


def start_gpulse_collector(tmp: Path, kit: Pki, pagerduty: FakePagerDuty) -> Collector:
    config, grpc_port, http_port = collector_config(tmp, kit, name="collector")
    with config.open("a") as fh:  # the kit's TOML writer has no nested tables
        fh.write(
            f"""
[alerting.route]
receiver = "pd"
group_by = ["alertname", "host", "gpu"]

[[alerting.receivers]]
name = "pd"
type = "pagerduty"
url = "{pagerduty.url}"
routing_key_env = "PD_KEY"
"""
        )
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], env={"PD_KEY": KEY},
        grpc_port=grpc_port, http_port=http_port,
    )  # fmt: skip
    collector.start()
    return collector.wait_ready()


def start_classic(tmp: Path, webhook: Webhook, metrics_ports: list[int]) -> tuple[Any, Any]:
    alertmanager = start_alertmanager(
        tmp / "alertmanager",
        {
            # Alertmanager's defaults (group_wait 30s, group_interval 5m), one group per GPU as for gpulse.
            "route": {"receiver": "hook", "group_by": ["alertname", "host", "gpu"]},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook.url, "send_resolved": False}]}],
        },
    )
    prom_dir = tmp / "prometheus"
    prom_dir.mkdir()
    shutil.copy(ROOT / "deploy/prometheus/alerting.rules.yml", prom_dir / "alerting.rules.yml")
    prometheus = start_prometheus(
        prom_dir,
        {
            "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
            "rule_files": ["alerting.rules.yml"],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]},
            "scrape_configs": [
                {
                    "job_name": "gpulse-agents",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in metrics_ports]}],
                }
            ],
        },
    )
    return prometheus, alertmanager


def quantiles(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered), p99, ordered[-1]


async def run(args: argparse.Namespace) -> None:
    from agent import config as agent_config_module
    from agent.main import run as run_agent
    from runtime import logs

    logs.configure("error", stream=sys.stderr)
    faults: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="gpulse-fault-") as tmp_name:
        tmp = Path(tmp_name)
        kit = Pki.create(tmp / "pki")
        pagerduty = FakePagerDuty().start()
        stamped = pagerduty.accepted = StampedList()
        webhook = Webhook()
        collector = start_gpulse_collector(tmp, kit, pagerduty)
        hosts = [f"node-{i:02d}" for i in range(args.agents)]
        ports = [free_port() for _ in hosts]
        prometheus, alertmanager = start_classic(tmp, webhook, ports)
        stop = asyncio.Event()
        sims: list[SimBackend] = []
        tasks = []
        try:
            for i, (host, port) in enumerate(zip(hosts, ports, strict=True)):
                path = agent_config(
                    tmp, kit, host, [collector.target], interval=1.0, metrics={"listen": f"127.0.0.1:{port}"},
                    sim={"count": GPUS, "seed": i}, log={"level": "error"},
                )  # fmt: skip
                sim = SimBackend(host, count=GPUS, seed=i)
                sims.append(sim)
                config = agent_config_module.load(path)
                tasks.append(asyncio.create_task(run_agent(config, stop, gpu=RecordingBackend(sim, host, faults))))
            # Both pipelines must see every agent healthy first: Prometheus a couple of scrapes.
            await asyncio.to_thread(
                wait_for,
                lambda: len(prometheus.query('up{job="gpulse-agents"} == 1')) == len(hosts),
                60,
                what="Prometheus scraping every agent",
            )
            await asyncio.sleep(args.settle)
            print(f"injecting XID {XID} on {len(hosts)} agents x {GPUS} GPUs", flush=True)
            for gpu in range(GPUS):
                for sim in sims:
                    sim.inject_now(Fault(FaultKind.XID, gpu, xid=XID))
                await asyncio.sleep(args.spacing)
            expected = {(h, str(g)) for h in hosts for g in range(GPUS)}
            deadline = time.monotonic() + args.timeout

            def gpulse_pages() -> dict[tuple[str, str], float]:
                out: dict[tuple[str, str], float] = {}
                for body, arrived in zip(list(stamped), list(stamped.arrived), strict=True):
                    if body["event_action"] != "trigger":
                        continue
                    details = body["payload"].get("custom_details", {})
                    key = (body["payload"]["source"], str(details.get("gpu", {}).get("index", "")))
                    out.setdefault(key, arrived)
                return out

            while time.monotonic() < deadline:
                if expected <= set(gpulse_pages()) and expected <= set(webhook.pages):
                    break
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            prometheus.stop()
            alertmanager.stop()
            collector.kill()
            pagerduty.stop()
            webhook.server.shutdown()

    pages = gpulse_pages()
    rows = []
    for name, got in (("gpulse", pages), ("classic", webhook.pages)):
        latencies = [got[k] - faults[k] for k in expected if k in got and k in faults]
        missing = len(expected) - len(latencies)
        p50, p99, worst = quantiles(latencies) if latencies else (float("nan"),) * 3
        rows.append((name, len(latencies), missing, p50, p99, worst))
    print(f"{'pipeline':8} {'pages':>5} {'missing':>7} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    for name, n, missing, p50, p99, worst in rows:
        print(f"{name:8} {n:5d} {missing:7d} {p50:7.2f} {p99:7.2f} {worst:7.2f}")
    (_, _, _, g50, g99, _), (_, _, _, c50, c99, _) = rows
    print(f"classic / gpulse: p50 {c50 / g50:.0f}x, p99 {c99 / g99:.0f}x  (targets: gpulse p99 <= 2 s, >= 30x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3, help="simulated hosts of 8 GPUs, one XID per GPU")
    parser.add_argument("--spacing", type=float, default=0.7, help="seconds between one GPU's XIDs and the next's")
    parser.add_argument("--settle", type=float, default=16.0, help="seconds of healthy data before the faults")
    parser.add_argument("--timeout", type=float, default=150.0, help="give up on pages after this long")
    args = parser.parse_args()
    os.chdir(ROOT)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
