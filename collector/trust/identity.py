"""Who is on the other end of a stream: the host named by the client certificate gRPC verified."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class IdentityError(Exception):
    """The peer's certificate does not name a usable agent identity."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    host_id: str
    serial: int
    not_after_unix: float
    not_before_unix: float = 0.0


@lru_cache(maxsize=4096)
def _parse(pem: bytes) -> tuple[PeerIdentity, x509.Certificate]:
    cert = x509.load_pem_x509_certificate(pem)
    serial = cert.serial_number
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    if ca:
        # A CA:TRUE leaf could mint certificates for any other host.
        raise IdentityError(
            "ca_certificate", f"client certificate {cn!r} (serial {serial:x}) is a CA; a leaf is required"
        )
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise IdentityError(
            "wrong_usage", "client certificate has no extended key usage; clientAuth required"
        ) from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise IdentityError("wrong_usage", "client certificate is not for clientAuth")
    host_id = _host_from_san(cert, cn, serial) or cn
    if not host_id:
        raise IdentityError("no_identity", "client certificate has neither a SAN nor a common name")
    identity = PeerIdentity(
        host_id, serial, cert.not_valid_after_utc.timestamp(), cert.not_valid_before_utc.timestamp()
    )
    return identity, cert


def _host_from_san(cert: x509.Certificate, cn: str, serial: int) -> str:
    """The host id a SAN names (first DNS name, else that of the first URI); "" without a SAN.

    With a SAN the CN is only a label, and it must be one of the SAN's names: a certificate whose
    CN says one host and whose SAN says another is refused rather than guessed at.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [_uri_host(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    if not names:
        return ""
    if cn and cn not in names:
        raise IdentityError(
            "san_cn_mismatch",
            f"client certificate CN {cn!r} is not among its SAN names {names[:4]!r} (serial {serial:x})",
        )
    return names[0]


def _uri_host(uri: str) -> str:
    """The host a URI SAN names: its last path segment (spiffe://domain/gpu/node-1), else its host."""
    parts = urlsplit(uri)
    return parts.path.rstrip("/").rpartition("/")[2] or parts.hostname or uri


def _issued_by_trusted(cert: x509.Certificate, issuers: Sequence[x509.Certificate]) -> bool:
    for issuer in issuers:
        try:
            cert.verify_directly_issued_by(issuer)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def peer_identity(
    auth_context: Mapping[str, Iterable[bytes]],
    *,
    revoked: Callable[[int], bool] | None = None,
    now: float | None = None,
    issuers: Sequence[x509.Certificate] = (),
) -> PeerIdentity:
    """The identity in a verified client certificate; gRPC has already checked it chains to our CA.

    The validity window is checked again here (against our clock, ``now``), and ``revoked`` is the CRL.
    With ``issuers`` (the configured CA bundle: the CA and any intermediates put there on purpose),
    the leaf must be signed directly by one of them: a chain through any other CA, such as a leaf
    that was itself a CA, is refused.
    """
    if list(auth_context.get("transport_security_type", ())) != [b"ssl"]:
        raise IdentityError("no_tls", "stream is not over TLS")
    pem = list(auth_context.get("x509_pem_cert", ()))
    if not pem:
        raise IdentityError("no_client_cert", "no client certificate presented")
    identity, cert = _parse(pem[0])
    if issuers and not _issued_by_trusted(cert, issuers):
        raise IdentityError(
            "untrusted_issuer",
            f"client certificate of {identity.host_id!r} (serial {identity.serial:x}) was not issued by the configured "
            "CA or an intermediate configured with it",
        )
    when = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    if when > identity.not_after_unix:
        raise IdentityError("expired", f"client certificate of {identity.host_id!r} has expired")
    if when < identity.not_before_unix:
        raise IdentityError("not_yet_valid", f"client certificate of {identity.host_id!r} is not valid yet")
    if revoked is not None and revoked(identity.serial):
        raise IdentityError(
            "revoked", f"client certificate of {identity.host_id!r} (serial {identity.serial:x}) is revoked"
        )
    return identity


class TrustedIssuers:
    """The certificates of the configured CA bundle, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._certs: tuple[x509.Certificate, ...] = ()

    def __call__(self) -> tuple[x509.Certificate, ...]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
            if stamp != self._stamp:
                self._certs = tuple(x509.load_pem_x509_certificates(self.path.read_bytes()))
                self._stamp = stamp
        except (OSError, ValueError):
            pass  # gRPC refuses with a bad bundle anyway; keep the last good one for our check
        return self._certs
