"""How every client command names a collector and its credentials: ``--url``, ``--ca``, ``--credentials``.

``add_client_options`` puts the same three flags (each with an environment fallback) on a command's
parser; ``Client.from_args`` turns them into what a request needs (an SSL context that trusts the
given CA, an ``Authorization`` header) and makes JSON requests. A password never appears in a repr,
a log line or an error message.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

__all__ = ["DEFAULT_URL", "BasicAuth", "Client", "ClientError", "HttpStatusError", "add_client_options"]

DEFAULT_URL = "http://127.0.0.1:9410"
URL_ENV, CA_ENV, CREDENTIALS_ENV, BASIC_AUTH_ENV = "GPULSE_URL", "GPULSE_CA", "GPULSE_CREDENTIALS", "GPULSE_BASIC_AUTH"


class ClientError(Exception):
    """A request could not be made or was refused; the message says why (and never holds a password)."""


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--url``, ``--ca`` and ``--credentials`` to a client command's parser."""
    group = parser.add_argument_group("collector connection")
    group.add_argument(
        "--url",
        default=None,
        help=f"the collector's HTTP address (env {URL_ENV}; default {DEFAULT_URL})",
    )
    group.add_argument(
        "--ca",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"CA bundle to verify an https collector's certificate (env {CA_ENV}; default: the system's)",
    )
    group.add_argument(
        "--credentials",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"file holding username:password for HTTP basic auth (env {CREDENTIALS_ENV}, "
        f"or {BASIC_AUTH_ENV}=user:password)",
    )


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """A username and password; the password is left out of the repr."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def parse(cls, text: str, origin: str) -> BasicAuth:
        """``user:password`` (surrounding whitespace and a trailing newline ignored); ``origin`` names the source."""
        username, sep, password = text.strip().partition(":")
        if not sep or not username:
            raise ClientError(f"{origin}: expected username:password")
        return cls(username, password)

    def header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


@dataclass(frozen=True, slots=True)
class Client:
    """One collector's HTTP API: its base URL, the CA to trust and the credentials to send."""

    url: str = DEFAULT_URL
    ca: Path | None = None
    auth: BasicAuth | None = None
    timeout: float = 10.0

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Client:
        """From ``add_client_options``'s flags; a flag wins over its environment variable."""
        env = os.environ if env is None else env
        url = args.url or env.get(URL_ENV) or DEFAULT_URL
        ca_text = args.ca or env.get(CA_ENV)
        credentials = args.credentials or env.get(CREDENTIALS_ENV)
        auth = None
        if credentials:
            path = Path(credentials)
            try:
                auth = BasicAuth.parse(path.read_text(), str(path))
            except OSError as exc:
                raise ClientError(f"credentials file {path}: {exc.strerror or exc}") from None
        elif env.get(BASIC_AUTH_ENV):
            auth = BasicAuth.parse(env[BASIC_AUTH_ENV], BASIC_AUTH_ENV)
        return cls.checked(url, Path(ca_text) if ca_text else None, auth)

    @classmethod
    def checked(cls, url: str, ca: Path | None = None, auth: BasicAuth | None = None) -> Client:
        """A client for ``url``, refusing URLs that cannot work (or that carry a password)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"--url {url!r}: expected http://HOST:PORT or https://HOST:PORT")
        if parts.username is not None or parts.password is not None:
            # Not echoed: the URL holds a secret. Credentials go in a file or the environment.
            raise ClientError("--url must not hold credentials; give them with --credentials FILE")
        if ca is not None and not ca.is_file():
            raise ClientError(f"--ca {ca}: no such file")
        return cls(url.rstrip("/"), ca, auth)

    def ssl_context(self) -> ssl.SSLContext | None:
        """For https: verify the collector against ``ca`` (or the system's CAs); None for plain http."""
        if not self.url.startswith("https:"):
            return None
        import ssl  # here: the agent's process builds these parsers and never needs ssl for them

        try:
            return ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        except (ssl.SSLError, OSError) as exc:
            raise ClientError(f"--ca {self.ca}: not a PEM CA bundle ({exc})") from None

    def headers(self) -> dict[str, str]:
        """What every request carries: JSON, and the Authorization header when there are credentials."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.auth is not None:
            headers["Authorization"] = self.auth.header()
        return headers

    def request(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Send a JSON request to ``path`` (e.g. ``/api/v1/fleet``) and return the decoded answer.

        Raises ClientError naming the method, the URL and the collector's reason (``HTTPError`` codes
        are in ``status``).
        """
        # Imported here: urllib.request pulls in much, and every `gpulse` process builds the parsers.
        import urllib.error
        import urllib.request

        url = self.url + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.ssl_context()) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise HttpStatusError(f"{method} {url}: {exc.code} {_reason(exc)}{_hint(exc.code)}", exc.code) from None
        except urllib.error.URLError as exc:
            raise ClientError(f"{method} {url}: {_url_reason(exc.reason)}") from None
        except (OSError, ValueError) as exc:
            raise ClientError(f"{method} {url}: {exc}") from None


class HttpStatusError(ClientError):
    """The collector answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _reason(exc: Any) -> str:
    try:
        reason = json.loads(exc.read()).get("error", exc.reason)
    except (ValueError, AttributeError, OSError):
        reason = exc.reason
    return str(reason)


def _hint(status: int) -> str:
    if status == 401:
        return " (give credentials with --credentials FILE or GPULSE_BASIC_AUTH)"
    if status == 403:
        return " (these credentials may not do this)"
    return ""


def _url_reason(reason: object) -> str:
    import ssl

    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {reason.verify_message} (give the collector's CA with --ca FILE)"
    return str(reason)
