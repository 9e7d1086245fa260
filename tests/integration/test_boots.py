"""An earlier boot's spool drained after the host's current boot connected: its history counts, its
state does not overwrite the current boot's, and boots are ordered by when they started."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from protos import telemetry_pb2 as pb
from tests import streams
from tests.kit import Pki, Service, metric_value, start_collector

HOUR_NS = 3600 * 10**9


def event(seq: int, **kind: object) -> pb.AgentMessage:
    return pb.AgentMessage(seq=seq, event=pb.Event(unix_ns=time.time_ns(), **kind))  # type: ignore[arg-type]


def two_boots(
    kit: Pki, host: str, *, gpus: int = 1, earlier_gpus: int = 1
) -> tuple[grpc.ChannelCredentials, pb.Hello, pb.Hello]:
    """Credentials for ``host``, its current boot's Hello (started a minute ago) and its previous
    boot's (an hour ago). The previous boot's spool drains after the reboot, so its Hello is sent
    later: only boot_unix_ns says it is the older one."""
    cert, key = kit.agent(host)
    now = time.time_ns()
    current = streams.hello_body(host, boot_id="boot-current", gpus=gpus)
    current.boot_unix_ns, current.sent_unix_ns = now - 60 * 10**9, now
    earlier = streams.hello_body(host, boot_id="boot-earlier", gpus=earlier_gpus)
    earlier.boot_unix_ns, earlier.sent_unix_ns = now - HOUR_NS, now + 1
    return streams.credentials(kit.ca, cert, key), current, earlier


def test_an_earlier_boot_drained_late_counts_its_xids_and_leaves_the_current_state(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    creds, current, earlier = two_boots(test_pki, "node-b")
    healthy = pb.HealthChangeEvent(gpu_index=0, status=pb.HEALTH_OK)
    outcome = streams.exchange(
        collector.target,
        creds,
        [pb.AgentMessage(hello=current), streams.frame_message(1), event(2, health=healthy)],
    )
    assert outcome.acked == 2, outcome
    earlier.gpus[0].vbios_version = "old-vbios"
    outcome = streams.exchange(
        collector.target,
        creds,
        [
            pb.AgentMessage(hello=earlier),
            event(1, xid=pb.XidEvent(gpu_index=0, xid=79, count=1)),
            event(2, health=pb.HealthChangeEvent(gpu_index=0, status=pb.HEALTH_FAIL)),
            event(3, gpu_lost=pb.GpuLostEvent(gpu_index=0, reason="fell off the bus before the reboot")),
            event(4, inventory=pb.InventoryChangeEvent(gpu=pb.GpuInventory(index=0, uuid="GPU-0", vbios_version="x"))),
        ],
    )
    assert outcome.acked == 4, outcome  # processed, so the agent lets them go
    text = collector.metrics()
    assert metric_value(text, "gpulse_gpu_xid_errors_total", host="node-b", gpu="0", xid="79") == 1
    assert metric_value(text, "gpulse_gpu_health_status", host="node-b", gpu="0", status="ok") == 1
    assert metric_value(text, "gpulse_gpu_health_status", host="node-b", gpu="0", status="fail") == 0
    assert metric_value(text, "gpulse_gpu_lost", host="node-b", gpu="0") == 0
    for vbios in ("old-vbios", "x"):  # neither its Hello nor its inventory event describes the GPU now
        assert metric_value(text, "gpulse_gpu_info", host="node-b", gpu="0", vbios_version=vbios) is None
    rejected = metric_value(text, "gpulse_collector_events_rejected_total", reason="superseded_by_newer_boot")
    assert rejected == 3
    # The XID 79 happened before the reboot that dealt with it: no "reboot required" page now.
    time.sleep(1.5)  # a detection tick
    text = collector.metrics()
    assert metric_value(text, "gpulse_detect_alert", alertname="GpuXidRebootRequired") is None


def test_an_earlier_boots_xids_count_on_the_same_gpu_by_uuid_after_one_is_gone(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    creds, current, earlier = two_boots(test_pki, "node-c", gpus=2, earlier_gpus=3)
    current.gpus[1].uuid = "GPU-2"  # GPU-1 fell off the bus and did not come back: GPU-2 is now index 1
    assert streams.exchange(
        collector.target, creds, [pb.AgentMessage(hello=current), streams.frame_message(1, 8)]
    ).welcomed
    outcome = streams.exchange(
        collector.target,
        creds,
        [
            pb.AgentMessage(hello=earlier),
            event(1, xid=pb.XidEvent(gpu_index=1, xid=79, count=1)),  # GPU-1: gone
            event(2, xid=pb.XidEvent(gpu_index=2, xid=94, count=2)),  # GPU-2: index 1 now
        ],
    )
    assert outcome.acked == 2, outcome
    text = collector.metrics()
    assert metric_value(text, "gpulse_gpu_xid_errors_total", host="node-c", gpu="1", uuid="GPU-2", xid="94") == 2
    assert metric_value(text, "gpulse_gpu_xid_errors_total", host="node-c", xid="79") is None
    assert metric_value(text, "gpulse_collector_events_rejected_total", reason="gpu_not_present") == 1
