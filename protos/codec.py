"""Frame codec: the layout a Hello fixes for a stream, and packing one tick's values into a Frame.

Pure functions, no I/O, and no numpy: the agent packs its frames with this module and stays free
of numpy; the collector's checks on arrival (``collector.ingest.decode``) unpack them into arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protos import telemetry_pb2 as pb
from protos.fields import CATALOG, Scope

PROTOCOL_VERSION = 1


class FrameError(ValueError):
    """A frame or Hello that cannot be applied; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FrameLayout:
    """The order of values in every frame of one stream, as declared by its Hello."""

    host_field_ids: tuple[int, ...]
    gpu_field_ids: tuple[int, ...]
    gpu_count: int

    @property
    def width(self) -> int:
        return len(self.host_field_ids) + len(self.gpu_field_ids) * self.gpu_count

    @classmethod
    def from_hello(cls, hello: pb.Hello, *, max_gpus: int = 64) -> FrameLayout:
        """Check a Hello's schema against the catalog and return its layout."""
        for ids, scope in ((hello.host_field_ids, Scope.HOST), (hello.gpu_field_ids, Scope.GPU)):
            if len(set(ids)) != len(ids):
                raise FrameError("bad_hello", f"hello lists a {scope.value} field id twice")
            for fid in ids:
                field = CATALOG.get(fid)
                if field is None:
                    raise FrameError("bad_hello", f"hello names unknown field id {fid}")
                if field.scope is not scope:
                    raise FrameError(
                        "bad_hello", f"field {fid} ({field.name}) is a {field.scope.value} field, sent as {scope.value}"
                    )
        if len(hello.gpus) > max_gpus:
            raise FrameError("bad_hello", f"hello lists {len(hello.gpus)} GPUs; at most {max_gpus} are accepted")
        indexes = [g.index for g in hello.gpus]
        if indexes != list(range(len(indexes))):
            raise FrameError("bad_hello", f"GPU indexes must be 0..n-1 in order, got {indexes}")
        return cls(tuple(hello.host_field_ids), tuple(hello.gpu_field_ids), len(hello.gpus))


def encode_frame(unix_ns: int, host: Iterable[float], gpus: Iterable[Iterable[float]]) -> pb.Frame:
    """Pack host values then each GPU's row of field values; NaN stays NaN (not read)."""
    values = list(host)
    for row in gpus:
        values.extend(row)
    return pb.Frame(unix_ns=unix_ns, values=values)
