"""The agent's /metrics behind the web config file: real TLS, real bcrypt, no thread per connection."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent.metrics_server import MetricsServer
from runtime.listener import ListenerLimits
from tests.integration.test_http_security import hashed
from tests.kit import Pki


def get(url: str, context: ssl.SSLContext, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_tls_and_basic_auth_guard_the_agent_metrics(tmp_path: Path, test_pki: Pki) -> None:
    cert, key = test_pki.collector()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed('scrape-pass-1')}'\n"
    )
    server = MetricsServer(lambda: b"up 1\n", "127.0.0.1:0", web_config=web).start()
    try:
        tls = ssl.create_default_context(cafile=str(test_pki.ca))
        url = f"https://localhost:{server.port}/metrics"
        assert get(url, tls)[0] == 401
        assert get(url, tls, ("prometheus", "wrong"))[0] == 401
        assert get(url, tls, ("prometheus", "scrape-pass-1")) == (200, "up 1\n")
        assert get(f"https://localhost:{server.port}/other", tls, ("prometheus", "scrape-pass-1"))[0] == 404
        with pytest.raises(OSError):  # plain HTTP to the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    finally:
        server.stop()


def test_held_connections_start_no_threads_and_the_oldest_makes_room() -> None:
    server = MetricsServer(
        lambda: b"up 1\n", "127.0.0.1:0", limits=ListenerLimits(max_connections=20, header_timeout=30.0)
    ).start()
    threads = threading.active_count()
    held = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            held.append(sock)
        # Full many times over, yet a complete request still gets in by evicting the longest waiting.
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            assert response.read() == b"up 1\n"
        assert threading.active_count() == threads
        assert len(server.guard.open) <= 20
    finally:
        for sock in held:
            sock.close()
        server.stop()
