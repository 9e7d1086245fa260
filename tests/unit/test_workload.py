"""Job attribution from cgroup paths as Slurm, Kubernetes, Docker and systemd write them, for NVML's PIDs only."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import pytest

from agent.records import GpuProcessInfo
from agent.sources.workload import (
    PodResourcesClient,
    Workload,
    WorkloadResolver,
    _pod_resources_messages,
    workload_from_cgroup,
    workload_from_environ,
)

CID = "3f1c2a9be0d74c6e8a5b1f0e2d3c4b5a6978877665544332211aabbccddeeff0"
POD = "1c2d3e4f-aaaa-4bbb-8ccc-ddddeeeeffff"


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        # Slurm, cgroup v2 (slurmstepd scope) and v1 (per-controller lines)
        ("0::/system.slice/slurmstepd.scope/job_81234/step_0/user/task_0\n", Workload("slurm", "81234")),
        (
            "12:memory:/slurm/uid_1000/job_555/step_batch/task_0\n11:cpu,cpuacct:/slurm/uid_1000/job_555/step_batch\n",
            Workload("slurm", "555"),
        ),
        # Kubernetes, systemd cgroup driver and cgroupfs driver
        (
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
            f"cri-containerd-{CID}.scope\n",
            Workload("kubernetes", POD, container_id=CID),
        ),
        (f"0::/kubepods/besteffort/pod{POD}/{CID}\n", Workload("kubernetes", POD, container_id=CID)),
        # Plain containers
        (f"0::/system.slice/docker-{CID}.scope\n", Workload("container", CID, container_id=CID)),
        (f"0::/docker/{CID}\n", Workload("container", CID, container_id=CID)),
        # systemd services; a login session is nobody's job
        ("0::/system.slice/vllm-inference.service\n", Workload("systemd", "vllm-inference.service")),
        ("0::/user.slice/user-1000.slice/session-4.scope\n", Workload()),
        ("", Workload()),
    ],
)
def test_workload_from_cgroup(cgroup: str, expected: Workload) -> None:
    assert workload_from_cgroup(cgroup) == expected


def test_workload_from_environ() -> None:
    assert workload_from_environ({"SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "train"}) == Workload("slurm", "77", "train")
    assert workload_from_environ({"PATH": "/bin"}) == Workload()


def make_proc(
    root: Path, pid: int, *, cgroup: str, start: int = 1000, environ: bytes = b"", comm: str = "python3"
) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    rest = " ".join(["0"] * 17 + [str(start)] + ["0"] * 20)
    (d / "stat").write_text(f"{pid} ({comm}) S 1 {rest}\n")
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(environ)
    (d / "comm").write_text(comm + "\n")
    (d / "status").write_text("Name:\tpython3\nUid:\t1000\t1000\t1000\t1000\n")


def test_resolver_reads_only_the_pids_nvml_reports_and_caches_them(tmp_path: Path) -> None:
    make_proc(tmp_path, 100, cgroup="0::/system.slice/slurmstepd.scope/job_9/step_0/user/task_0\n")
    make_proc(tmp_path, 200, cgroup="0::/system.slice/sshd.service\n", environ=b"HOME=/x\0SLURM_JOB_ID=42\0")
    make_proc(tmp_path, 300, cgroup="0::/system.slice/other.service\n")  # on the host, not on a GPU
    r = WorkloadResolver(proc_root=tmp_path, user_name=lambda uid: f"user{uid}")
    procs = {0: [GpuProcessInfo(100, 5)], 1: [GpuProcessInfo(200, 6)]}
    out = r.resolve(procs, {0: "GPU-a", 1: "GPU-b"})
    assert (out[0][0].workload_kind, out[0][0].workload_id, out[0][0].user, out[0][0].name) == (
        "slurm",
        "9",
        "user1000",
        "python3",
    )
    assert (out[1][0].workload_kind, out[1][0].workload_id) == ("slurm", "42")  # from the environment
    reads = r.proc_reads
    out = r.resolve({0: [GpuProcessInfo(100, 50)]}, {0: "GPU-a"})
    assert r.proc_reads - reads == 1  # only the start time, to tell a recycled pid
    assert out[0][0].used_memory_bytes == 50
    # The pid is recycled by a new process: read afresh.
    make_proc(tmp_path, 100, cgroup="0::/system.slice/jupyter.service\n", start=5000)
    out = r.resolve({0: [GpuProcessInfo(100, 1)]}, {0: "GPU-a"})
    assert (out[0][0].workload_kind, out[0][0].workload_id) == ("systemd", "jupyter.service")


def test_resolver_tolerates_a_process_that_exited(tmp_path: Path) -> None:
    out = WorkloadResolver(proc_root=tmp_path).resolve({0: [GpuProcessInfo(999, 1)]}, {0: "GPU-a"})
    assert out[0][0].pid == 999 and out[0][0].workload_kind == ""


@pytest.fixture
def kubelet(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real gRPC server on a unix socket answering the kubelet's pod-resources List."""
    request_cls, response_cls = _pod_resources_messages()
    answer = response_cls()
    pod = answer.pod_resources.add(name="trainer-0", namespace="ml")
    container = pod.containers.add(name="main")
    container.devices.add(resource_name="nvidia.com/gpu", device_ids=["GPU-a"])
    other = answer.pod_resources.add(name="web", namespace="default").containers.add(name="nginx")
    other.devices.add(resource_name="example.com/fpga", device_ids=["fpga-1"])
    handler = grpc.method_handlers_generic_handler(
        "v1.PodResourcesLister",
        {
            "List": grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: answer,
                request_deserializer=request_cls.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    sock = tmp_path / "kubelet.sock"
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield sock
    server.stop(0)


def test_pod_resources_name_the_pod_on_each_gpu(kubelet: Path, tmp_path: Path) -> None:
    client = PodResourcesClient(kubelet)
    assert client.gpu_pods() == {"GPU-a": ("ml", "trainer-0")}
    make_proc(tmp_path / "proc", 10, cgroup=f"0::/kubepods/burstable/pod{POD}/{CID}\n")
    r = WorkloadResolver(proc_root=tmp_path / "proc", pod_resources=client)
    p = r.resolve({0: [GpuProcessInfo(10, 1)]}, {0: "GPU-a"})[0][0]
    assert (p.workload_kind, p.workload_id, p.workload_namespace, p.workload_name) == (
        "kubernetes",
        POD,
        "ml",
        "trainer-0",
    )


def test_pod_resources_absent_socket_costs_nothing(tmp_path: Path) -> None:
    client = PodResourcesClient(tmp_path / "missing.sock")
    assert client.gpu_pods() == {} and client.calls == 0


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup"
FIXTURE_POD = "7b1c2a3e-4d5f-4a6b-8c9d-0e1f2a3b4c5d"
CONTAINERD_ID = "9a8f6e3b2c1d0e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f"
CRIO_ID = "e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3"


@pytest.mark.parametrize(
    ("fixture", "container"),
    [
        ("containerd-systemd-v2-guaranteed", CONTAINERD_ID),
        ("containerd-systemd-v2-burstable", CONTAINERD_ID),
        ("containerd-cgroupfs-v1", CONTAINERD_ID),
        ("crio-systemd-v2-besteffort", CRIO_ID),
        ("crio-systemd-v1", CRIO_ID),
        ("crio-cgroupfs-v2", CRIO_ID),
    ],
)
def test_container_and_pod_from_containerd_and_crio_cgroups_are_sent(
    tmp_path: Path, fixture: str, container: str
) -> None:
    from agent.sources.workload import WorkloadTracker
    from protos import telemetry_pb2 as pb

    make_proc(tmp_path, 4242, cgroup=(FIXTURES / fixture).read_text())
    resolved = WorkloadResolver(proc_root=tmp_path, user_name=str).resolve(
        {0: [GpuProcessInfo(4242, 2**30)]}, {0: "GPU-a"}
    )
    p = resolved[0][0]
    assert (p.workload_kind, p.workload_id, p.container_id) == ("kubernetes", FIXTURE_POD, container)
    # What goes on the wire, parsed back as the collector would.
    (event,) = WorkloadTracker().update(resolved, 1, 1)
    sent = pb.Event.FromString(event.SerializeToString()).workload.processes[0]
    assert (sent.pid, sent.workload.kind, sent.workload.id, sent.workload.container_id) == (
        4242,
        "kubernetes",
        FIXTURE_POD,
        container,
    )
