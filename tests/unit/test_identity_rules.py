"""Certificate identity beyond the chain gRPC checks: no CA leaves, issuers only from the configured
bundle, the host id from the SAN, and a SAN/CN disagreement refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.trust import pki
from collector.trust.identity import IdentityError, TrustedIssuers, peer_identity

Key = ec.EllipticCurvePrivateKey


def make(
    issuer: tuple[x509.Certificate, Key] | None,
    cn: str,
    *,
    ca: bool = False,
    dns: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
) -> tuple[x509.Certificate, Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    sans = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def ctx(cert: x509.Certificate) -> dict[str, list[bytes]]:
    return {"transport_security_type": [b"ssl"], "x509_pem_cert": [cert.public_bytes(serialization.Encoding.PEM)]}


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[x509.Certificate, Key]]:
    directory = tmp_path_factory.mktemp("ca")
    pki.init_ca(directory, days=2)
    return directory, pki.load_ca(directory)


def refused(cert: x509.Certificate, issuers: tuple[x509.Certificate, ...]) -> IdentityError:
    with pytest.raises(IdentityError) as info:
        peer_identity(ctx(cert), issuers=issuers)
    return info.value


def test_a_ca_leaf_is_refused_and_what_it_minted_is_not_from_our_ca(
    authority: tuple[Path, tuple[x509.Certificate, Key]],
) -> None:
    directory, ca = authority
    issuers = TrustedIssuers(directory / pki.CA_CERT)()
    rogue = make(ca, "node-1", ca=True, dns=("node-1",))
    error = refused(rogue[0], issuers)
    assert error.reason == "ca_certificate" and "'node-1'" in str(error) and f"{rogue[0].serial_number:x}" in str(error)
    minted, _ = make(rogue, "node-2", dns=("node-2",))
    assert refused(minted, issuers).reason == "untrusted_issuer"


def test_an_intermediate_configured_in_the_bundle_is_accepted(
    authority: tuple[Path, tuple[x509.Certificate, Key]],
) -> None:
    _, ca = authority
    intermediate = make(ca, "gpulse intermediate", ca=True)
    leaf, _ = make(intermediate, "node-3", dns=("node-3",))
    assert refused(leaf, (ca[0],)).reason == "untrusted_issuer"
    assert peer_identity(ctx(leaf), issuers=(ca[0], intermediate[0])).host_id == "node-3"


def test_the_host_id_comes_from_the_san_and_a_disagreeing_cn_is_refused(
    authority: tuple[Path, tuple[x509.Certificate, Key]],
) -> None:
    _, ca = authority
    issuers = (ca[0],)
    assert peer_identity(ctx(make(ca, "", dns=("node-4",))[0]), issuers=issuers).host_id == "node-4"
    uri = make(ca, "", uris=("spiffe://gpulse/node-5",))[0]
    assert peer_identity(ctx(uri), issuers=issuers).host_id == "node-5"
    assert peer_identity(ctx(make(ca, "node-6")[0]), issuers=issuers).host_id == "node-6"  # CN only without SAN
    error = refused(make(ca, "node-7", dns=("node-8",))[0], issuers)
    assert error.reason == "san_cn_mismatch" and "node-7" in str(error) and "node-8" in str(error)


def test_pki_issues_agents_a_san_naming_the_host(authority: tuple[Path, tuple[x509.Certificate, Key]]) -> None:
    directory, _ = authority
    issued = pki.issue(directory, role="agent", name="gpu-09", days=1)
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName)[0] == "gpu-09"
    assert peer_identity(ctx(cert), issuers=TrustedIssuers(directory / pki.CA_CERT)()).host_id == "gpu-09"
