"""Handshake refusals in gRPC's log become reasons; the stderr pump forwards everything untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from collector.trust.handshakes import StderrHandshakeWatcher, classify

PREFIX = "I1129 09:22:57.960731   17225 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: "


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        ("error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired", "expired"),
        ("error:1000007d:...:CERTIFICATE_VERIFY_FAILED: certificate is not yet valid", "not_yet_valid"),
        ("error:1000007d:...:CERTIFICATE_VERIFY_FAILED: unsupported certificate purpose", "wrong_usage"),
        ("error:1000007d:...:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate", "wrong_ca"),
        ("error:100000f0:SSL routines:OPENSSL_internal:UNSUPPORTED_PROTOCOL: Invalid context", "tls_version"),
        ("error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid context", "plaintext"),
        ("error:10000412:SSL routines:OPENSSL_internal:SOMETHING_NEW", "tls_handshake"),
    ],
)
def test_classify(tail: str, reason: str) -> None:
    found = classify(PREFIX + tail)
    assert found is not None and found[0] == reason and tail in found[1]


def test_other_lines_are_not_refusals() -> None:
    assert classify("E1129 some other grpc message") is None
    assert classify("Traceback (most recent call last):") is None


def test_watcher_counts_refusals_and_forwards_every_byte(tmp_path: Path) -> None:
    sink = tmp_path / "stderr"
    fd = os.open(sink, os.O_WRONLY | os.O_CREAT, 0o600)  # stands in for fd 2
    seen: list[str] = []
    watcher = StderrHandshakeWatcher(lambda reason, detail: seen.append(reason), fd=fd)
    watcher.start()
    text = f"hello\n{PREFIX}CERTIFICATE_VERIFY_FAILED: certificate has expired\npartial line without newline"
    os.write(fd, text.encode())
    watcher.stop()
    os.close(fd)
    assert seen == ["expired"]
    hello, core, partial = sink.read_text().split("\n")
    assert (hello, partial) == ("hello", "partial line without newline")  # other bytes untouched
    record = json.loads(core)  # gRPC's own line is one JSON record in the JSON-lines log
    assert record["level"] == "info" and record["logger"] == "grpc"
    assert record["event"].startswith("Handshake failed") and "certificate has expired" in record["event"]


def test_refusal_log_lines_are_limited_to_one_a_minute_per_key() -> None:
    from collector.trust.handshakes import OncePerMinute

    now = [0.0]
    limiter = OncePerMinute(monotonic=lambda: now[0])
    assert limiter.allow("expired") and not limiter.allow("expired") and limiter.allow("plaintext")
    now[0] = 59.0
    assert not limiter.allow("expired")
    now[0] = 60.0
    assert limiter.allow("expired")
