"""The collector's HTTP port with a web config file: real TLS, real bcrypt, roles, reload, exclusive ports."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from collector.audit.log import verify
from tests.kit import ROOT, Pki, Service, collector_config, start_collector, wait_for

PASSWORDS = {"reader": "read-secret-4711", "writer": "write-secret-0815"}


def hashed(password: str) -> str:
    # $2y$, as `htpasswd -nBC 10` writes it: exporter-toolkit files carry those.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$", 1)


def web_config(path: Path, kit: Pki, users: dict[str, str], *, client_auth: str = "") -> Path:
    cert, key = kit.collector()
    lines = ["tls_server_config:", f"  cert_file: {cert}", f"  key_file: {key}"]
    if client_auth:
        lines += [f"  client_auth_type: {client_auth}", f"  client_ca_file: {kit.ca}"]
    if users:
        lines += ["basic_auth_users:", *(f"  {name}: '{hashed(pw)}'" for name, pw in users.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def client_context(kit: Pki, agent: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(kit.ca))
    if agent is not None:
        cert, key = kit.agent(agent)
        context.load_cert_chain(cert, key)
    return context


async def call(
    url: str, context: ssl.SSLContext, method: str = "GET", user: str = "", json: object = None
) -> tuple[int, str]:
    headers = {"Authorization": aiohttp.encode_basic_auth(user, PASSWORDS.get(user, "wrong-password"))} if user else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, ssl=context, headers=headers, json=json) as response,
    ):
        return response.status, await response.text()


def start_tls_collector(tmp: Path, kit: Pki, web: Path, **extra: object) -> tuple[Service, int]:
    config, _, http_port = collector_config(tmp, kit, web={"config_file": str(web), **extra})
    collector = Service("collector", config, tmp / "collector.log", ["collector"]).start()

    def ready() -> bool:
        assert collector.running, collector.log()
        return "collector listening" in collector.log()

    wait_for(ready, what="collector listening")
    return collector, http_port


SILENCE = {"matchers": ["alertname=~.+"], "duration_seconds": 3600, "created_by": "probe", "comment": "x"}


async def test_tls_and_basic_auth_give_readers_reads_and_only_writers_writes(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    web = web_config(tmp / "web.yml", test_pki, {"reader": PASSWORDS["reader"], "writer": PASSWORDS["writer"]})
    collector, port = start_tls_collector(tmp, test_pki, web, writers=["writer"])
    services.append(collector)
    tls = client_context(test_pki)
    base = f"https://localhost:{port}"

    assert (await call(f"{base}/metrics", tls))[0] == 401
    assert (await call(f"{base}/api/v1/fleet", tls, user="nobody"))[0] == 401
    status, text = await call(f"{base}/metrics", tls, user="reader")
    assert status == 200 and 'gpulse_collector_http_refused_total{reason="unauthenticated"} 2.0' in text
    assert 'gpulse_collector_http_refused_total{reason="forbidden"} 0.0' in text
    assert (await call(f"{base}/api/v1/fleet", tls, user="reader"))[0] == 200
    assert (await call(f"{base}/api/v1/silences", tls, "POST", "reader", SILENCE))[0] == 403
    assert (await call(f"{base}/api/v1/silences", tls, "POST", json=SILENCE))[0] == 401
    status, _ = await call(f"{base}/api/v1/alerts", tls, "POST", "reader", [])
    assert status == 403
    status, _ = await call(f"{base}/api/v1/silences", tls, "POST", "writer", SILENCE)
    assert status == 201
    # Plain HTTP to the TLS port gets nothing.
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session, session.get(f"http://localhost:{port}/metrics") as response:
            await response.read()
    for secret in PASSWORDS.values():
        assert secret not in collector.log()
    # Every write, allowed or refused, is in the audit log, with who and from where.
    records = [json.loads(line) for line in (tmp / "collector-state" / "audit.jsonl").read_text().splitlines()]
    writes = [(r["actor"], r["action"], r["result"]) for r in records]
    assert ("reader", "silence.add", "denied 403") in writes
    assert ("unauthenticated", "silence.add", "denied 401") in writes
    assert ("reader", "alert.post", "denied 403") in writes
    assert ("writer", "silence.add", "success 201") in writes
    assert all(r["source"] == "127.0.0.1" and r["request_id"] for r in records)
    assert verify(line for line in (tmp / "collector-state" / "audit.jsonl").read_text().splitlines()) == (4, "")
    status, text = await call(f"{base}/metrics", tls, user="reader")
    assert 'gpulse_collector_audit_records_total{action="silence.add"} 3.0' in text


async def test_the_web_config_is_re_read_when_it_changes(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    web = web_config(tmp / "web.yml", test_pki, {"reader": PASSWORDS["reader"]})
    collector, port = start_tls_collector(tmp, test_pki, web)
    services.append(collector)
    tls = client_context(test_pki)
    url = f"https://localhost:{port}/api/v1/fleet"
    assert (await call(url, tls, user="writer"))[0] == 401
    web_config(web, test_pki, {"writer": PASSWORDS["writer"]})
    deadline = time.monotonic() + 20
    while (await call(url, tls, user="writer"))[0] != 200:
        assert time.monotonic() < deadline, collector.log()
        await asyncio.sleep(0.2)
    assert (await call(url, tls, user="reader"))[0] == 401
    web.write_text("basic_auth_users: [broken\n")  # a bad edit keeps the last good file in force
    await asyncio.sleep(1.5)
    assert (await call(url, tls, user="writer"))[0] == 200
    wait_for(lambda: "web config not reloaded" in collector.log(), what="the refused reload logged")


async def test_a_verified_client_certificate_is_the_principal(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    web = web_config(tmp / "web.yml", test_pki, {}, client_auth="RequireAndVerifyClientCert")
    collector, port = start_tls_collector(tmp, test_pki, web, writers=["ops-console"])
    services.append(collector)
    base = f"https://localhost:{port}"
    with pytest.raises(aiohttp.ClientError):
        await call(f"{base}/metrics", client_context(test_pki))  # no certificate: no handshake
    assert (await call(f"{base}/metrics", client_context(test_pki, "node-7")))[0] == 200
    assert (await call(f"{base}/api/v1/silences", client_context(test_pki, "node-7"), "POST", json=SILENCE))[0] == 403
    status, _ = await call(f"{base}/api/v1/silences", client_context(test_pki, "ops-console"), "POST", json=SILENCE)
    assert status == 201


def run_collector(config: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpulse.cli", "collector", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_a_collector_open_beyond_loopback_with_writes_and_no_credentials_refuses_to_start(
    tmp: Path, test_pki: Pki
) -> None:
    config, _, _ = collector_config(tmp, test_pki, http_listen="0.0.0.0:0")
    result = run_collector(config)
    assert result.returncode == 2
    assert "http_listen 0.0.0.0:0 is reachable beyond this host" in result.stderr
    assert "read_only = true" in result.stderr


def test_a_second_collector_on_the_same_ports_fails_naming_the_port(
    tmp: Path, test_pki: Pki, services: list[Service]
) -> None:
    first = start_collector(tmp, test_pki)
    services.append(first)
    second_dir = tmp / "second"
    second_dir.mkdir()
    config, _, _ = collector_config(second_dir, test_pki, grpc_port=first.grpc_port, http_port=first.http_port + 0)
    result = run_collector(config)
    assert result.returncode == 1, result.stderr
    assert f"port {first.grpc_port} is in use" in result.stderr
    config, _, _ = collector_config(second_dir, test_pki, http_port=first.http_port)
    result = run_collector(config)
    assert result.returncode == 1, result.stderr
    assert f"cannot listen for HTTP on 127.0.0.1:{first.http_port}: address already in use" in result.stderr
