from __future__ import annotations

from collector.alerting.context import StoreContext
from collector.store import FleetStore
from protos import telemetry_pb2 as pb
from protos.codec import FrameLayout

from .helpers import alert


def store_with_job() -> FleetStore:
    store = FleetStore()
    hello = pb.Hello(host_id="node-7", boot_id="b1")
    for i in range(2):
        hello.gpus.add(index=i, uuid=f"GPU-{i}", name="NVIDIA H100 80GB HBM3", pci_bus_id=f"00000000:1{i}:00.0")
    record = store.register(hello, FrameLayout.from_hello(hello))
    job = pb.Workload(kind="slurm", id="4242", name="train-llm", user="alice")
    record.workloads[1] = [pb.GpuProcess(pid=7, name="python", workload=job)]
    return store


def test_alert_gets_gpu_identity_job_and_dashboard() -> None:
    enrich = StoreContext(store_with_job(), "https://grafana.example/d/gpu?var-host={host}&var-gpu={gpu}")
    out = enrich(alert(host="node-7", gpu="1", summary_unused="x"))
    assert out.annotations["gpu_uuid"] == "GPU-1"
    assert out.annotations["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert out.annotations["gpu_pci_bus_id"] == "00000000:11:00.0"
    assert out.annotations["job"] == 'slurm 4242 "train-llm" (user alice)'
    assert out.annotations["dashboard"] == "https://grafana.example/d/gpu?var-host=node-7&var-gpu=1"


def test_unknown_host_only_gets_the_dashboard_and_detection_annotations_win() -> None:
    enrich = StoreContext(store_with_job(), "https://g/{host}")
    base = alert(host="elsewhere", gpu="0")
    out = enrich(base)
    assert dict(out.annotations) == {"dashboard": "https://g/elsewhere"}
    assert StoreContext(FleetStore())(base) is base
