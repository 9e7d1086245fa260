"""Which job runs on a GPU: Slurm job, Kubernetes pod, systemd unit or container, for the PIDs NVML reports.

Cheap by construction: only ``/proc/<pid>`` of the processes NVML lists is read, once per process
(keyed by pid and start time, so a recycled pid is read afresh), and the kubelet pod-resources API
is asked only when its socket exists. A pure core parses cgroup paths and environments; the shell
reads files under an injectable ``/proc`` root.
"""

from __future__ import annotations

import pwd
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from agent.records import GpuProcessInfo, MigInstance
from protos import telemetry_pb2 as pb

__all__ = [
    "PodResourcesClient",
    "Workload",
    "WorkloadResolver",
    "WorkloadTracker",
    "workload_from_cgroup",
    "workload_from_environ",
]

log = structlog.get_logger("gpulse.agent.workload")

KUBELET_POD_RESOURCES = Path("/var/lib/kubelet/pod-resources/kubelet.sock")


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str = ""  # "slurm", "kubernetes", "systemd", "container" or "" when unknown
    id: str = ""  # Slurm job id, pod uid, unit name or container id
    name: str = ""
    namespace: str = ""
    container_id: str = ""


_SLURM_JOB = re.compile(r"/job_(\d+)(?:/|$)")
# kubepods-burstable-pod1c2d_..._ffff.slice (systemd driver) or /kubepods/burstable/pod1c2d-...-ffff (cgroupfs)
_POD_UID = re.compile(r"pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})")
_CONTAINER = re.compile(r"(?:^|/|-)(?:cri-containerd-|crio-|docker-|libpod-)?([0-9a-f]{64})(?:\.scope)?(?:/|$)")
_UNIT = re.compile(r"/([^/]+\.(?:service|scope))(?:/|$)")


def workload_from_cgroup(text: str) -> Workload:
    """The workload a process belongs to, from the contents of ``/proc/<pid>/cgroup`` (v1 or v2)."""
    paths = [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]
    # cgroup v2's unified line first; on v1 every controller line carries the same job path.
    paths.sort(key=lambda p: (not p, len(p)), reverse=True)
    for path in paths:
        container = _CONTAINER.search(path)
        container_id = container.group(1) if container else ""
        if "slurm" in path and (job := _SLURM_JOB.search(path)):
            return Workload("slurm", job.group(1))
        if "kubepods" in path and (pod := _POD_UID.search(path)):
            return Workload("kubernetes", pod.group(1).replace("_", "-"), container_id=container_id)
        if container_id:
            return Workload("container", container_id, container_id=container_id)
    for path in paths:
        units = _UNIT.findall(path)
        # The innermost unit that is not the slice-level session scaffolding.
        for unit in reversed(units):
            if not unit.startswith(("session-", "user@", "init.scope")):
                return Workload("systemd", unit)
    return Workload()


def workload_from_environ(environ: Mapping[str, str]) -> Workload:
    """A Slurm job from the process environment, for hosts where Slurm does not use cgroups per job."""
    job = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    if job:
        return Workload("slurm", job, name=environ.get("SLURM_JOB_NAME", ""))
    return Workload()


def _parse_environ(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.startswith(b"SLURM_"):
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


class WorkloadResolver:
    """Attributes NVML's compute processes to workloads by reading only their own ``/proc`` entries."""

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        pod_resources: PodResourcesClient | None = None,
        user_name: Callable[[int], str] | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.pod_resources = pod_resources
        self.user_name = user_name or _user_name
        self.proc_reads = 0  # /proc files read, to show the cost stays with NVML's PIDs
        self._cache: dict[tuple[int, str], GpuProcessInfo] = {}

    def resolve(
        self, processes: dict[int, list[GpuProcessInfo]], uuids: Mapping[int, str]
    ) -> dict[int, list[GpuProcessInfo]]:
        """The same processes with name, user and workload filled in; already-attributed ones pass through."""
        pods = self.pod_resources.gpu_pods() if self.pod_resources is not None and processes else {}
        seen: set[tuple[int, str]] = set()
        out: dict[int, list[GpuProcessInfo]] = {}
        for gpu, procs in processes.items():
            resolved = []
            for p in procs:
                if p.workload_kind:
                    resolved.append(p)
                    continue
                info = self._one(p, seen)
                pod = pods.get(uuids.get(gpu, ""))
                if pod is not None and info.workload_kind in ("kubernetes", "container", ""):
                    namespace, name = pod
                    info = replace(
                        info,
                        workload_kind="kubernetes",
                        workload_id=info.workload_id if info.workload_kind == "kubernetes" else "",
                        workload_name=name,
                        workload_namespace=namespace,
                    )
                resolved.append(info)
            out[gpu] = resolved
        for key in [k for k in self._cache if k not in seen]:
            del self._cache[key]  # forget exited processes so the cache stays the size of the GPU's work
        return out

    def _one(self, p: GpuProcessInfo, seen: set[tuple[int, str]]) -> GpuProcessInfo:
        base = self.proc_root / str(p.pid)
        start = self._read(base / "stat")
        # Field 22 (start time) tells a recycled pid from the one we cached; comm may hold spaces.
        key = (p.pid, start.rpartition(")")[2].split()[19] if start.count(" ") > 20 else "")
        seen.add(key)
        cached = self._cache.get(key)
        if cached is None:
            workload = workload_from_cgroup(self._read(base / "cgroup"))
            if not workload.kind or workload.kind == "systemd":
                env = workload_from_environ(_parse_environ(self._read_bytes(base / "environ")))
                workload = env if env.kind else workload
            uid = next(
                (int(line.split()[1]) for line in self._read(base / "status").splitlines() if line.startswith("Uid:")),
                -1,
            )
            cached = GpuProcessInfo(
                pid=p.pid,
                used_memory_bytes=0,
                name=self._read(base / "comm").strip() or p.name,
                workload_kind=workload.kind,
                workload_id=workload.id,
                workload_name=workload.name,
                workload_namespace=workload.namespace,
                user=self.user_name(uid) if uid >= 0 else "",
                container_id=workload.container_id,
            )
            self._cache[key] = cached
        return replace(
            cached,
            used_memory_bytes=p.used_memory_bytes,
            mig_uuid=p.mig_uuid,
            gpu_instance_id=p.gpu_instance_id,
            compute_instance_id=p.compute_instance_id,
        )

    def _read(self, path: Path) -> str:
        return self._read_bytes(path).decode(errors="replace")

    def _read_bytes(self, path: Path) -> bytes:
        self.proc_reads += 1
        try:
            return path.read_bytes()
        except OSError:
            return b""  # the process exited, or its environ is not ours to read


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class WorkloadTracker:
    """Says when a GPU's set of processes or their workloads changed, as the WorkloadEvent to send."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[tuple[object, ...], ...]] = {}

    def update(
        self,
        processes: dict[int, list[GpuProcessInfo]],
        gpu_count: int,
        unix_ns: int,
        mig: Mapping[int, list[MigInstance]] | None = None,
    ) -> list[pb.Event]:
        events = []
        for gpu in range(gpu_count):
            procs = processes.get(gpu, [])
            instances = (mig or {}).get(gpu, [])
            # Memory use moves every tick; a change of who runs there (or of the MIG layout) is worth an event.
            who = [
                (
                    p.pid,
                    p.workload_kind,
                    p.workload_id,
                    p.workload_name,
                    p.workload_namespace,
                    p.container_id,
                    p.mig_uuid,
                )
                for p in procs
            ]
            key = (*sorted(who), *sorted(("mig", m.uuid) for m in instances))
            last = self._last.get(gpu)
            if last == key or (last is None and not key):
                continue
            self._last[gpu] = key
            events.append(
                pb.Event(
                    unix_ns=unix_ns,
                    workload=pb.WorkloadEvent(
                        gpu_index=gpu,
                        processes=[
                            pb.GpuProcess(
                                pid=p.pid,
                                name=p.name,
                                used_memory_bytes=p.used_memory_bytes,
                                workload=pb.Workload(
                                    kind=p.workload_kind,
                                    id=p.workload_id,
                                    name=p.workload_name,
                                    namespace=p.workload_namespace,
                                    user=p.user,
                                    container_id=p.container_id,
                                ),
                                mig_uuid=p.mig_uuid,
                                gpu_instance_id=p.gpu_instance_id,
                                compute_instance_id=p.compute_instance_id,
                            )
                            for p in procs
                        ],
                        mig_instances=[
                            pb.MigInstance(
                                uuid=m.uuid,
                                gpu_instance_id=m.gpu_instance_id,
                                compute_instance_id=m.compute_instance_id,
                                memory_total_bytes=m.memory_total_bytes,
                                memory_used_bytes=m.memory_used_bytes,
                            )
                            for m in instances
                        ],
                    ),
                )
            )
        return events


# -- kubelet pod-resources API -----------------------------------------------------------------------


def _pod_resources_messages() -> tuple[Any, Any]:
    """The two messages of k8s.io/kubelet/pkg/apis/podresources/v1 we use, built at run time.

    Only the fields read here are declared; the rest of the kubelet's answer is skipped as unknown.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="gpulse_podresources_v1.proto", package="v1", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            added = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                added.type_name = type_name

    rep, opt = f.LABEL_REPEATED, f.LABEL_OPTIONAL
    string, msg = f.TYPE_STRING, f.TYPE_MESSAGE
    message("ListPodResourcesRequest")
    message("ContainerDevices", ("resource_name", 1, string, opt, ""), ("device_ids", 2, string, rep, ""))
    message("ContainerResources", ("name", 1, string, opt, ""), ("devices", 2, msg, rep, ".v1.ContainerDevices"))
    message(
        "PodResources",
        ("name", 1, string, opt, ""),
        ("namespace", 2, string, opt, ""),
        ("containers", 3, msg, rep, ".v1.ContainerResources"),
    )
    message("ListPodResourcesResponse", ("pod_resources", 1, msg, rep, ".v1.PodResources"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName("v1.ListPodResourcesRequest"))
    response = message_factory.GetMessageClass(pool.FindMessageTypeByName("v1.ListPodResourcesResponse"))
    return request, response


class PodResourcesClient:
    """Asks the kubelet which pod holds which GPU (by uuid), at most once per ``refresh_s``."""

    METHOD = "/v1.PodResourcesLister/List"

    def __init__(
        self,
        socket_path: Path = KUBELET_POD_RESOURCES,
        *,
        refresh_s: float = 30.0,
        timeout_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = socket_path
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.monotonic = monotonic
        self.calls = 0
        self.errors = 0
        self._request, self._response = _pod_resources_messages()
        self._cached: dict[str, tuple[str, str]] = {}
        self._next = 0.0

    def gpu_pods(self) -> dict[str, tuple[str, str]]:
        """GPU uuid -> (namespace, pod name); empty where the socket does not exist or does not answer."""
        now = self.monotonic()
        if now < self._next:
            return self._cached
        self._next = now + self.refresh_s
        if not self.socket_path.exists():
            self._cached = {}
            return self._cached
        import grpc

        self.calls += 1
        try:
            with grpc.insecure_channel(f"unix://{self.socket_path}") as channel:
                call = channel.unary_unary(
                    self.METHOD,
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=self._response.FromString,
                )
                answer = call(self._request(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            self.errors += 1
            log.warning("kubelet pod-resources API did not answer", socket=str(self.socket_path), error=str(exc))
            return self._cached
        pods: dict[str, tuple[str, str]] = {}
        for pod in answer.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    if devices.resource_name.startswith("nvidia.com/"):
                        for uuid in devices.device_ids:
                            pods[uuid] = (pod.namespace, pod.name)
        self._cached = pods
        return pods
