"""A TCP proxy for fault tests: forwards 127.0.0.1 traffic, and on demand black-holes it.

A black hole is what a partition looks like to both ends: connections stay open, nothing arrives,
no RST and no FIN. Bytes sent into it are read and thrown away, so neither side learns anything
until its own keepalive or timeout gives up.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class BlackHoleProxy:
    target_port: int
    listen_port: int = 0
    blackholed: threading.Event = field(default_factory=threading.Event)
    bytes_forwarded: int = 0
    bytes_swallowed: int = 0
    connections: int = 0

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.listen_port))
        self.listen_port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    def partition(self) -> None:
        """From now on, every byte in either direction, on old and new connections, disappears."""
        self.blackholed.set()

    def heal(self) -> None:
        """Forward again. Connections opened during the partition stay dead, as after a real one."""
        self.blackholed.clear()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the collector is down: refuse, as the real network would
                continue
            # A connection that saw the partition stays dead after it heals: the two ends' TCP state
            # has diverged, as it would have on a real network.
            dead = threading.Event()
            if self.blackholed.is_set():
                dead.set()
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, dead), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, dead: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.blackholed.is_set():
                    dead.set()
                if dead.is_set():
                    self.bytes_swallowed += len(data)
                    continue
                dst.sendall(data)
                self.bytes_forwarded += len(data)
        except OSError:
            pass
        finally:
            if not dead.is_set():
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
