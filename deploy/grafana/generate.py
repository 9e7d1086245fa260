"""Write gpulse's Grafana dashboards: ``python deploy/grafana/generate.py``.

The dashboards are data; this file is their source, so panels stay consistent (datasource variable,
units, legends) and a test can list every panel's query and run it against a real Prometheus.
The JSON files it writes are committed, for provisioning without Python.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}


@dataclass
class Panel:
    title: str
    exprs: list[tuple[str, str]]  # (expr, legend)
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    field_config: dict[str, Any] = field(default_factory=dict)
    instant: bool = False


def _variables(names: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source", "hide": 0}
    ]
    queries = {
        "host": ("label_values(gpulse_host_up, host)", "Host", True),
        "gpu": ('label_values(gpulse_gpu_info{host=~"$host"}, gpu)', "GPU", True),
    }
    for name in names:
        query, label, multi = queries[name]
        out.append(
            {
                "name": name,
                "label": label,
                "type": "query",
                "datasource": DS,
                "query": {"query": query, "refId": f"{name}-values"},
                "definition": query,
                "refresh": 2,
                "includeAll": multi,
                "multi": multi,
                "sort": 3,
                "hide": 0,
            }
        )
    return out


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, **panel.field_config}
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": panel.options,
        "targets": [
            {
                "datasource": DS,
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "instant": panel.instant,
                "range": not panel.instant,
            }
            for i, (expr, legend) in enumerate(panel.exprs)
        ],
    }


def dashboard(uid: str, title: str, description: str, variables: list[str], panels: list[Panel]) -> dict[str, Any]:
    laid_out = []
    x = y = row_height = 0
    for pid, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel(panel, pid, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["gpulse", "gpu"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": _variables(variables)},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["gpulse"], "title": "gpulse", "asDropdown": True, "includeVars": True}
        ],
        "panels": laid_out,
    }


def health_score(selector: str) -> str:
    """0 ok (or not reported), 1 warn, 2 fail (agent health checks), 3 lost: one number per GPU."""
    inner = f"{selector}," if selector else ""
    return (
        f'max by (host, gpu) (gpulse_gpu_health_status{{{inner}status="warn"}}'
        f' or gpulse_gpu_health_status{{{inner}status="fail"}} * 2 or gpulse_gpu_lost{{{selector}}} * 3)'
    )


_HEALTH_MAPPINGS = {
    "mappings": [
        {
            "type": "value",
            "options": {
                "0": {"text": "ok", "color": "green", "index": 0},
                "1": {"text": "warn", "color": "yellow", "index": 1},
                "2": {"text": "fail", "color": "red", "index": 2},
                "3": {"text": "lost", "color": "dark-red", "index": 3},
            },
        }
    ],
    "color": {"mode": "thresholds"},
    "thresholds": {
        "mode": "absolute",
        "steps": [
            {"color": "green", "value": None},
            {"color": "yellow", "value": 1},
            {"color": "red", "value": 2},
            {"color": "dark-red", "value": 3},
        ],
    },
}
# From a per-GPU series to that GPU's detail dashboard, keeping the time range.
_GPU_LINK = {
    "title": "GPU detail",
    "url": "/d/gpulse-gpu/gpulse-gpu-detail?var-host=${__field.labels.host}"
    "&var-gpu=${__field.labels.gpu}&${__url_time_range}",
}
_HOST_LINK = {
    "title": "Host detail",
    "url": "/d/gpulse-host/gpulse-host-detail?var-host=${__field.labels.host}&${__url_time_range}",
}
_STAT = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}
_TABLE_FIELDS = {"custom": {"align": "auto"}}
GPU = 'host=~"$host", gpu=~"$gpu"'


def fleet() -> dict[str, Any]:
    return dashboard(
        "gpulse-fleet",
        "gpulse / Fleet overview",
        "Every host and GPU at a glance: health, utilisation, heat, power and errors.",
        ["host"],
        [
            Panel("Hosts up", [("sum(gpulse_host_up)", "up")], "stat", width=4, height=4, options=_STAT),
            Panel(
                "Hosts down",
                [("count(gpulse_host_up == 0) or vector(0)", "down")],
                "stat",
                width=4,
                height=4,
                options=_STAT,
            ),
            Panel("GPUs", [("count(gpulse_gpu_info)", "GPUs")], "stat", width=4, height=4, options=_STAT),
            Panel(
                "Fleet GPU utilisation",
                [("avg(gpulse_gpu_utilization_ratio)", "avg")],
                "stat",
                "percentunit",
                width=4,
                height=4,
                options=_STAT,
            ),
            Panel(
                "Fleet GPU power",
                [("sum(gpulse_gpu_power_usage_watts)", "total")],
                "stat",
                "watt",
                width=4,
                height=4,
                options=_STAT,
            ),
            Panel(
                "GPUs not ok",
                [(f"count({health_score('')} > 0) or vector(0)", "not ok")],
                "stat",
                width=4,
                height=4,
                options=_STAT,
            ),
            Panel(
                "GPU health (heatmap: one row per GPU)",
                [
                    (
                        health_score('host=~"$host"'),
                        "{{host}} / {{gpu}}",
                    )
                ],
                "status-history",
                width=24,
                height=10,
                description="0 ok, 1 warn, 2 fail (agent health checks), 3 lost. Click a row for the GPU's detail.",
                field_config={**_HEALTH_MAPPINGS, "links": [_GPU_LINK]},
                options={"showValue": "never", "rowHeight": 0.9, "colWidth": 0.9},
            ),
            Panel(
                "GPU utilisation by host",
                [('avg by (host) (gpulse_gpu_utilization_ratio{host=~"$host"})', "{{host}}")],
                field_config={"links": [_HOST_LINK]},
                unit="percentunit",
            ),
            Panel(
                "Hottest GPU per host",
                [('max by (host) (gpulse_gpu_temperature_celsius{host=~"$host"})', "{{host}}")],
                field_config={"links": [_HOST_LINK]},
                unit="celsius",
            ),
            Panel(
                "GPU power by host",
                [('sum by (host) (gpulse_gpu_power_usage_watts{host=~"$host"})', "{{host}}")],
                field_config={"links": [_HOST_LINK]},
                unit="watt",
            ),
            Panel(
                "XIDs (last 1h)",
                [
                    (
                        'sum by (host, gpu, xid) (increase(gpulse_gpu_xid_errors_total{host=~"$host"}[1h]))'
                        ' > 0 or sum by (host, gpu, xid) (gpulse_gpu_xid_errors_total{host=~"$host"})',
                        "{{host}} GPU {{gpu}} XID {{xid}}",
                    )
                ],
                "table",
                instant=True,
                field_config=_TABLE_FIELDS,
            ),
        ],
    )


def host_detail() -> dict[str, Any]:
    sel = 'host=~"$host"'
    return dashboard(
        "gpulse-host",
        "gpulse / Host detail",
        "One host: each GPU's load, heat, power and memory, and the host's own resources.",
        ["host"],
        [
            Panel("Agent up", [(f"gpulse_host_up{{{sel}}}", "{{host}}")], "stat", width=6, height=4, options=_STAT),
            Panel(
                "Clock skew",
                [(f"gpulse_host_clock_skew_seconds{{{sel}}}", "{{host}}")],
                "stat",
                "s",
                width=6,
                height=4,
                options=_STAT,
            ),
            Panel(
                "Spool records dropped (1h)",
                [(f"increase(gpulse_host_spool_dropped_records_total{{{sel}}}[1h])", "{{host}}")],
                "stat",
                width=6,
                height=4,
                options=_STAT,
            ),
            Panel(
                "Uptime",
                [(f"gpulse_host_uptime_seconds{{{sel}}}", "{{host}}")],
                "stat",
                "s",
                width=6,
                height=4,
                options=_STAT,
            ),
            Panel("GPU utilisation", [(f"gpulse_gpu_utilization_ratio{{{sel}}}", "GPU {{gpu}}")], unit="percentunit"),
            Panel("GPU temperature", [(f"gpulse_gpu_temperature_celsius{{{sel}}}", "GPU {{gpu}}")], unit="celsius"),
            Panel("GPU power", [(f"gpulse_gpu_power_usage_watts{{{sel}}}", "GPU {{gpu}}")], unit="watt"),
            Panel("GPU memory used", [(f"gpulse_gpu_memory_used_bytes{{{sel}}}", "GPU {{gpu}}")], unit="bytes"),
            Panel("SM clock", [(f"gpulse_gpu_sm_clock_hertz{{{sel}}}", "GPU {{gpu}}")], unit="hertz"),
            Panel(
                "GPU health",
                [
                    (
                        health_score(sel),
                        "GPU {{gpu}}",
                    )
                ],
                "status-history",
                field_config=_HEALTH_MAPPINGS,
                options={"showValue": "never"},
            ),
            Panel("Host CPU", [(f"gpulse_host_cpu_utilization_ratio{{{sel}}}", "cpu")], unit="percentunit"),
            Panel("Host load", [(f"gpulse_host_load1{{{sel}}}", "load1"), (f"gpulse_host_load5{{{sel}}}", "load5")]),
            Panel(
                "Host memory",
                [
                    (f"gpulse_host_memory_used_bytes{{{sel}}}", "used"),
                    (f"gpulse_host_memory_total_bytes{{{sel}}}", "total"),
                ],
                unit="bytes",
            ),
            Panel(
                "Network",
                [
                    (f"rate(gpulse_host_network_receive_bytes_total{{{sel}}}[$__rate_interval])", "receive"),
                    (f"rate(gpulse_host_network_transmit_bytes_total{{{sel}}}[$__rate_interval])", "transmit"),
                ],
                unit="Bps",
            ),
            Panel(
                "GPU inventory",
                [(f"gpulse_gpu_info{{{sel}}}", "")],
                "table",
                width=24,
                instant=True,
                field_config=_TABLE_FIELDS,
            ),
        ],
    )


def gpu_detail() -> dict[str, Any]:
    return dashboard(
        "gpulse-gpu",
        "gpulse / GPU detail",
        "One GPU in depth: clocks and why they drop, memory errors, interconnect, XIDs.",
        ["host", "gpu"],
        [
            Panel(
                "Utilisation",
                [
                    (f"gpulse_gpu_utilization_ratio{{{GPU}}}", "SM {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_memory_copy_utilization_ratio{{{GPU}}}", "memory {{host}}/{{gpu}}"),
                ],
                unit="percentunit",
                width=8,
            ),
            Panel(
                "Temperature",
                [
                    (f"gpulse_gpu_temperature_celsius{{{GPU}}}", "die {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_memory_temperature_celsius{{{GPU}}}", "HBM {{host}}/{{gpu}}"),
                ],
                unit="celsius",
                width=8,
            ),
            Panel(
                "Power and limit",
                [
                    (f"gpulse_gpu_power_usage_watts{{{GPU}}}", "draw {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_power_limit_watts{{{GPU}}}", "limit {{host}}/{{gpu}}"),
                ],
                unit="watt",
                width=8,
            ),
            Panel(
                "SM clock and maximum",
                [
                    (f"gpulse_gpu_sm_clock_hertz{{{GPU}}}", "SM {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_sm_clock_max_hertz{{{GPU}}}", "max {{host}}/{{gpu}}"),
                ],
                unit="hertz",
                width=8,
            ),
            Panel(
                "Why clocks are held down",
                [
                    (f"gpulse_gpu_clock_event_sw_power_cap{{{GPU}}}", "power cap {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_clock_event_sw_thermal_slowdown{{{GPU}}}", "sw thermal {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_clock_event_hw_thermal_slowdown{{{GPU}}}", "hw thermal {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_clock_event_hw_slowdown{{{GPU}}}", "hw slowdown {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_clock_event_hw_power_brake{{{GPU}}}", "power brake {{host}}/{{gpu}}"),
                ],
                width=8,
            ),
            Panel(
                "Time throttled",
                [
                    (
                        f"rate(gpulse_gpu_thermal_violation_seconds_total{{{GPU}}}[$__rate_interval])",
                        "thermal {{host}}/{{gpu}}",
                    ),
                    (
                        f"rate(gpulse_gpu_power_violation_seconds_total{{{GPU}}}[$__rate_interval])",
                        "power {{host}}/{{gpu}}",
                    ),
                ],
                unit="percentunit",
                width=8,
            ),
            Panel(
                "Framebuffer memory",
                [
                    (f"gpulse_gpu_memory_used_bytes{{{GPU}}}", "used {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_memory_total_bytes{{{GPU}}}", "total {{host}}/{{gpu}}"),
                ],
                unit="bytes",
                width=8,
            ),
            Panel(
                "ECC errors (volatile)",
                [
                    (f"gpulse_gpu_ecc_corrected_volatile_total{{{GPU}}}", "corrected {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_ecc_uncorrected_volatile_total{{{GPU}}}", "uncorrected {{host}}/{{gpu}}"),
                ],
                width=8,
            ),
            Panel(
                "Row remapping and retired pages",
                [
                    (f"gpulse_gpu_remapped_rows_correctable{{{GPU}}}", "remapped (corr) {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_remapped_rows_uncorrectable{{{GPU}}}", "remapped (uncorr) {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_remapped_rows_pending{{{GPU}}}", "remap pending {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_remapped_rows_failure{{{GPU}}}", "remap failed {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_retired_pages_pending{{{GPU}}}", "retire pending {{host}}/{{gpu}}"),
                ],
                width=8,
            ),
            Panel(
                "NVLink errors",
                [
                    (f"rate(gpulse_gpu_nvlink_crc_errors_total{{{GPU}}}[$__rate_interval])", "CRC {{host}}/{{gpu}}"),
                    (
                        f"rate(gpulse_gpu_nvlink_replay_errors_total{{{GPU}}}[$__rate_interval])",
                        "replay {{host}}/{{gpu}}",
                    ),
                    (
                        f"rate(gpulse_gpu_nvlink_recovery_errors_total{{{GPU}}}[$__rate_interval])",
                        "recovery {{host}}/{{gpu}}",
                    ),
                ],
                unit="cps",
                width=8,
            ),
            Panel(
                "NVLink links",
                [
                    (f"gpulse_gpu_nvlink_links_up{{{GPU}}}", "up {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_nvlink_links_down{{{GPU}}}", "down {{host}}/{{gpu}}"),
                ],
                width=8,
            ),
            Panel(
                "PCIe link and replays",
                [
                    (f"gpulse_gpu_pcie_link_generation{{{GPU}}}", "gen {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_pcie_link_max_generation{{{GPU}}}", "max gen {{host}}/{{gpu}}"),
                    (f"gpulse_gpu_pcie_link_width{{{GPU}}}", "width {{host}}/{{gpu}}"),
                    (f"rate(gpulse_gpu_pcie_replay_total{{{GPU}}}[$__rate_interval])", "replays/s {{host}}/{{gpu}}"),
                ],
                width=8,
            ),
            Panel("XIDs", [(f"gpulse_gpu_xid_errors_total{{{GPU}}}", "XID {{xid}} {{host}}/{{gpu}}")], width=12),
            Panel(
                "Inventory",
                [(f"gpulse_gpu_info{{{GPU}}}", "")],
                "table",
                width=12,
                instant=True,
                field_config=_TABLE_FIELDS,
            ),
        ],
    )


def alerts_and_anomalies() -> dict[str, Any]:
    return dashboard(
        "gpulse-alerts",
        "gpulse / Alerts and anomaly scores",
        "What is firing (collector detection and Prometheus rules) and how far each GPU is from its peers"
        " and its own baseline.",
        ["host"],
        [
            Panel(
                "Alerts held by the collector",
                [("sum by (state, severity) (gpulse_alerts)", "{{state}} {{severity}}")],
                "bargauge",
                width=8,
                instant=True,
            ),
            Panel(
                "Firing in detection",
                [('sum by (severity) (gpulse_detect_alert{alertstate="firing"}) or vector(0)', "{{severity}}")],
                "stat",
                width=8,
                options=_STAT,
            ),
            Panel(
                "Firing in Prometheus rules",
                [('sum by (severity) (ALERTS{alertstate="firing"}) or vector(0)', "{{severity}}")],
                "stat",
                width=8,
                options=_STAT,
            ),
            Panel(
                "Active detection alerts",
                [('gpulse_detect_alert{host=~"$host"}', "")],
                "table",
                width=24,
                instant=True,
                field_config=_TABLE_FIELDS,
            ),
            Panel(
                "Prometheus-rule alerts",
                [('ALERTS{alertstate="firing", host=~"$host"}', "")],
                "table",
                width=24,
                instant=True,
                field_config=_TABLE_FIELDS,
            ),
            Panel(
                "Peer scores (robust sigmas from peers)",
                [('gpulse_detect_peer_score{host=~"$host"}', "{{host}}/{{gpu}} {{signal}}")],
                description="A GPU's signal against its peers' median (same host, model, job, load); |score| > 4"
                " is unusual.",
            ),
            Panel(
                "Baseline scores (robust sigmas from its own past)",
                [('gpulse_detect_baseline_score{host=~"$host"}', "{{host}}/{{gpu}} {{signal}}")],
            ),
            Panel(
                "Most anomalous GPUs now",
                [
                    (
                        'topk(10, max by (host, gpu, signal) (abs(gpulse_detect_peer_score{host=~"$host"})))',
                        "{{host}}/{{gpu}} {{signal}}",
                    )
                ],
                "bargauge",
                width=24,
                instant=True,
            ),
            Panel(
                "Remediation actions",
                [
                    (
                        "sum by (action, outcome) (increase(gpulse_remediation_actions_total[$__rate_interval]))",
                        "{{action}} {{outcome}}",
                    )
                ],
                width=8,
                description="Drains and resumes taken, dry-run, pending approval, skipped, failed, and blocked by"
                " the circuit breaker.",
            ),
            Panel(
                "Hosts held by remediation",
                [("sum by (state) (gpulse_remediation_open_actions)", "{{state}}")],
                "bargauge",
                width=8,
                instant=True,
            ),
            Panel(
                "Remediation circuit breaker",
                [("max(gpulse_remediation_breaker_tripped)", "tripped")],
                "stat",
                width=8,
                options=_STAT,
                description="1: all automatic actions stopped until `gpulse remediation reset`.",
            ),
            Panel(
                "XID rate",
                [
                    (
                        'sum by (host, xid) (rate(gpulse_gpu_xid_errors_total{host=~"$host"}[$__rate_interval]))',
                        "{{host}} XID {{xid}}",
                    )
                ],
                unit="cps",
                width=24,
            ),
        ],
    )


def self_health() -> dict[str, Any]:
    return dashboard(
        "gpulse-self",
        "gpulse / gpulse's own health",
        "The monitoring watching itself: agents connected, ingest and refusals, scrape and remote write.",
        [],
        [
            Panel("Collectors up", [('up{job=~"gpulse.*"}', "{{instance}}")], "stat", width=6, height=4, options=_STAT),
            Panel(
                "Agents connected",
                [("sum(gpulse_collector_connected_agents)", "connected")],
                "stat",
                width=6,
                height=4,
                options=_STAT,
            ),
            Panel(
                "Hosts stale or down",
                [("count(gpulse_host_up == 0) or vector(0)", "down")],
                "stat",
                width=6,
                height=4,
                options=_STAT,
            ),
            Panel(
                "/metrics render time",
                [("gpulse_collector_last_scrape_render_seconds", "{{instance}}")],
                "stat",
                "s",
                width=6,
                height=4,
                options=_STAT,
            ),
            Panel(
                "Frames applied",
                [("sum(rate(gpulse_collector_frames_applied_total[$__rate_interval]))", "frames/s")],
                unit="ops",
            ),
            Panel(
                "Refusals by reason",
                [
                    (
                        "sum by (kind, reason) ("
                        + " or ".join(
                            f"label_replace(rate(gpulse_collector_{metric}_total[$__rate_interval]),"
                            f' "kind", "{kind}", "", "")'
                            for metric, kind in (
                                ("frames_rejected", "frame"),
                                ("streams_refused", "stream"),
                                ("events_rejected", "event"),
                            )
                        )
                        + ") or vector(0)",
                        "{{kind}} {{reason}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "Agent events by kind",
                [("sum by (kind) (rate(gpulse_collector_events_total[$__rate_interval])) or vector(0)", "{{kind}}")],
                unit="ops",
            ),
            Panel(
                "Replayed records ignored",
                [("rate(gpulse_collector_duplicate_records_total[$__rate_interval])", "duplicates/s")],
                unit="ops",
            ),
            Panel("Scrape duration", [('scrape_duration_seconds{job=~"gpulse.*"}', "{{instance}}")], unit="s"),
            Panel("Series per scrape", [('scrape_samples_scraped{job=~"gpulse.*"}', "{{instance}}")]),
            Panel(
                "Spool records dropped by agents",
                [("sum(increase(gpulse_host_spool_dropped_records_total[1h]))", "last hour")],
                unit="short",
            ),
            Panel(
                "Remote write",
                [
                    ("rate(gpulse_remote_write_samples_sent_total[$__rate_interval])", "sent/s"),
                    ("gpulse_remote_write_pending_samples", "pending"),
                    (
                        "sum(rate(gpulse_remote_write_samples_dropped_total[$__rate_interval])) or vector(0)",
                        "dropped/s",
                    ),
                ],
                description="Empty when remote write is off in the collector config.",
            ),
        ],
    )


def efficiency() -> dict[str, Any]:
    rate = "[$__rate_interval]"
    return dashboard(
        "gpulse-efficiency",
        "gpulse / Efficiency",
        "What the fleet's GPUs did for their cost: waste (idle allocated GPUs), energy, stranded capacity. "
        "Numbers are defined in docs/efficiency.md; `gpulse report` gives the same by job, user or account.",
        [],
        [
            Panel(
                "Idle allocated GPUs (waste)",
                [(f"sum(rate(gpulse_ledger_fleet_idle_gpu_seconds_total{rate}))", "idle allocated GPUs")],
                description="GPUs held by a job but below [ledger] idle_threshold for longer than idle_after.",
            ),
            Panel(
                "Allocated, busy and idle GPUs",
                [
                    (f"sum(rate(gpulse_ledger_fleet_allocated_gpu_seconds_total{rate}))", "allocated"),
                    (f"sum(rate(gpulse_ledger_fleet_busy_gpu_seconds_total{rate}))", "busy"),
                    (f"sum(rate(gpulse_ledger_fleet_unallocated_gpu_seconds_total{rate}))", "unallocated"),
                ],
            ),
            Panel(
                "Stranded capacity",
                [('sum by (state) (gpulse_ledger_gpus{state=~"idle|unallocated"})', "{{state}}")],
                description="GPUs that could run work now: unallocated, or allocated and idle.",
            ),
            Panel(
                "Energy per host",
                [(f"sum by (host) (rate(gpulse_ledger_host_energy_joules_total{rate}))", "{{host}}")],
                unit="watt",
            ),
            Panel(
                "Top idle jobs (running)",
                [("topk(10, gpulse_ledger_top_idle_job_gpu_seconds)", "{{job_kind}} {{job_id}} {{user}} {{host}}")],
                "table",
                "s",
                instant=True,
            ),
            Panel(
                "Top idle users (last hour)",
                [("topk(10, increase(gpulse_ledger_user_idle_gpu_seconds_total[1h]))", "{{user}}")],
                "table",
                "s",
                instant=True,
            ),
            Panel(
                "Energy by account (last hour)",
                [("topk(10, increase(gpulse_ledger_account_energy_joules_total[1h]))", "{{account}}")],
                "table",
                "joule",
                instant=True,
            ),
            Panel(
                "Samples missing (gap GPU-seconds)",
                [(f"sum(rate(gpulse_ledger_fleet_gap_gpu_seconds_total{rate})) or vector(0)", "GPUs in a gap")],
                description="Intervals longer than max_gap: energy still comes from the counters; activity is unknown.",
            ),
        ],
    )


DASHBOARDS = {
    "gpulse-fleet.json": fleet,
    "gpulse-host.json": host_detail,
    "gpulse-gpu.json": gpu_detail,
    "gpulse-alerts.json": alerts_and_anomalies,
    "gpulse-self.json": self_health,
    "gpulse-efficiency.json": efficiency,
}


def render_all() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "dashboards"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)
        print(out / name)


if __name__ == "__main__":
    main()
