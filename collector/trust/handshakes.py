"""TLS handshakes gRPC refused before our code saw the stream: read from gRPC's own log, logged and counted.

gRPC verifies client certificates inside its C core; an expired, not-yet-valid, wrong-CA or
wrong-usage certificate never reaches the servicer. The core reports each refusal on stderr
("Handshake failed with error SSL_ERROR_SSL: ...: certificate has expired"), so the collector passes
its stderr through a pipe, turns those lines into a structured log line and a
``gpulse_collector_streams_refused_total{reason}`` increment, writes every gRPC C-core line as a
JSON record (so the JSON-lines log stays parseable), and forwards everything else untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import threading
import time
from collections.abc import Callable

# Order matters: the first pattern found in the line names the reason.
_REASONS: tuple[tuple[str, str], ...] = (
    ("certificate has expired", "expired"),
    ("certificate is not yet valid", "not_yet_valid"),
    ("unsupported certificate purpose", "wrong_usage"),
    ("unable to get local issuer certificate", "wrong_ca"),
    ("self signed certificate", "wrong_ca"),
    ("self-signed certificate", "wrong_ca"),
    ("certificate signature failure", "wrong_ca"),
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "no_client_cert"),
    ("UNSUPPORTED_PROTOCOL", "tls_version"),
    # Not a TLS record at all: a plaintext gRPC or HTTP client (an old TLS version is UNSUPPORTED_PROTOCOL).
    ("WRONG_VERSION_NUMBER", "plaintext"),
    ("HTTP_REQUEST", "plaintext"),
    ("HTTPS_PROXY_REQUEST", "plaintext"),
    ("PROTOCOL_VERSION", "tls_version"),
)
_HANDSHAKE = re.compile(r"Handshake failed with error (?P<detail>.*)$")
# gRPC C-core's glog-style prefix: severity letter, MMDD, time, thread id, file:line]
_CORE_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} [\d:.]+\s+\d+ (?P<where>[^\]]+)\] (?P<message>.*)$")
_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "critical"}


def as_json_line(line: str) -> str | None:
    """A gRPC C-core log line as one JSON log record (so journald's JSON lines stay JSON), or None
    for any other line."""
    match = _CORE_LINE.match(line)
    if match is None:
        return None
    return json.dumps(
        {
            "event": match.group("message"),
            "level": _LEVELS[match.group("severity")],
            "logger": "grpc",
            "where": match.group("where"),
            "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
    )


def classify(line: str) -> tuple[str, str] | None:
    """(reason, detail) for a gRPC handshake-failure log line, or None for any other line."""
    match = _HANDSHAKE.search(line)
    if match is None:
        return None
    detail = match.group("detail").strip()
    for needle, reason in _REASONS:
        if needle in detail:
            return reason, detail
    return "tls_handshake", detail


class StderrHandshakeWatcher:
    """Interposes a pipe on fd 2; calls ``on_refusal(reason, detail)`` for each handshake failure."""

    def __init__(self, on_refusal: Callable[[str, str], None], fd: int = 2) -> None:
        self.on_refusal = on_refusal
        self.fd = fd
        self._saved = -1
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        read_end, write_end = os.pipe()
        self._saved = os.dup(self.fd)
        os.dup2(write_end, self.fd)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,), name="gpulse-stderr", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Put the original stderr back; the pump thread ends when the pipe closes."""
        if self._saved < 0:
            return
        os.dup2(self._saved, self.fd)  # closes our pipe's write end on fd 2: the reader sees EOF
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        os.close(self._saved)
        self._saved = -1

    def _pump(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = []
                for raw in lines:
                    line = raw.decode(errors="replace")
                    # gRPC's own lines become JSON records; everything else passes byte for byte.
                    wrapped = as_json_line(line)
                    out.append(wrapped.encode() if wrapped is not None else raw)
                    found = classify(line)
                    if found is not None:
                        # A counting bug must never stop stderr from flowing.
                        with contextlib.suppress(Exception):
                            self.on_refusal(*found)
                if out:
                    with contextlib.suppress(OSError):
                        os.write(self._saved, b"\n".join(out) + b"\n")
            if pending:
                with contextlib.suppress(OSError):
                    os.write(self._saved, pending)  # a last line without its newline, as written


class OncePerMinute:
    """Whether to log a refusal now: once a minute per key; the counter counts every one regardless."""

    def __init__(self, every: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.monotonic = monotonic
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        with self._lock:
            now = self.monotonic()
            if now - self._last.get(key, -self.every) < self.every:
                return False
            if len(self._last) > 10_000:
                self._last.clear()
            self._last[key] = now
            return True
