from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.trust import pki
from gpulse.cli import main


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_and_certificates_have_the_right_usage_sans_and_key_modes(tmp_path: Path) -> None:
    ca = pki.init_ca(tmp_path)
    agent = pki.issue(tmp_path, role="agent", name="gpu-node-7", days=30)
    collector = pki.issue(tmp_path, role="collector", name="collector-1", sans=["collector.example", "10.0.0.5"])
    ca_cert = load(ca.cert)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for issued in (ca, agent, collector):
        assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
    a = load(agent.cert)
    assert isinstance(a.public_key(), ec.EllipticCurvePublicKey)
    assert a.public_key().curve.name == "secp256r1"
    assert a.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gpu-node-7"
    assert list(a.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (a.not_valid_after_utc - a.not_valid_before_utc) == dt.timedelta(days=30)
    a.verify_directly_issued_by(ca_cert)
    c = load(collector.cert)
    assert list(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["collector-1", "collector.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_refuses_to_overwrite_a_ca_and_bad_names(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    with pytest.raises(pki.PkiError, match="already exists"):
        pki.init_ca(tmp_path)
    with pytest.raises(pki.PkiError, match=r"invalid agent name '\.\./etc'"):
        pki.issue(tmp_path, role="agent", name="../etc")
    with pytest.raises(pki.PkiError, match="no CA in"):
        pki.issue(tmp_path / "nowhere", role="agent", name="a")


def test_cli_init_and_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "init", str(tmp_path)]) == 0
    assert main(["pki", "issue", str(tmp_path), "--agent", "node-1", "--days", "10"]) == 0
    assert main(["pki", "issue", str(tmp_path), "--collector", "col", "--san", "127.0.0.1"]) == 0
    assert (tmp_path / "agents" / "node-1.pem").exists()
    assert (tmp_path / "collectors" / "col-key.pem").exists()
    assert main(["pki", "init", str(tmp_path)]) == 2
    assert "refusing to replace an existing CA" in capsys.readouterr().err


def test_issue_refuses_to_replace_an_existing_key_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init", str(tmp_path)]) == 0
    assert main(["pki", "issue", str(tmp_path), "--agent", "node-1"]) == 0
    key = tmp_path / "agents" / "node-1-key.pem"
    first = key.read_bytes()
    capsys.readouterr()
    assert main(["pki", "issue", str(tmp_path), "--agent", "node-1"]) == 2
    assert f"{key} already exists" in capsys.readouterr().err
    assert key.read_bytes() == first
    assert main(["pki", "issue", str(tmp_path), "--agent", "node-1", "--force"]) == 0
    assert key.read_bytes() != first
