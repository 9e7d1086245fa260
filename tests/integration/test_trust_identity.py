"""Certificate identity over real mTLS gRPC: a CA:TRUE client certificate's minted leaf is refused,
refusal reasons exist at 0 from the start, plaintext is its own reason, and the log stays JSON."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization

from collector.trust import pki
from tests import streams
from tests.kit import Collector, Pki, Service, metric_value, start_collector, wait_for
from tests.unit.test_identity_rules import make

PEM = serialization.Encoding.PEM


def refused(collector: Collector, reason: str) -> float:
    return metric_value(collector.metrics(), "gpulse_collector_streams_refused_total", reason=reason) or 0.0


def test_a_leaf_minted_by_a_ca_client_certificate_is_refused(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    text = collector.metrics()
    for reason in ("expired", "plaintext", "ca_certificate", "untrusted_issuer", "san_cn_mismatch", "revoked"):
        assert metric_value(text, "gpulse_collector_streams_refused_total", reason=reason) == 0
    assert "_created" not in text

    ca = pki.load_ca(test_pki.directory)
    rogue_cert, rogue_key = make(ca, "node-rogue", ca=True, dns=("node-rogue",))
    minted_cert, minted_key = make((rogue_cert, rogue_key), "node-victim", dns=("node-victim",))
    key_pem = minted_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chain = minted_cert.public_bytes(PEM) + rogue_cert.public_bytes(PEM)
    creds = grpc.ssl_channel_credentials(test_pki.ca.read_bytes(), key_pem, chain)
    outcome = streams.exchange(collector.target, creds, [streams.hello("node-victim"), streams.frame_message(1)])
    assert not outcome.welcomed
    assert 'host="node-victim"' not in collector.metrics()

    with grpc.insecure_channel(collector.target) as channel, contextlib.suppress(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=2)
    wait_for(lambda: refused(collector, "plaintext") >= 1, 10, what="the plaintext client counted")
    assert refused(collector, "tls_version") == 0
    audit = tmp / "collector-state" / "audit.jsonl"
    wait_for(lambda: audit.exists() and "stream.refused" in audit.read_text(), what="refusals in the audit log")
    lines = [line for line in collector.log().splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines), "a line of the log is not JSON"
