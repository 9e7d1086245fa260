"""Trust no one: certificates refused for each reason (logged and counted), TLS 1.2+, revocation,
and certificate rotation on both ends without a restart."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import warnings
from pathlib import Path

import pytest
from cryptography import x509

from collector.trust import pki
from tests import streams
from tests.kit import Collector, Pki, Service, metric_value, start_agent, start_collector, wait_for


@pytest.fixture
def kit(tmp: Path) -> Pki:
    return Pki.create(tmp / "pki")


def refused(collector: Collector, reason: str) -> float:
    return metric_value(collector.metrics(), "gpulse_collector_streams_refused_total", reason=reason) or 0.0


def attempt(collector: Collector, kit: Pki, cert: Path, key: Path, host: str) -> streams.Outcome:
    creds = streams.credentials(kit.ca, cert, key)
    return streams.exchange(collector.target, creds, [streams.hello(host), streams.frame_message(1)], timeout=5)


def test_each_bad_certificate_is_refused_logged_and_counted(tmp: Path, kit: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, kit)
    services.append(collector)
    now = dt.datetime.now(dt.UTC)
    expired = pki.issue(kit.directory, role="agent", name="old", days=1, not_before=now - dt.timedelta(days=3))
    future = pki.issue(kit.directory, role="agent", name="future", days=5, not_before=now + dt.timedelta(days=1))
    server_cert, server_key = kit.collector("impostor")  # serverAuth only, used as a client
    other = Pki.create(tmp / "other-ca")
    foreign_cert, foreign_key = other.agent("foreign")
    mine_cert, mine_key = kit.agent("gpu-a")
    cases = [
        ("expired", expired.cert, expired.key, "old", "certificate has expired"),
        ("not_yet_valid", future.cert, future.key, "future", "certificate is not yet valid"),
        ("wrong_ca", foreign_cert, foreign_key, "foreign", "unable to get local issuer certificate"),
        ("wrong_usage", server_cert, server_key, "impostor", "unsupported certificate purpose"),
        ("identity_mismatch", mine_cert, mine_key, "gpu-b", "does not match certificate identity 'gpu-a'"),
    ]
    for reason, cert, key, host, log_text in cases:
        outcome = attempt(collector, kit, cert, key, host)
        assert not outcome.welcomed, reason
        wait_for(lambda r=reason: refused(collector, r) >= 1, 10, what=f"refusals counted as {reason}")  # type: ignore[misc]
        assert log_text in collector.log(), f"no clear log line for {reason}"
    # None of that harmed anyone: a good agent is still welcomed and acknowledged.
    good = attempt(collector, kit, mine_cert, mine_key, "gpu-a")
    assert good.welcomed and good.acked == 1
    assert collector.running


def test_wrong_host_collector_certificate_is_refused_by_the_agent(tmp: Path, kit: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, kit)
    services.append(collector)
    cert, key = kit.agent("gpu-c")
    creds = streams.credentials(kit.ca, cert, key)
    outcome = streams.exchange(collector.target, creds, [streams.hello("gpu-c")], server_name="not-the-collector")
    assert outcome.code.name == "UNAVAILABLE" and not outcome.welcomed


def tls_handshake(port: int, kit: Pki, version: ssl.TLSVersion) -> str:
    cert, key = kit.agent("gpu-tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(kit.ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.check_hostname = False
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old protocols: the server must be the one to say no
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        return str(tls.version())


def test_only_tls_1_2_and_newer(tmp: Path, kit: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, kit)
    services.append(collector)
    assert tls_handshake(collector.grpc_port, kit, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert tls_handshake(collector.grpc_port, kit, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises((ssl.SSLError, OSError)):
            tls_handshake(collector.grpc_port, kit, old)
    wait_for(lambda: refused(collector, "tls_version") >= 2, 10, what="old TLS versions counted")


def test_revoked_agent_is_cut_off_and_refused(tmp: Path, kit: Pki, services: list[Service]) -> None:
    crl, _ = pki.revoke(kit.directory)  # an empty list to start with
    collector = start_collector(tmp, kit, tls={"crl": crl})
    services.append(collector)
    agent = start_agent(tmp, kit, "gpu-r", [collector.target])
    services.append(agent)
    wait_for(lambda: "gpu-r" in collector.metrics(), 20, what="agent streaming")
    pki.revoke(kit.directory, name="gpu-r")
    wait_for(lambda: refused(collector, "revoked") >= 2, 20, what="open stream cut and reconnect refused")
    assert "client certificate of 'gpu-r'" in collector.log() and "is revoked" in collector.log()
    other = start_agent(tmp, kit, "gpu-s", [collector.target])
    services.append(other)
    wait_for(lambda: 'host="gpu-s"' in collector.metrics(), 20, what="unrevoked agent still admitted")


def serial_served(port: int, kit: Pki) -> int:
    cert, key = kit.agent("gpu-probe")
    ctx = ssl.create_default_context(cafile=str(kit.ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="collector") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def live_copy(tmp: Path, cert: Path, key: Path, name: str) -> tuple[Path, Path]:
    live = tmp / f"live-{name}"
    live.mkdir(exist_ok=True)
    shutil.copy(cert, live / "cert.pem")
    shutil.copy(key, live / "key.pem")
    return live / "cert.pem", live / "key.pem"


def rotate(live_cert: Path, live_key: Path, issued: pki.Issued) -> None:
    # Key first into a temp name, then both renamed: the way certificate tools rotate atomically.
    for src, dst in ((issued.key, live_key), (issued.cert, live_cert)):
        tmp = dst.with_suffix(".new")
        shutil.copy(src, tmp)
        tmp.replace(dst)


def test_collector_serves_a_rotated_certificate_without_dropping_streams(
    tmp: Path, kit: Pki, services: list[Service]
) -> None:
    cert, key = live_copy(tmp, *kit.collector("collector"), "collector")
    collector = start_collector(tmp, kit, tls={"cert": cert, "key": key})
    services.append(collector)
    agent = start_agent(tmp, kit, "gpu-k", [collector.target])
    services.append(agent)
    wait_for(lambda: 'host="gpu-k"' in collector.metrics(), 20, what="agent streaming")
    before = serial_served(collector.grpc_port, kit)
    renewed = pki.issue(kit.directory, role="collector", name="collector", days=2)
    rotate(cert, key, renewed)
    after = serial_served(collector.grpc_port, kit)
    assert after != before
    assert after == x509.load_pem_x509_certificate(renewed.cert.read_bytes()).serial_number
    assert "server certificate rotated" in collector.log()
    assert collector.log().count('"agent connected"') == 1, "the open stream was not dropped"
    # Expiry dates are exported, so an alert can fire well before a certificate runs out.
    text = collector.metrics()
    renewed_until = x509.load_pem_x509_certificate(renewed.cert.read_bytes()).not_valid_after_utc.timestamp()
    assert metric_value(text, "gpulse_collector_certificate_expiry_timestamp_seconds") == renewed_until
    agent_until = x509.load_pem_x509_certificate(kit.agent("gpu-k")[0].read_bytes()).not_valid_after_utc.timestamp()
    assert metric_value(text, "gpulse_collector_agent_certificate_expiry_timestamp_seconds", host="gpu-k") == (
        agent_until
    )


def test_agent_reconnects_with_its_rotated_certificate(tmp: Path, kit: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, kit)
    services.append(collector)
    cert, key = live_copy(tmp, *kit.agent("gpu-m"), "agent")
    agent = start_agent(tmp, kit, "gpu-m", [collector.target], tls={"cert": cert, "key": key})
    services.append(agent)
    wait_for(lambda: collector.log().count('"agent connected"') == 1, 20, what="first stream")
    rotate(cert, key, pki.issue(kit.directory, role="agent", name="gpu-m", days=2))
    wait_for(lambda: "certificate files changed; reconnecting" in agent.log(), 20, what="agent noticed rotation")
    wait_for(lambda: collector.log().count('"agent connected"') == 2, 20, what="stream with the new identity")
    assert "collector stream failed" not in agent.log()


def test_agent_says_why_its_own_certificate_is_unusable(tmp: Path, kit: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, kit)
    services.append(collector)
    now = dt.datetime.now(dt.UTC)
    old = pki.issue(kit.directory, role="agent", name="gpu-x", days=1, not_before=now - dt.timedelta(days=3))
    agent = start_agent(tmp, kit, "gpu-x", [collector.target], tls={"cert": old.cert, "key": old.key})
    services.append(agent)
    wait_for(lambda: "client certificate is unusable" in agent.log(), 20, what="agent-side log line")
    assert "expired at" in agent.log()
    wait_for(lambda: refused(collector, "expired") >= 1, 20, what="collector counted it")
    assert agent.running, "a bad certificate is retried with backoff, not a crash loop"
