"""The systemd notify protocol: READY, STATUS, RELOADING, STOPPING and WATCHDOG over $NOTIFY_SOCKET.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the services run the same anywhere.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("gpulse.sdnotify")


class Notifier:
    """Sends state changes to the service manager; one per process, passed to the main loops."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        monotonic_us: Callable[[], int] = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000,
    ) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_seconds = _watchdog_seconds(env)
        self.monotonic_us = monotonic_us
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines; False (and a log line) if the manager could not be told."""
        if self.address is None:
            return False
        payload = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(payload)
        except OSError as exc:
            # Never let the notify socket take the service down; systemd will notice on its own.
            self.failures += 1
            log.warning("cannot notify the service manager", error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(ready=1, status=status) if status else self.send(ready=1)

    def status(self, text: str) -> bool:
        return self.send(status=text)

    def reloading(self) -> bool:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 to match it with the READY that follows.
        return self.send(reloading=1, monotonic_usec=self.monotonic_us())

    def stopping(self) -> bool:
        return self.send(stopping=1)

    def watchdog(self) -> bool:
        return self.send(watchdog=1) if self.watchdog_seconds else False

    @property
    def watchdog_interval(self) -> float | None:
        """How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_seconds / 2 if self.watchdog_seconds else None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):  # abstract namespace socket
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET that is neither a path nor abstract", notify_socket=value)
    return None


def _watchdog_seconds(env: Mapping[str, str]) -> float:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return 0.0
    if pid and pid != str(os.getpid()):  # meant for another process (e.g. our parent)
        return 0.0
    return int(usec) / 1e6
