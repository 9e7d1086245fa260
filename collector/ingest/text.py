"""Text from agents, made safe before it reaches labels, logs, SQLite or receivers.

Every string field of a Hello or an Event is stripped of control characters (a raw ``\\r`` or an
ANSI escape in a GPU model name must not reach a log line or a label) and cut to a documented
length (docs/security.md, "Text from agents"). The limits are generous for real values (the longest
NVIDIA model name is under 40 characters) and small enough that one host cannot blow up every alert.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

ELLIPSIS = "…"
# Control, format (zero-width, bidi overrides), surrogate, private-use and unassigned characters,
# and the line and paragraph separators: none belongs in a model name, and each can fool a terminal
# or a log parser.
STRIPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
DEFAULT_LIMIT = 256
# (message name, field name) -> characters kept.
LIMITS: Mapping[tuple[str, str], int] = {
    ("Hello", "host_id"): 253,  # a DNS name; it must equal the certificate identity anyway
    ("Hello", "boot_id"): 64,
    ("Hello", "agent_version"): 64,
    ("HostInventory", "hostname"): 253,
    ("GpuInventory", "uuid"): 64,
    ("GpuInventory", "name"): 64,
    ("GpuInventory", "serial"): 64,
    ("GpuInventory", "pci_bus_id"): 32,
    ("GpuInventory", "driver_version"): 32,
    ("GpuInventory", "cuda_version"): 32,
    ("GpuInventory", "vbios_version"): 64,
    ("GpuProcess", "name"): 128,
    ("Workload", "kind"): 32,
    ("Workload", "id"): 128,
    ("Workload", "name"): 128,
    ("Workload", "namespace"): 64,
    ("Workload", "user"): 64,
    ("XidEvent", "message"): 512,
    ("HealthReason", "message"): 512,
}


def clean(text: str, limit: int) -> str:
    """``text`` without control or line-separator characters, cut to ``limit`` characters (the last
    one an ellipsis when cut)."""
    if text.isprintable() and len(text) <= limit:
        return text  # the common case, without building a new string
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in STRIPPED)
    return kept if len(kept) <= limit else kept[: limit - 1] + ELLIPSIS


def clean_message(message: Message) -> int:
    """Clean every string field of ``message`` and its sub-messages in place; returns how many changed."""
    changed = 0
    name = message.DESCRIPTOR.name
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            limit = LIMITS.get((name, field.name), DEFAULT_LIMIT)
            if field.is_repeated:
                for i, item in enumerate(value):
                    if (fixed := clean(item, limit)) != item:
                        value[i] = fixed
                        changed += 1
            elif (fixed := clean(value, limit)) != value:
                setattr(message, field.name, fixed)
                changed += 1
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                continue  # no maps in the wire contract today
            items = value if field.is_repeated else [value]
            for item in items:
                changed += clean_message(item)
    return changed
