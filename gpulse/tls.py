"""Loading the PEM files of an mTLS identity, for either end of the gRPC stream."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


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
