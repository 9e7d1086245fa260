"""Every XID the driver reports: from NVML events, or from the kernel log where events are unsupported.

A pure core (the ``NVRM: Xid`` line parser and the storm coalescer) and two thin watcher threads.
The first occurrence of an XID on a GPU is sent at once; repeats inside the coalescing window are
counted and sent as one event when the window closes, so a storm of thousands costs a few messages
and the collector's counter still gets every occurrence.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from protos import telemetry_pb2 as pb

__all__ = [
    "KmsgXidWatcher",
    "NvmlXidWatcher",
    "XidCoalescer",
    "XidLine",
    "normalise_pci_bus_id",
    "parse_xid_line",
]

log = structlog.get_logger("gpulse.agent.xid")

# `NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.` as printed by the
# driver; older drivers omit pid/name, and /dev/kmsg prefixes "prio,seq,usec,flags;".
_XID_RE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.\d)?)\): "
    r"(?P<xid>\d+)(?:, (?P<rest>.*))?"
)
_KMSG_PREFIX_RE = re.compile(r"^\d+,\d+,(?P<usec>\d+),[^;]*;")


@dataclass(frozen=True, slots=True)
class XidLine:
    pci_bus_id: str  # normalised, see normalise_pci_bus_id
    xid: int
    message: str
    monotonic_us: int | None  # kernel timestamp when read from /dev/kmsg


def normalise_pci_bus_id(bus_id: str) -> str:
    """``00000000:3B:00.0`` (NVML) and ``0000:3b:00`` (kernel log) both become ``0000:3b:00``."""
    parts = bus_id.strip().lower().split(":")
    if len(parts) != 3:
        return bus_id.strip().lower()
    domain, bus, devfn = parts
    return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(devfn.split('.')[0], 16):02x}"


def parse_xid_line(line: str) -> XidLine | None:
    """Parse one kernel log line; None unless it is an ``NVRM: Xid`` report."""
    match = _XID_RE.search(line)
    if match is None:
        return None
    prefix = _KMSG_PREFIX_RE.match(line)
    rest = (match.group("rest") or "").strip()
    return XidLine(
        pci_bus_id=normalise_pci_bus_id(match.group("pci")),
        xid=int(match.group("xid")),
        message=line[match.start() :].strip() if rest else match.group(0),
        monotonic_us=int(prefix.group("usec")) if prefix else None,
    )


@dataclass
class _Window:
    until: float
    first_ns: int
    pending: int = 0
    message: str = ""
    source: str = ""


class XidCoalescer:
    """Sends the first XID per (GPU, code) at once, then one event per window with the exact repeat count.

    Thread-safe: watcher threads add, the sampler drains.
    """

    def __init__(self, *, window_s: float = 10.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.monotonic = monotonic
        self.occurrences = 0  # every XID seen, for the agent's own accounting
        self.on_ready: Callable[[], None] | None = None  # told when a first occurrence is ready to send
        self._windows: dict[tuple[int, int], _Window] = {}
        self._ready: list[pb.Event] = []
        self._lock = threading.Lock()

    def add(self, gpu: int, xid: int, unix_ns: int, *, message: str, source: str, count: int = 1) -> None:
        now = self.monotonic()
        with self._lock:
            self.occurrences += count
            window = self._windows.get((gpu, xid))
            if window is not None and now >= window.until and window.pending:
                # A storm still raging as its window closes: send the window with this one, keep coalescing.
                window.pending += count
                window.message, window.source = message, source
                self._ready.append(self._event(gpu, xid, window))
                self._windows[(gpu, xid)] = _Window(until=now + self.window_s, first_ns=0)
                return
            first = window is None or now >= window.until
            if first:
                self._windows[(gpu, xid)] = _Window(until=now + self.window_s, first_ns=unix_ns)
                self._ready.append(_xid_event(gpu, xid, count, unix_ns, message, source))
            else:
                assert window is not None
                if not window.pending:
                    window.first_ns = unix_ns
                window.pending += count
                window.message, window.source = message, source
        if first and self.on_ready is not None:
            self.on_ready()  # outside the lock: the listener may drain at once

    def drain(self) -> list[pb.Event]:
        """Events ready to send: first occurrences, and storms whose window has closed."""
        now = self.monotonic()
        with self._lock:
            for key, window in list(self._windows.items()):
                if now < window.until:
                    continue
                if window.pending:
                    self._ready.append(self._event(*key, window))
                    # The storm goes on: keep coalescing in a fresh window rather than sending each one.
                    self._windows[key] = _Window(until=now + self.window_s, first_ns=0)
                else:
                    del self._windows[key]
            ready, self._ready = self._ready, []
        return ready

    def flush(self) -> list[pb.Event]:
        """Everything held back, now (at shutdown)."""
        with self._lock:
            for key, window in self._windows.items():
                if window.pending:
                    self._ready.append(self._event(*key, window))
            self._windows.clear()
            ready, self._ready = self._ready, []
        return ready

    @staticmethod
    def _event(gpu: int, xid: int, window: _Window) -> pb.Event:
        message = f"{window.message} (x{window.pending} coalesced)"
        return _xid_event(gpu, xid, window.pending, window.first_ns, message, window.source)


def _xid_event(gpu: int, xid: int, count: int, unix_ns: int, message: str, source: str) -> pb.Event:
    return pb.Event(
        unix_ns=unix_ns, xid=pb.XidEvent(gpu_index=gpu, xid=xid, count=count, message=message, source=source)
    )


class NvmlXidWatcher:
    """A thread blocked in ``nvmlEventSetWait`` that hands every XID critical error to the coalescer."""

    def __init__(
        self,
        nvml: Any,
        handles: dict[int, Any],
        coalescer: XidCoalescer,
        *,
        uuid_to_index: dict[str, int],
        wait_ms: int = 500,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.nvml = nvml
        self.coalescer = coalescer
        self.uuid_to_index = uuid_to_index
        self.wait_ms = wait_ms
        self.clock = clock
        self.errors = 0
        self._stop = threading.Event()
        self._event_set = nvml.nvmlEventSetCreate()
        for handle in handles.values():
            nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, self._event_set)
        # One wait that cannot block: a driver without nvmlEventSetWait_v2 fails here, at start, so the
        # backend falls back to the kernel log instead of a watcher that errs on every wait.
        try:
            self._first = nvml.nvmlEventSetWait(self._event_set, 0)
        except nvml.NVMLError as exc:
            if exc.value != nvml.NVML_ERROR_TIMEOUT:
                with contextlib.suppress(nvml.NVMLError):
                    nvml.nvmlEventSetFree(self._event_set)
                raise
            self._first = None
        self._thread = threading.Thread(target=self._run, name="gpulse-xid-nvml", daemon=True)

    @staticmethod
    def supported(nvml: Any, handles: Iterable[Any]) -> bool:
        """Whether every GPU can post XID critical errors as NVML events."""
        try:
            return all(nvml.nvmlDeviceGetSupportedEventTypes(h) & nvml.nvmlEventTypeXidCriticalError for h in handles)
        except nvml.NVMLError:
            return False

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.wait_ms / 1000 + 1.0)
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlEventSetFree(self._event_set)

    def _run(self) -> None:
        nvml = self.nvml
        while not self._stop.is_set():
            try:
                data, self._first = self._first or nvml.nvmlEventSetWait(self._event_set, self.wait_ms), None
            except nvml.NVMLError as exc:
                if exc.value == nvml.NVML_ERROR_TIMEOUT:
                    continue
                self.errors += 1
                if exc.value in (nvml.NVML_ERROR_UNINITIALIZED, nvml.NVML_ERROR_DRIVER_NOT_LOADED):
                    log.warning("XID event watch ended: driver gone", error=str(exc))
                    return  # the backend re-creates the watcher after it re-initialises NVML
                self._stop.wait(0.5)  # do not spin on a persistent error
                continue
            if not data.eventType & nvml.nvmlEventTypeXidCriticalError:
                continue
            try:
                uuid = _text(nvml.nvmlDeviceGetUUID(data.device))
            except nvml.NVMLError:
                uuid = ""
            index = self.uuid_to_index.get(uuid)
            if index is None:
                self.errors += 1
                continue
            xid = int(data.eventData)
            self.coalescer.add(index, xid, self.clock(), message=f"Xid {xid} reported by NVML", source="nvml")


class KmsgXidWatcher:
    """A thread following the kernel log for ``NVRM: Xid`` lines, for drivers without XID events."""

    def __init__(
        self,
        path: Path,
        coalescer: XidCoalescer,
        *,
        pci_to_index: dict[str, int],
        from_start: bool = False,
        poll_s: float = 0.2,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        self.coalescer = coalescer
        self.pci_to_index = {normalise_pci_bus_id(k): v for k, v in pci_to_index.items()}
        self.from_start = from_start
        self.poll_s = poll_s
        self.clock = clock
        self.lines = 0
        self.unknown_gpu = 0
        self._stop = threading.Event()
        # Non-blocking raw reads: on /dev/kmsg each read returns one record and EAGAIN when none is
        # waiting, so the thread can notice shutdown; on a plain file (tests, replays) reads are chunks.
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if not from_start:
            # Old lines are history the collector may already have counted: start at the end.
            os.lseek(self._fd, 0, os.SEEK_END)
        self._pending = b""
        self._thread = threading.Thread(target=self._run, name="gpulse-xid-kmsg", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.poll_s + 1.0)
        if not self._thread.is_alive():
            os.close(self._fd)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = os.read(self._fd, 8192)
            except BlockingIOError:
                chunk = b""
            except BrokenPipeError:
                continue  # /dev/kmsg: records were overwritten before we read them; go on from the next
            except OSError as exc:
                log.warning("kernel log read failed; XID capture from it stops", path=str(self.path), error=str(exc))
                return
            if not chunk:
                self._stop.wait(self.poll_s)
                continue
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            for line in lines:
                self.feed(line.decode("utf-8", errors="replace"))

    def feed(self, line: str) -> None:
        """Handle one kernel log line."""
        self.lines += 1
        parsed = parse_xid_line(line)
        if parsed is None:
            return
        index = self.pci_to_index.get(parsed.pci_bus_id)
        if index is None:
            self.unknown_gpu += 1
            log.warning("XID for a GPU not in the inventory", pci=parsed.pci_bus_id, xid=parsed.xid)
            return
        self.coalescer.add(index, parsed.xid, self.clock(), message=parsed.message, source="kmsg")


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
