"""The web config file of the Prometheus exporter-toolkit: TLS and basic-auth users of an HTTP listener.

The format is the one node_exporter and Prometheus read (``--web.config.file``), so an operator's
existing file, and ``htpasswd -nBC 10`` hashes, work here unchanged::

    tls_server_config:
      cert_file: /etc/gpulse/http.pem
      key_file: /etc/gpulse/http-key.pem
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: /etc/gpulse/ca.pem              # needed for the two verifying types
      min_version: TLS12                              # optional: TLS12 (default) or TLS13
    basic_auth_users:
      alice: $2y$10$...                               # bcrypt only, as in exporter-toolkit

The file is re-read when it (or a TLS file it names) changes; a file that turns bad is logged and the
previous one stays in force, so a typo never opens the listener.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runtime.configfile import ConfigError

log = structlog.get_logger("gpulse.webconfig")

# Exporter-toolkit's names. The two that accept a certificate without verifying it are refused:
# Python's ssl module can only request a certificate it also verifies.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED = ("RequestClientCert", "RequireAnyClientCert")
_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
# bcrypt of a random password: unknown users are checked against it, so that a wrong user name
# costs as long as a wrong password and user names cannot be told apart by timing.
_DUMMY_HASH = b"$2b$10$4CAOQxa68Zm7ICCfkkygreyMEsCysuxuwbkrgkU/QNR0n0qbv9cX."
CHECK_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class TlsServerConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    @property
    def verifies_clients(self) -> bool:
        return self.client_auth_type != "NoClientCert"

    def files(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file, *((self.client_ca_file,) if self.client_ca_file else ()))


@dataclass(frozen=True, slots=True)
class WebConfig:
    """One parsed web config file: optional TLS, and users with their bcrypt hashes."""

    path: Path | None = None
    tls: TlsServerConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def has_credentials(self) -> bool:
        """Whether every request must show who it is (a password, or a verified certificate)."""
        return bool(self.users) or (self.tls is not None and self.tls.client_auth_type == "RequireAndVerifyClientCert")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server context for this file's TLS settings (None when it serves plain HTTP)."""
        if self.tls is None:
            return None
        tls = self.tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _VERSIONS[tls.min_version]
        context.maximum_version = _VERSIONS[tls.max_version]
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.client_ca_file is not None:
                context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(self.path or "", "tls_server_config", f"cannot load TLS files: {exc}") from None
        context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
        return context


def _file(path: Path, section: Mapping[str, Any], key: str) -> Path:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"tls_server_config.{key}", "required: a file path")
    found = Path(value)
    # Relative paths are relative to the web config file, as in exporter-toolkit.
    return found if found.is_absolute() else path.parent / found


def _tls(path: Path, data: Any) -> TlsServerConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(path, "tls_server_config", "expected a mapping")
    unknown = sorted(set(data) - _TLS_KEYS)
    if unknown:
        raise ConfigError(path, f"tls_server_config.{unknown[0]}", "unknown or unsupported key")
    auth = data.get("client_auth_type", "NoClientCert")
    known = ", ".join(CLIENT_AUTH_TYPES)
    if auth in _UNVERIFIED:
        problem = f"{auth} accepts unverified certificates; use {known}"
        raise ConfigError(path, "tls_server_config.client_auth_type", problem)
    if auth not in CLIENT_AUTH_TYPES:
        raise ConfigError(path, "tls_server_config.client_auth_type", f"must be one of {known}; got {auth!r}")
    ca = _file(path, data, "client_ca_file") if "client_ca_file" in data else None
    if auth != "NoClientCert" and ca is None:
        raise ConfigError(path, "tls_server_config.client_ca_file", f"required with client_auth_type {auth}")
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        versions[key] = data.get(key, default)
        if versions[key] not in _VERSIONS:
            raise ConfigError(path, f"tls_server_config.{key}", f"must be TLS12 or TLS13; got {versions[key]!r}")
    cert_file, key_file = _file(path, data, "cert_file"), _file(path, data, "key_file")
    return TlsServerConfig(cert_file, key_file, auth, ca, versions["min_version"], versions["max_version"])


def _users(path: Path, data: Any) -> dict[str, bytes]:
    if not isinstance(data, Mapping):
        raise ConfigError(path, "basic_auth_users", "expected a mapping of user name to bcrypt hash")
    users = {}
    for name, hashed in data.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(path, "basic_auth_users", f"invalid user name {name!r}")
        # Never echo the value: it is a password hash.
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
            raise ConfigError(path, f"basic_auth_users.{name}", "expected a bcrypt hash ($2y$..., 60 characters)")
        users[name] = hashed.encode()
    return users


def parse(path: Path, text: str) -> WebConfig:
    """Parse the text of a web config file; raises ConfigError naming the file and key."""
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"invalid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(path, "", "expected a mapping at the top level")
    unknown = sorted(set(data) - {"tls_server_config", "basic_auth_users"})
    if unknown:
        raise ConfigError(path, unknown[0], "unknown or unsupported key")
    tls = _tls(path, data["tls_server_config"]) if data.get("tls_server_config") else None
    config = WebConfig(path, tls, _users(path, data.get("basic_auth_users") or {}))
    config.ssl_context()  # the TLS files must load now, not at the first handshake
    return config


def load(path: Path) -> WebConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read web config: {exc.strerror}") from None
    return parse(path, text)


class Passwords:
    """bcrypt checks with a cache of good answers: bcrypt costs ~50 ms by design, a scrape every 15 s
    must not pay it each time. Only a digest of a password that matched is kept, never the password."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._good: dict[tuple[str, bytes, bytes], None] = {}

    def cached(self, users: Mapping[str, bytes], user: str, password: str) -> bool:
        return self._key(users, user, password) in self._good

    def check(self, users: Mapping[str, bytes], user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s; unknown users cost as long as known ones."""
        import bcrypt

        key = self._key(users, user, password)
        if key in self._good:
            return True
        hashed = users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
        except ValueError:
            return False
        if ok:
            if len(self._good) >= self.size:
                self._good.pop(next(iter(self._good)))
            self._good[key] = None
        return ok

    @staticmethod
    def _key(users: Mapping[str, bytes], user: str, password: str) -> tuple[str, bytes, bytes]:
        hashed = users.get(user, b"")
        return user, hashed, hmac.digest(hashed or b"-", password.encode(), hashlib.sha256)


def parse_basic(header: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` header, or None."""
    import base64
    import binascii

    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class WatchedWebConfig:
    """The web config in force, re-read when its file or a TLS file it names changes.

    ``context`` is an SSLContext whose handshakes use the newest good TLS settings, so a listener
    started once follows certificate rotations (see ``ReloadingContext``).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_reload: Callable[[str, WebConfig | None], None] = lambda result, config: None,
    ) -> None:
        self.path = path
        self.monotonic = monotonic
        self.on_reload = on_reload  # told "success" or "failure" after each re-read
        self.config = load(path) if path is not None else WebConfig()
        self._ssl = self.config.ssl_context()
        self._stamp = self._stat()
        self._checked = monotonic()
        self.context = ReloadingContext(self) if self._ssl is not None else None

    def _stat(self) -> tuple[tuple[float, int], ...]:
        paths = [self.path] if self.path is not None else []
        if self.config.tls is not None:
            paths += self.config.tls.files()
        stamps = []
        for path in paths:
            try:
                st = path.stat()
                stamps.append((st.st_mtime, st.st_size))
            except OSError:
                stamps.append((0.0, -1))
        return tuple(stamps)

    def current(self) -> WebConfig:
        """The config in force; looks at the files at most once a second."""
        if self.path is None or self.monotonic() - self._checked < CHECK_EVERY_S:
            return self.config
        self._checked = self.monotonic()
        stamp = self._stat()
        if stamp == self._stamp:
            return self.config
        self._stamp = stamp
        try:
            config = load(self.path)
            context = config.ssl_context()
            if (context is None) != (self._ssl is None):
                # The socket was opened for one or the other: a switch needs a restart.
                raise ConfigError(self.path, "tls_server_config", "switching between HTTP and HTTPS needs a restart")
        except ConfigError as exc:
            log.error("web config not reloaded; the previous one stays in force", error=str(exc))
            self.on_reload("failure", None)
            return self.config
        self.config, self._ssl = config, context
        log.info("web config reloaded", path=str(self.path), users=len(config.users), tls=config.tls is not None)
        self.on_reload("success", config)
        return self.config

    def ssl_for_handshake(self) -> ssl.SSLContext:
        self.current()
        assert self._ssl is not None
        return self._ssl


class ReloadingContext(ssl.SSLContext):
    """An SSLContext for ``loop.create_server`` whose every new connection takes the newest settings.

    asyncio wraps each accepted socket with ``wrap_bio``; handing that call to the context currently
    in force is what lets a started listener rotate its certificate without a restart.
    """

    watched: WatchedWebConfig

    def __new__(cls, watched: WatchedWebConfig) -> ReloadingContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self.watched = watched
        return self

    def __init__(self, watched: WatchedWebConfig) -> None:
        pass  # all state lives in the watched config's contexts

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self.watched.ssl_for_handshake().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
