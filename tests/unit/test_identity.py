"""The identity a verified client certificate names, and the reasons one is refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from collector.trust import pki
from collector.trust.identity import IdentityError, peer_identity


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    pki.init_ca(directory, days=2)
    return directory


def context(cert: Path) -> dict[str, list[bytes]]:
    return {"transport_security_type": [b"ssl"], "x509_pem_cert": [cert.read_bytes()]}


def reason(ctx: dict[str, list[bytes]], **kwargs: object) -> str:
    with pytest.raises(IdentityError) as info:
        peer_identity(ctx, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


def test_agent_certificate_names_its_host(ca: Path) -> None:
    issued = pki.issue(ca, role="agent", name="gpu-07", days=2)
    assert peer_identity(context(issued.cert)).host_id == "gpu-07"


def test_a_server_certificate_used_as_a_client_is_wrong_usage(ca: Path) -> None:
    issued = pki.issue(ca, role="collector", name="c1", days=2)
    assert reason(context(issued.cert)) == "wrong_usage"


def test_validity_window_is_checked_against_our_clock(ca: Path) -> None:
    start = dt.datetime.now(dt.UTC)
    issued = pki.issue(ca, role="agent", name="gpu-08", days=1, not_before=start)
    assert reason(context(issued.cert), now=start.timestamp() + 2 * 86400) == "expired"
    assert reason(context(issued.cert), now=start.timestamp() - 60) == "not_yet_valid"


def test_revoked_serials_are_refused(ca: Path) -> None:
    issued = pki.issue(ca, role="agent", name="gpu-09", days=2)
    assert reason(context(issued.cert), revoked=lambda serial: True) == "revoked"


def test_no_tls_or_no_certificate() -> None:
    assert reason({"transport_security_type": [b"insecure"]}) == "no_tls"
    assert reason({"transport_security_type": [b"ssl"]}) == "no_client_cert"
