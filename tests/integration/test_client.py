"""`--url`, `--ca` and `--credentials` against a real HTTPS server with basic auth on loopback."""

from __future__ import annotations

import argparse
import base64
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from collector.trust import pki
from gpulse.cli import main
from gpulse.client import BasicAuth, Client, ClientError, HttpStatusError, add_client_options
from tests.api_server import serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PASSWORD = "s3cret-pa55"
EXPECTED = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
SILENCE = {
    "id": "abc123",
    "ends_at": 4_000_000_000.0,
    "created_by": "ops",
    "matchers": ["host=node-1"],
    "comment": "psu",
    "active": True,
}


def api() -> web.Application:
    @web.middleware
    async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization") != EXPECTED:
            return web.json_response({"error": "authentication required"}, status=401)
        return await handler(request)

    async def silences(_: web.Request) -> web.Response:
        return web.json_response({"silences": [SILENCE]})

    async def fleet(_: web.Request) -> web.Response:
        return web.json_response({"hosts": []})

    async def alerts(_: web.Request) -> web.Response:
        return web.json_response({"alerts": []})

    app = web.Application(middlewares=[basic_auth])
    app.router.add_get("/api/v1/silences", silences)
    app.router.add_get("/api/v1/fleet", fleet)
    app.router.add_get("/api/v1/alerts", alerts)
    return app


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path / "pki", days=2)
    pki.issue(tmp_path / "pki", role="collector", name="collector", days=2)
    return tmp_path / "pki"


@pytest.fixture
def https_url(ca_dir: Path) -> Iterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca_dir / "collectors" / "collector.pem", ca_dir / "collectors" / "collector-key.pem")
    with serve(api(), context) as url:
        yield url


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "credentials"
    path.write_text(f"ops:{PASSWORD}\n")
    return path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_client_options(parser)
    return parser.parse_args(argv)


def test_ca_and_credentials_reach_an_https_collector(https_url: str, ca_dir: Path, credentials: Path) -> None:
    args = parse("--url", https_url, "--ca", str(ca_dir / "ca.pem"), "--credentials", str(credentials))
    client = Client.from_args(args, env={})
    assert client.request("/api/v1/silences") == {"silences": [SILENCE]}
    assert PASSWORD not in repr(client)


def test_environment_names_the_collector_when_flags_do_not(https_url: str, ca_dir: Path, credentials: Path) -> None:
    env = {"GPULSE_URL": https_url, "GPULSE_CA": str(ca_dir / "ca.pem"), "GPULSE_CREDENTIALS": str(credentials)}
    assert Client.from_args(parse(), env=env).request("/api/v1/fleet") == {"hosts": []}
    env = {"GPULSE_URL": https_url, "GPULSE_CA": str(ca_dir / "ca.pem"), "GPULSE_BASIC_AUTH": f"ops:{PASSWORD}"}
    assert Client.from_args(parse(), env=env).request("/api/v1/fleet") == {"hosts": []}
    # A flag wins over its variable.
    assert Client.from_args(parse("--url", "http://127.0.0.1:1"), env=env).url == "http://127.0.0.1:1"


def test_refusals_say_why_and_never_show_the_password(https_url: str, ca_dir: Path, tmp_path: Path) -> None:
    ca = ca_dir / "ca.pem"
    with pytest.raises(HttpStatusError) as refused:
        Client.checked(https_url, ca).request("/api/v1/fleet")
    assert refused.value.status == 401 and "--credentials" in str(refused.value)
    wrong = BasicAuth("ops", "not-" + PASSWORD)
    with pytest.raises(HttpStatusError) as bad:
        Client.checked(https_url, ca, wrong).request("/api/v1/fleet")
    assert "401" in str(bad.value) and PASSWORD not in str(bad.value)
    with pytest.raises(ClientError, match=r"certificate not trusted.*--ca"):
        Client.checked(https_url).request("/api/v1/fleet")  # the system's CAs do not know ours
    with pytest.raises(ClientError) as in_url:
        Client.checked(https_url.replace("https://", f"https://ops:{PASSWORD}@"))
    assert PASSWORD not in str(in_url.value) and "--credentials" in str(in_url.value)
    garbled = tmp_path / "garbled"
    garbled.write_text(PASSWORD)
    with pytest.raises(ClientError) as no_colon:
        Client.from_args(parse("--credentials", str(garbled)), env={})
    assert str(garbled) in str(no_colon.value) and PASSWORD not in str(no_colon.value)
    with pytest.raises(ClientError, match="no such file"):
        Client.from_args(parse("--ca", str(tmp_path / "missing.pem")), env={})


def test_silence_and_top_take_the_flags_after_the_subcommand(
    https_url: str, ca_dir: Path, credentials: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--url", https_url, "--ca", str(ca_dir / "ca.pem"), "--credentials", str(credentials)]
    assert main(["silence", "list", *flags]) == 0
    out = capsys.readouterr()
    assert "abc123" in out.out and "host=node-1" in out.out
    assert main(["top", "--once", *flags]) == 0
    assert "0 hosts (0 up), 0 GPUs" in capsys.readouterr().out
    assert main(["silence", "list", "--url", https_url, "--ca", str(ca_dir / "ca.pem")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpulse silence: GET ") and "401" in err and err.count("\n") == 1
    assert main(["top", "--once", "--url", https_url, "--ca", str(ca_dir / "ca.pem")]) == 1
    assert "401" in capsys.readouterr().err
