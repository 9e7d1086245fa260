"""The collector's server certificate, re-read for new connections when it is rotated on disk."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import structlog
from cryptography import x509

from runtime.tls import TlsFiles, fingerprint, pair_problem

log = structlog.get_logger("gpulse.collector.trust.certificates")


class ServerCertificates:
    """gRPC dynamic server credentials: each new handshake asks ``fetch`` whether the files changed.

    Open streams keep the certificate they were established with; only new connections see the new
    one, so a rotation never drops an agent.
    """

    def __init__(
        self,
        files: TlsFiles,
        *,
        expiry: Callable[[float], None] = lambda _: None,
        on_rotation: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.files = files
        self.on_rotation = on_rotation  # told "success" or "failure" of each rotation seen (the audit log)
        self.expiry = expiry  # told the served certificate's not-after time (Unix) on each load
        self.rotations = 0
        self.failures = 0
        self._loaded = ""
        self._failed = ""

    def _configuration(self) -> object:
        ca, cert, key = self.files.read()
        # A rotation caught halfway (new cert, old key) must not reach gRPC: it would fail every handshake.
        problem = pair_problem(cert, key) or _ca_problem(ca)
        if problem:
            raise OSError(f"TLS files {self.files.cert} / {self.files.key}: {problem}")
        self.expiry(x509.load_pem_x509_certificate(cert).not_valid_after_utc.timestamp())
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that require a client certificate from our CA and follow rotations."""
        initial = self._configuration()
        self._loaded = fingerprint(self.files)
        return grpc.dynamic_ssl_server_credentials(initial, self.fetch, require_client_authentication=True)

    def use(self, files: TlsFiles) -> None:
        """Switch to other paths (after a config reload); the next handshake picks them up."""
        self.files = files

    def fetch(self) -> object | None:
        """Called by gRPC before each handshake: a new configuration, or None to keep the current one."""
        current = fingerprint(self.files)
        if not current or current in (self._loaded, self._failed):
            return None
        try:
            configuration = self._configuration()
        except OSError as exc:
            self.failures += 1
            self._failed = current
            log.error("rotated certificate not loaded; keeping the previous one", error=str(exc))
            self.on_rotation("failure")
            return None
        self._loaded = current
        self.rotations += 1
        log.info("server certificate rotated", cert=str(self.files.cert))
        self.on_rotation("success")
        return configuration


def _ca_problem(ca: bytes) -> str:
    try:
        x509.load_pem_x509_certificates(ca)
    except ValueError as exc:
        return f"the CA bundle is not valid PEM: {exc}"
    return ""
