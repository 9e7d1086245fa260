"""`gpulse pki revoke` writes a CRL signed by the CA; the collector's RevocationList enforces it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509

from collector.trust import pki
from collector.trust.revocation import RevocationError, RevocationList, load_crl
from gpulse.cli import main


def serial_of(cert: Path) -> int:
    return x509.load_pem_x509_certificate(cert.read_bytes()).serial_number


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path, days=2)
    return tmp_path


def test_revoke_by_name_and_serial_accumulates_in_a_signed_crl(ca: Path) -> None:
    one = pki.issue(ca, role="agent", name="gpu-01", days=2)
    two = pki.issue(ca, role="agent", name="gpu-02", days=2)
    crl, serial = pki.revoke(ca, name="gpu-01")
    assert serial == serial_of(one.cert)
    pki.revoke(ca, serial=12345)
    serials, next_update = load_crl(crl, ca / pki.CA_CERT)
    assert serials == {serial_of(one.cert), 12345}
    assert serial_of(two.cert) not in serials
    assert next_update is not None and next_update > dt.datetime.now(dt.UTC)


def test_revoke_an_unknown_host_names_what_is_missing(ca: Path) -> None:
    with pytest.raises(pki.PkiError, match=r"no agent certificate .*nope\.pem"):
        pki.revoke(ca, name="nope")


def test_a_crl_from_another_ca_is_refused(ca: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other")
    pki.init_ca(other, name="other CA", days=2)
    crl, _ = pki.revoke(other, serial=1)
    with pytest.raises(RevocationError, match="not signed by the CA"):
        RevocationList(crl, ca / pki.CA_CERT)


def test_list_follows_the_file_and_keeps_the_last_good_one(ca: Path) -> None:
    crl, _ = pki.revoke(ca, serial=7)
    clock = [0.0]
    revocation = RevocationList(crl, ca / pki.CA_CERT, check_every=1.0, monotonic=lambda: clock[0])
    assert revocation.is_revoked(7) and not revocation.is_revoked(8)
    pki.revoke(ca, serial=8)
    os.utime(crl, (1, 1))  # same-second rewrites: make the change visible by mtime
    assert not revocation.is_revoked(8), "the file is looked at once a second, not for every message"
    clock[0] = 1.0
    assert revocation.is_revoked(8), "a rewritten CRL is picked up without a restart"
    crl.write_text("garbage")
    clock[0] = 2.0
    assert revocation.is_revoked(7), "a broken CRL leaves the last good list in force"


def test_no_crl_configured_revokes_nothing(ca: Path) -> None:
    assert not RevocationList(None, ca / pki.CA_CERT).is_revoked(1)


def test_cli_revoke(ca: Path, capsys: pytest.CaptureFixture[str]) -> None:
    issued = pki.issue(ca, role="agent", name="gpu-03", days=2)
    assert main(["pki", "revoke", str(ca), "--agent", "gpu-03"]) == 0
    assert f"serial {serial_of(issued.cert):x} revoked" in capsys.readouterr().out
    assert main(["pki", "revoke", str(ca)]) == 2
    assert main(["pki", "revoke", str(ca), "--refresh"]) == 0
    serials, _ = load_crl(ca / pki.CRL, ca / pki.CA_CERT)
    assert serials == {serial_of(issued.cert)}
