from __future__ import annotations

import json
from dataclasses import replace

from collector.alerting.receivers.pagerduty import MAX_EVENT_BYTES, PagerDutyConfig, event
from tests.fakes.pagerduty import validate

from .helpers import alert

CONFIG = PagerDutyConfig("pd", routing_key="r" * 32)


def gpu_alert(**annotations: str):  # type: ignore[no-untyped-def]
    base = alert(name="GpuXid", severity="critical", host="node-7", gpu="1", xid="79")
    return replace(
        base,
        annotations={
            "summary": "GPU fell off the bus",
            "gpu_uuid": "GPU-1",
            "gpu_model": "H100",
            "gpu_pci_bus_id": "0:11",
            "job": "slurm 4242",
            "dashboard": "https://grafana/d/x",
            "value": "79",
            **annotations,
        },
    )


def test_trigger_carries_dedup_key_severity_and_details() -> None:
    a = gpu_alert()
    body = event(a, CONFIG)
    assert validate(body) == []
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == a.fingerprint
    payload = body["payload"]
    assert (payload["severity"], payload["source"]) == ("critical", "node-7")
    assert payload["summary"] == "GPU fell off the bus"
    details = payload["custom_details"]
    assert details["host"] == "node-7"
    assert details["gpu"] == {"index": "1", "uuid": "GPU-1", "model": "H100", "pci_bus_id": "0:11"}
    assert details["job"] == "slurm 4242"
    assert details["evidence"] == {"value": "79"}
    assert details["labels"]["xid"] == "79"
    assert details["dashboard"] == body["client_url"] == body["links"][0]["href"] == "https://grafana/d/x"


def test_resolve_names_only_the_dedup_key() -> None:
    a = gpu_alert()
    body = event(a.resolved(10), CONFIG)
    assert body == {"routing_key": "r" * 32, "event_action": "resolve", "dedup_key": a.fingerprint}


def test_severity_mapping_is_configurable() -> None:
    body = event(alert(severity="warning"), replace(CONFIG, severity_map={"warning": "error"}))
    assert body["payload"]["severity"] == "error"


def test_summary_is_cut_to_1024_and_event_kept_under_512_kb() -> None:
    huge = gpu_alert(summary="s" * 5000, trace="x" * (600 * 1024))
    body = event(huge, CONFIG)
    assert len(body["payload"]["summary"]) == 1024
    assert len(json.dumps(body).encode()) < MAX_EVENT_BYTES
    assert validate(body) == []
    assert body["payload"]["custom_details"]["host"] == "node-7"  # trimmed, never dropped


def test_two_collectors_compute_the_same_dedup_key() -> None:
    # Label order and process do not matter: the key is a hash of the sorted label set.
    a = alert(name="GpuXid", host="node-7", gpu="1")
    b = alert(gpu="1", host="node-7", name="GpuXid")
    assert event(a, CONFIG)["dedup_key"] == event(b, CONFIG)["dedup_key"] == a.fingerprint
