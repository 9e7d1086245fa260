"""Loading the PEM files of an mTLS identity, for either end of the gRPC stream."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

log = structlog.get_logger("gpulse.tls")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths to a CA bundle, a certificate and its private key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """Return (ca, cert, key) bytes; a missing or unreadable file raises naming it."""
        out = []
        for what, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise OSError(f"cannot read TLS {what} file {path}: {exc.strerror}") from exc
        return out[0], out[1], out[2]

    def mtimes(self) -> tuple[float, float, float]:
        """Modification times, to notice a rotation on disk."""
        return (self.ca.stat().st_mtime, self.cert.stat().st_mtime, self.key.stat().st_mtime)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate signed by ``files.ca``."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials presenting ``files.cert`` and trusting only ``files.ca``."""
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def fingerprint(files: TlsFiles) -> str:
    """A digest of the three files' contents ("" if one is unreadable), to notice a rotation on disk."""
    digest = hashlib.sha256()
    try:
        for path in (files.ca, files.cert, files.key):
            digest.update(path.read_bytes())
    except OSError:
        return ""
    return digest.hexdigest()


def validity_problem(cert_pem: bytes, now: dt.datetime) -> str:
    """Why a certificate cannot be used at ``now`` ("expired ...", "not valid before ..."), or ""."""
    # Imported here: cryptography costs the agent ~10 MiB of RSS, and it needs it only to explain a failure.
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc.isoformat()}"
    if now > cert.not_valid_after_utc:
        return f"expired at {cert.not_valid_after_utc.isoformat()}"
    return ""


def pair_problem(cert_pem: bytes, key_pem: bytes) -> str:
    """Why a certificate and key cannot be used together ("" if they can): unreadable, or not a pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        cert_key = x509.load_pem_x509_certificate(cert_pem).public_key()
        private = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        return f"not valid PEM: {exc}"
    if cert_key.public_bytes(*spki) != private.public_key().public_bytes(*spki):
        return "the key does not match the certificate"
    return ""


class WatchedChannelCredentials:
    """Channel credentials built from files on each call; ``changed()`` tells when they were rotated.

    The certificate is parsed only when a connection fails (``diagnose``), never on the happy path.
    """

    def __init__(self, files: TlsFiles, *, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.files = files
        self.now = now
        self._loaded = ""
        self._reported = ""

    def __call__(self) -> grpc.ChannelCredentials:
        ca, cert, key = self.files.read()
        self._loaded = fingerprint(self.files)
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def diagnose(self) -> str:
        """After a failed connection: if our own certificate is why, log it once and return the reason."""
        try:
            cert = self.files.cert.read_bytes()
            problem = validity_problem(cert, self.now())
        except OSError as exc:
            problem = f"unreadable: {exc.strerror}"
        except ValueError as exc:
            problem = f"not a PEM certificate: {exc}"
        if problem and problem != self._reported:
            # The collector refuses such a handshake without a reason; say why here, where the operator looks.
            log.error("client certificate is unusable", cert=str(self.files.cert), problem=problem)
        self._reported = problem
        return problem

    def use(self, files: TlsFiles) -> None:
        """Switch to other paths (after a config reload); the next check reports a change."""
        if files != self.files:
            self.files = files
            self._loaded = "moved"

    def changed(self) -> bool:
        """True when the files on disk differ from those the last credentials were built from."""
        if not self._loaded:
            return False
        current = fingerprint(self.files)
        if not current or current == self._loaded:
            return False
        # A rotation caught halfway (new key, old certificate) is not a change yet: wait for the pair.
        try:
            _, cert, key = self.files.read()
        except OSError:
            return False
        return not pair_problem(cert, key)
