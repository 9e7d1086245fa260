"""A small certificate authority for gpulse: a CA, agent (clientAuth) and collector (serverAuth) certs.

Layout of a PKI directory::

    ca.pem  ca-key.pem                       the authority (key mode 0600)
    agents/HOST.pem  agents/HOST-key.pem     one client identity per host
    collectors/NAME.pem  collectors/NAME-key.pem
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")


class PkiError(Exception):
    """A PKI operation could not be done; the message says why."""


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    # Create with 0600 from the start: a chmod afterwards would leave a window where the key is readable.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    path.chmod(0o600)  # O_CREAT's mode does not apply when the file already existed


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; a leaf signs handshakes (ECDHE key agreement)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def check_name(name: str, what: str) -> str:
    """Host and collector names become file names and certificate identities: keep them plain."""
    if not _NAME_RE.match(name):
        raise PkiError(f"invalid {what} name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def init_ca(directory: Path, name: str = "gpulse CA", days: int = 3650, *, force: bool = False) -> Issued:
    """Create a CA in ``directory``; refuses to overwrite an existing one unless ``force``."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and not force:
        raise PkiError(f"{cert_path} already exists; refusing to replace an existing CA")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, _cert_pem(cert))
    return Issued(cert_path, key_path)


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise PkiError(f"no CA in {directory} (missing {exc.filename}); run 'gpulse pki init {directory}'") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{directory / CA_KEY} is not an EC private key")
    return cert, key


def _san_entries(sans: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for san in sans:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            entries.append(x509.DNSName(san))
    return entries


def issue(
    directory: Path,
    *,
    role: str,
    name: str,
    sans: list[str] | None = None,
    days: int = 365,
    not_before: dt.datetime | None = None,
) -> Issued:
    """Issue an ECDSA P-256 certificate for an ``agent`` (clientAuth) or a ``collector`` (serverAuth).

    The subject CN is the name; it is the agent's host identity. ``not_before`` lets tests make
    certificates that are expired or not yet valid.
    """
    if role not in ("agent", "collector"):
        raise PkiError(f"unknown role {role!r}: expected agent or collector")
    check_name(name, role)
    if days <= 0:
        raise PkiError(f"validity must be at least one day, got {days}")
    ca_cert, ca_key = load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if role == "agent" else ExtendedKeyUsageOID.SERVER_AUTH
    names = [name, *(sans or [])]
    if role == "collector" and not sans:
        names += ["localhost", "127.0.0.1", "::1"]
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gpulse"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(list(dict.fromkeys(names)))), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = issued_paths(directory, role=role, name=name)
    cert_path, key_path = paths.cert, paths.key
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, _cert_pem(cert))
    return Issued(cert_path, key_path)


def issued_paths(directory: Path, *, role: str, name: str) -> Issued:
    """Where ``issue`` writes the certificate and key for ``name``: ``agents/`` or ``collectors/`` in the CA dir."""
    folder = directory / ("agents" if role == "agent" else "collectors")
    return Issued(folder / f"{name}.pem", folder / f"{name}-key.pem")


CRL = "crl.pem"


def revoke(
    directory: Path,
    *,
    name: str | None = None,
    serial: int | None = None,
    role: str = "agent",
    days: int = 30,
    now: dt.datetime | None = None,
) -> tuple[Path, int | None]:
    """Add a certificate (by agent/collector name, or by serial) to ``crl.pem``, re-signed by the CA.

    With neither ``name`` nor ``serial`` the list is only re-signed with a new next-update date.
    Returns the CRL path and the serial revoked.
    """
    if days <= 0:
        raise PkiError(f"CRL validity must be at least one day, got {days}")
    ca_cert, ca_key = load_ca(directory)
    if name is not None:
        check_name(name, role)
        cert_path = directory / ("agents" if role == "agent" else "collectors") / f"{name}.pem"
        try:
            serial = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
        except FileNotFoundError:
            raise PkiError(f"no {role} certificate {cert_path}; use --serial for one issued elsewhere") from None
    crl_path = directory / CRL
    entries: dict[int, dt.datetime] = {}
    if crl_path.exists():
        old = x509.load_pem_x509_crl(crl_path.read_bytes())
        if not old.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
            raise PkiError(f"{crl_path} is not signed by this CA; refusing to extend it")
        entries = {e.serial_number: e.revocation_date_utc for e in old}
    moment = now or dt.datetime.now(dt.UTC)
    if serial is not None:
        entries.setdefault(serial, moment)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(moment)
        .next_update(moment + dt.timedelta(days=days))
    )
    for number, when in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(number).revocation_date(when).build()
        )
    # Replace atomically: a collector re-reading the list must never see half of it.
    tmp = crl_path.with_name(CRL + ".tmp")
    _write_public(tmp, _cert_pem_crl(builder.sign(ca_key, hashes.SHA256())))
    tmp.replace(crl_path)
    return crl_path, serial


def _cert_pem_crl(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)
