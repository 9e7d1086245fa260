"""A hand-driven agent stream for tests: any certificate, any messages, and what the collector answered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from protos import fields as catalog
from protos import telemetry_pb2 as pb
from protos import telemetry_pb2_grpc as pb_grpc
from protos.codec import PROTOCOL_VERSION
from runtime.transport import channel_options


def hello(host_id: str, *, boot_id: str = "", gpus: int = 1) -> pb.AgentMessage:
    return pb.AgentMessage(hello=hello_body(host_id, boot_id=boot_id, gpus=gpus))


def hello_body(host_id: str, *, boot_id: str = "", gpus: int = 1) -> pb.Hello:
    host_fields = list(catalog.CATALOG.host_ids[:2])
    gpu_fields = list(catalog.CATALOG.gpu_ids[:3])
    return pb.Hello(
        host_id=host_id,
        boot_id=boot_id or str(uuid.uuid4()),
        protocol_version=PROTOCOL_VERSION,
        sent_unix_ns=time.time_ns(),
        host_field_ids=host_fields,
        gpu_field_ids=gpu_fields,
        gpus=[pb.GpuInventory(index=i, uuid=f"GPU-{i}") for i in range(gpus)],
    )


def frame_message(seq: int, width: int = 5) -> pb.AgentMessage:
    return pb.AgentMessage(seq=seq, batch=pb.Batch(frames=[pb.Frame(unix_ns=time.time_ns(), values=[1.0] * width)]))


@dataclass
class Outcome:
    """What the collector sent back, and how the stream ended."""

    replies: list[pb.CollectorMessage] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""

    @property
    def welcomed(self) -> bool:
        return any(r.HasField("welcome") for r in self.replies)

    @property
    def acked(self) -> int:
        return max((r.ack.seq for r in self.replies if r.HasField("ack")), default=0)


def credentials(ca: Path, cert: Path, key: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes(), cert.read_bytes())


def exchange(
    target: str,
    creds: grpc.ChannelCredentials,
    messages: Iterable[pb.AgentMessage],
    *,
    server_name: str = "collector",
    timeout: float = 10.0,
    linger: float = 0.3,
) -> Outcome:
    """Send ``messages`` on one stream, then half-close after ``linger`` s; collect the replies."""
    outcome = Outcome()

    def requests() -> Iterator[pb.AgentMessage]:
        yield from messages
        time.sleep(linger)  # give the collector a moment to acknowledge before we half-close

    with grpc.secure_channel(target, creds, options=channel_options(server_name)) as channel:
        stub = pb_grpc.TelemetryStub(channel)
        try:
            for reply in stub.Stream(requests(), timeout=timeout):
                outcome.replies.append(reply)
        except grpc.RpcError as exc:
            outcome.code = exc.code()
            outcome.details = exc.details() or ""
    return outcome
