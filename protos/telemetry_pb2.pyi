from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_UNKNOWN: _ClassVar[HealthStatus]
    HEALTH_OK: _ClassVar[HealthStatus]
    HEALTH_WARN: _ClassVar[HealthStatus]
    HEALTH_FAIL: _ClassVar[HealthStatus]
HEALTH_UNKNOWN: HealthStatus
HEALTH_OK: HealthStatus
HEALTH_WARN: HealthStatus
HEALTH_FAIL: HealthStatus

class AgentMessage(_message.Message):
    __slots__ = ("seq", "hello", "batch", "event", "sent_unix_ns")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hello: Hello
    batch: Batch
    event: Event
    sent_unix_ns: int
    def __init__(self, seq: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., sent_unix_ns: _Optional[int] = ...) -> None: ...

class CollectorMessage(_message.Message):
    __slots__ = ("welcome", "ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    ack: Ack
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("host_id", "boot_id", "agent_version", "protocol_version", "sent_unix_ns", "interval_seconds", "host", "gpus", "host_field_ids", "gpu_field_ids", "resume_after_seq", "boot_unix_ns")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_IDS_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_IDS_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    BOOT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    boot_id: str
    agent_version: str
    protocol_version: int
    sent_unix_ns: int
    interval_seconds: float
    host: HostInventory
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInventory]
    host_field_ids: _containers.RepeatedScalarFieldContainer[int]
    gpu_field_ids: _containers.RepeatedScalarFieldContainer[int]
    resume_after_seq: int
    boot_unix_ns: int
    def __init__(self, host_id: _Optional[str] = ..., boot_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., sent_unix_ns: _Optional[int] = ..., interval_seconds: _Optional[float] = ..., host: _Optional[_Union[HostInventory, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[GpuInventory, _Mapping]]] = ..., host_field_ids: _Optional[_Iterable[int]] = ..., gpu_field_ids: _Optional[_Iterable[int]] = ..., resume_after_seq: _Optional[int] = ..., boot_unix_ns: _Optional[int] = ...) -> None: ...

class HostInventory(_message.Message):
    __slots__ = ("hostname", "kernel", "os", "cpu_count", "memory_total_bytes", "gpu_source", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    kernel: str
    os: str
    cpu_count: int
    memory_total_bytes: int
    gpu_source: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, hostname: _Optional[str] = ..., kernel: _Optional[str] = ..., os: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., gpu_source: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GpuInventory(_message.Message):
    __slots__ = ("index", "uuid", "name", "serial", "pci_bus_id", "driver_version", "cuda_version", "vbios_version", "memory_total_bytes", "power_limit_min_watts", "power_limit_max_watts", "power_limit_default_watts", "persistence_mode", "mig_mode", "pcie_max_generation", "pcie_max_width", "nvlink_count", "unsupported_field_ids")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CUDA_VERSION_FIELD_NUMBER: _ClassVar[int]
    VBIOS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_MIN_WATTS_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_MAX_WATTS_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_DEFAULT_WATTS_FIELD_NUMBER: _ClassVar[int]
    PERSISTENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    MIG_MODE_FIELD_NUMBER: _ClassVar[int]
    PCIE_MAX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    PCIE_MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    NVLINK_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_IDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    serial: str
    pci_bus_id: str
    driver_version: str
    cuda_version: str
    vbios_version: str
    memory_total_bytes: int
    power_limit_min_watts: float
    power_limit_max_watts: float
    power_limit_default_watts: float
    persistence_mode: bool
    mig_mode: bool
    pcie_max_generation: int
    pcie_max_width: int
    nvlink_count: int
    unsupported_field_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., serial: _Optional[str] = ..., pci_bus_id: _Optional[str] = ..., driver_version: _Optional[str] = ..., cuda_version: _Optional[str] = ..., vbios_version: _Optional[str] = ..., memory_total_bytes: _Optional[int] = ..., power_limit_min_watts: _Optional[float] = ..., power_limit_max_watts: _Optional[float] = ..., power_limit_default_watts: _Optional[float] = ..., persistence_mode: _Optional[bool] = ..., mig_mode: _Optional[bool] = ..., pcie_max_generation: _Optional[int] = ..., pcie_max_width: _Optional[int] = ..., nvlink_count: _Optional[int] = ..., unsupported_field_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("collector_id", "processed_seq")
    COLLECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_SEQ_FIELD_NUMBER: _ClassVar[int]
    collector_id: str
    processed_seq: int
    def __init__(self, collector_id: _Optional[str] = ..., processed_seq: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("unix_ns", "values")
    UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    unix_ns: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, unix_ns: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("unix_ns", "xid", "gpu_lost", "health", "spool_drop", "workload", "inventory", "nvlink")
    UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    GPU_LOST_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    SPOOL_DROP_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    NVLINK_FIELD_NUMBER: _ClassVar[int]
    unix_ns: int
    xid: XidEvent
    gpu_lost: GpuLostEvent
    health: HealthChangeEvent
    spool_drop: SpoolDropEvent
    workload: WorkloadEvent
    inventory: InventoryChangeEvent
    nvlink: NvlinkEvent
    def __init__(self, unix_ns: _Optional[int] = ..., xid: _Optional[_Union[XidEvent, _Mapping]] = ..., gpu_lost: _Optional[_Union[GpuLostEvent, _Mapping]] = ..., health: _Optional[_Union[HealthChangeEvent, _Mapping]] = ..., spool_drop: _Optional[_Union[SpoolDropEvent, _Mapping]] = ..., workload: _Optional[_Union[WorkloadEvent, _Mapping]] = ..., inventory: _Optional[_Union[InventoryChangeEvent, _Mapping]] = ..., nvlink: _Optional[_Union[NvlinkEvent, _Mapping]] = ...) -> None: ...

class XidEvent(_message.Message):
    __slots__ = ("gpu_index", "xid", "count", "message", "source")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    XID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    xid: int
    count: int
    message: str
    source: str
    def __init__(self, gpu_index: _Optional[int] = ..., xid: _Optional[int] = ..., count: _Optional[int] = ..., message: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class GpuLostEvent(_message.Message):
    __slots__ = ("gpu_index", "reason")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    reason: str
    def __init__(self, gpu_index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class HealthChangeEvent(_message.Message):
    __slots__ = ("gpu_index", "status", "previous", "reasons")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    status: HealthStatus
    previous: HealthStatus
    reasons: _containers.RepeatedCompositeFieldContainer[HealthReason]
    def __init__(self, gpu_index: _Optional[int] = ..., status: _Optional[_Union[HealthStatus, str]] = ..., previous: _Optional[_Union[HealthStatus, str]] = ..., reasons: _Optional[_Iterable[_Union[HealthReason, _Mapping]]] = ...) -> None: ...

class HealthReason(_message.Message):
    __slots__ = ("check", "status", "message")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    check: str
    status: HealthStatus
    message: str
    def __init__(self, check: _Optional[str] = ..., status: _Optional[_Union[HealthStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...

class SpoolDropEvent(_message.Message):
    __slots__ = ("first_seq", "last_seq", "records", "bytes", "reason")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    last_seq: int
    records: int
    bytes: int
    reason: str
    def __init__(self, first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., records: _Optional[int] = ..., bytes: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkloadEvent(_message.Message):
    __slots__ = ("gpu_index", "processes", "mig_instances")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    MIG_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    processes: _containers.RepeatedCompositeFieldContainer[GpuProcess]
    mig_instances: _containers.RepeatedCompositeFieldContainer[MigInstance]
    def __init__(self, gpu_index: _Optional[int] = ..., processes: _Optional[_Iterable[_Union[GpuProcess, _Mapping]]] = ..., mig_instances: _Optional[_Iterable[_Union[MigInstance, _Mapping]]] = ...) -> None: ...

class GpuProcess(_message.Message):
    __slots__ = ("pid", "name", "used_memory_bytes", "workload", "mig_uuid", "gpu_instance_id", "compute_instance_id")
    PID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USED_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    MIG_UUID_FIELD_NUMBER: _ClassVar[int]
    GPU_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    name: str
    used_memory_bytes: int
    workload: Workload
    mig_uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    def __init__(self, pid: _Optional[int] = ..., name: _Optional[str] = ..., used_memory_bytes: _Optional[int] = ..., workload: _Optional[_Union[Workload, _Mapping]] = ..., mig_uuid: _Optional[str] = ..., gpu_instance_id: _Optional[int] = ..., compute_instance_id: _Optional[int] = ...) -> None: ...

class MigInstance(_message.Message):
    __slots__ = ("uuid", "gpu_instance_id", "compute_instance_id", "memory_total_bytes", "memory_used_bytes")
    UUID_FIELD_NUMBER: _ClassVar[int]
    GPU_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    memory_total_bytes: int
    memory_used_bytes: int
    def __init__(self, uuid: _Optional[str] = ..., gpu_instance_id: _Optional[int] = ..., compute_instance_id: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("kind", "id", "name", "namespace", "user", "container_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    name: str
    namespace: str
    user: str
    container_id: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., user: _Optional[str] = ..., container_id: _Optional[str] = ...) -> None: ...

class InventoryChangeEvent(_message.Message):
    __slots__ = ("gpu", "what")
    GPU_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    gpu: GpuInventory
    what: str
    def __init__(self, gpu: _Optional[_Union[GpuInventory, _Mapping]] = ..., what: _Optional[str] = ...) -> None: ...

class NvlinkEvent(_message.Message):
    __slots__ = ("gpu_index", "links")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    links: _containers.RepeatedCompositeFieldContainer[NvlinkLink]
    def __init__(self, gpu_index: _Optional[int] = ..., links: _Optional[_Iterable[_Union[NvlinkLink, _Mapping]]] = ...) -> None: ...

class NvlinkLink(_message.Message):
    __slots__ = ("link", "up", "crc_errors", "replay_errors", "recovery_errors")
    LINK_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    CRC_ERRORS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    link: int
    up: bool
    crc_errors: float
    replay_errors: float
    recovery_errors: float
    def __init__(self, link: _Optional[int] = ..., up: _Optional[bool] = ..., crc_errors: _Optional[float] = ..., replay_errors: _Optional[float] = ..., recovery_errors: _Optional[float] = ...) -> None: ...
