"""Who is on the other end of a stream: the host named by the client certificate gRPC verified."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
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
def _parse(pem: bytes) -> PeerIdentity:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise IdentityError(
            "wrong_usage", "client certificate has no extended key usage; clientAuth required"
        ) from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise IdentityError("wrong_usage", "client certificate is not for clientAuth")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or not str(names[0].value):
        raise IdentityError("no_identity", "client certificate has no common name")
    return PeerIdentity(
        str(names[0].value),
        cert.serial_number,
        cert.not_valid_after_utc.timestamp(),
        cert.not_valid_before_utc.timestamp(),
    )


def peer_identity(
    auth_context: Mapping[str, Iterable[bytes]],
    *,
    revoked: Callable[[int], bool] | None = None,
    now: float | None = None,
) -> PeerIdentity:
    """The identity in a verified client certificate; gRPC has already checked it chains to our CA.

    The validity window is checked again here (against our clock, ``now``), and ``revoked`` is the CRL.
    """
    if list(auth_context.get("transport_security_type", ())) != [b"ssl"]:
        raise IdentityError("no_tls", "stream is not over TLS")
    pem = list(auth_context.get("x509_pem_cert", ()))
    if not pem:
        raise IdentityError("no_client_cert", "no client certificate presented")
    identity = _parse(pem[0])
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
