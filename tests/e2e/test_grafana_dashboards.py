"""Every panel of gpulse's Grafana dashboards, and every query of NVIDIA's dcgm-exporter dashboard,
returns data from a real Prometheus scraping a real collector fed by simulated agents."""

from __future__ import annotations

import http.server
import importlib.util
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.prometheus_kit import Prometheus, start_prometheus
from tests.kit import Collector, Pki, Service, collector_config, start_agent, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Grafana's template variables, as "All" selected: what Grafana itself would substitute.
VARIABLES = {"$__rate_interval": "10s", "$host": ".+", "$gpu": ".+", "$Hostname": ".+"}
# Series that exist only after a warm-up longer than a test should wait: for these the test checks
# that the collector declares the family (the panel's wiring), and says why it cannot wait for data.
WARMING_UP = {
    "gpulse_detect_baseline_score": "each GPU's baseline learns for 120 s before it scores (detection's warm-up)",
}


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    return expr


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target of every committed dashboard."""
    out = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            out.extend((board["title"], panel["title"], target["expr"]) for target in panel["targets"])
    return out


class _Sink(http.server.BaseHTTPRequestHandler):
    """A remote write receiver that accepts everything, so the self-health panel has remote write data."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def sink() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/write"
    server.shutdown()


@pytest.fixture
def prometheus_holder() -> Iterator[list[Prometheus]]:
    held: list[Prometheus] = []
    yield held
    for prometheus in held:
        prometheus.stop()


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    for name, text in load_generator().render_all().items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, f"{name} is stale: run deploy/grafana/generate.py"


def test_dashboards_cover_the_views_the_issue_asks_for() -> None:
    titles = {json.loads(p.read_text())["title"] for p in (GRAFANA / "dashboards").glob("*.json")}
    assert titles == {
        "gpulse / Fleet overview",
        "gpulse / Host detail",
        "gpulse / GPU detail",
        "gpulse / Alerts and anomaly scores",
        "gpulse / gpulse's own health",
        "gpulse / Efficiency",
    }
    fleet = json.loads((GRAFANA / "dashboards" / "gpulse-fleet.json").read_text())
    assert any(p["type"] == "status-history" and "health" in p["title"].lower() for p in fleet["panels"])


def test_provisioning_points_at_a_prometheus_and_dashboards_use_the_datasource_variable() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "gpulse.yml").read_text())
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gpulse.yml").read_text())
    assert providers["providers"][0]["type"] == "file" and providers["providers"][0]["options"]["path"]
    for path in (GRAFANA / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        assert board["uid"] == path.stem  # stable links between dashboards and from alerts
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])


def test_every_panel_returns_data_from_a_real_prometheus(
    tmp: Path, test_pki: Pki, services: list[Service], prometheus_holder: list[Prometheus], sink: str
) -> None:
    config, grpc_port, http_port = collector_config(
        tmp,
        test_pki,
        exposition={"formats": ["gpulse", "dcgm"]},
        remote_write={"url": sink, "flush_interval": 0.5},
        # Every simulated GPU counts as idle within a second, so the efficiency panels have idle jobs.
        ledger={"idle_threshold": 1.0, "idle_after": 1.0},
    )
    collector = Collector(
        "collector", config, tmp / "collector.log", ["collector"], grpc_port=grpc_port, http_port=http_port
    )
    services.append(collector.start())
    collector.wait_ready()
    faults = [
        {"kind": "xid", "gpu": 1, "at": 0.5, "xid": 79},
        {"kind": "nvlink_errors", "gpu": 0, "at": 0.5, "severity": 0.9},
    ]
    # Four GPUs running one job: enough peers (min_peers = 3) for the peer-score panels.
    services.append(start_agent(tmp, test_pki, "node-a", [collector.target], sim={"count": 4, "faults": faults}))
    services.append(start_agent(tmp, test_pki, "node-b", [collector.target]))

    rules = tmp / "rules"
    rules.mkdir()
    for name in ("recording.rules.yml", "alerting.rules.yml"):
        shutil.copy(ROOT / "deploy" / "prometheus" / name, rules / name)
    prometheus = start_prometheus(
        tmp / "prometheus",
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules / "*.yml")],
            "scrape_configs": [
                {
                    "job_name": "gpulse",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{http_port}"]}],
                }
            ],
        },
    )
    prometheus_holder.append(prometheus)

    queries = panel_queries()
    assert len(queries) >= 60

    declared = collector.metrics()
    for family in WARMING_UP:
        assert f"# HELP {family} " in declared, f"{family} is not exposed by the collector"
    checked = [q for q in queries if not any(family in q[2] for family in WARMING_UP)]
    assert len(queries) - len(checked) <= len(WARMING_UP)

    def empty_panels() -> list[str]:
        missing = []
        for board, title, expr in checked:
            try:
                result = prometheus.query(substitute(expr))
            except Exception as exc:  # a query Prometheus refuses is a broken panel
                missing.append(f"{board} / {title}: {expr}: {exc}")
                continue
            if not result:
                missing.append(f"{board} / {title}: {expr}")
        return missing

    last: list[str] = []

    def all_have_data() -> bool:
        nonlocal last
        last = empty_panels()
        return not last

    try:
        wait_for(all_have_data, 45, interval=1.0, what="data in every panel")
    except AssertionError:
        pytest.fail("panels without data:\n" + "\n".join(last) + f"\ncollector log:\n{collector.log()[-3000:]}")

    check_dcgm_exporter_dashboard(prometheus)


def check_dcgm_exporter_dashboard(prometheus: Prometheus) -> None:
    """NVIDIA's own dashboard, unchanged: its variables list our hosts and GPUs, its panels have data."""
    fixture = json.loads((FIXTURES / "dcgm_exporter_dashboard.json").read_text())
    hostnames = prometheus.api("label/Hostname/values", **{"match[]": "DCGM_FI_DEV_FB_FREE"})
    assert sorted(hostnames) == ["node-a", "node-b"]
    gpus = prometheus.api("label/gpu/values", **{"match[]": 'DCGM_FI_DEV_FB_FREE{Hostname=~".+"}'})
    assert sorted(gpus) == ["0", "1", "2", "3"]  # node-a has four GPUs, node-b two
    for panel in fixture["panels"]:
        result = prometheus.query(substitute(panel["expr"]))
        if "no_data_because" in panel:
            assert result == [], f"{panel['title']} unexpectedly has data"
        else:
            assert result, f"dcgm-exporter dashboard panel {panel['title']!r} has no data: {panel['expr']}"
    # Units as dcgm-exporter's: the dashboard's own * 1000000 turns our MHz back into our hertz.
    pairs = [
        ("max(DCGM_FI_DEV_SM_CLOCK * 1000000) by (Hostname, gpu)", "max(gpulse_gpu_sm_clock_hertz) by (host, gpu)", 1),
        ("max(DCGM_FI_DEV_FB_USED) by (Hostname, gpu)", "max(gpulse_gpu_memory_used_bytes) by (host, gpu)", 2**20),
        ("max(DCGM_FI_DEV_GPU_UTIL) by (Hostname, gpu)", "max(gpulse_gpu_utilization_ratio) by (host, gpu)", 0.01),
    ]
    for dcgm, ours, scale in pairs:
        theirs = {(r["metric"]["Hostname"], r["metric"]["gpu"]): float(r["value"][1]) for r in prometheus.query(dcgm)}
        native = {(r["metric"]["host"], r["metric"]["gpu"]): float(r["value"][1]) for r in prometheus.query(ours)}
        assert theirs.keys() == native.keys()
        for key, value in theirs.items():
            assert abs(value * scale - native[key]) <= max(scale, 1e-9 * native[key]), (dcgm, key, value, native[key])
