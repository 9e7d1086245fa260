"""The certificate revocation list the collector enforces: serials it refuses, re-read when the file changes."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from cryptography import x509

log = structlog.get_logger("gpulse.collector.trust.revocation")


class RevocationError(Exception):
    """A CRL file is unusable (unreadable, not a CRL, not signed by our CA)."""


def load_crl(crl_path: Path, ca_path: Path) -> tuple[frozenset[int], dt.datetime | None]:
    """The revoked serials of a PEM CRL and its next update; refuses a CRL our CA did not sign."""
    try:
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except OSError as exc:
        raise RevocationError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise RevocationError(f"{crl_path} is not a PEM certificate revocation list: {exc}") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise RevocationError(f"{crl_path} is not signed by the CA in {ca_path}")
    return frozenset(entry.serial_number for entry in crl), crl.next_update_utc


class RevocationList:
    """Serials refused at stream open and on every message; ``path=None`` means nothing is revoked.

    A CRL that cannot be read at start stops the collector (fail closed); one that turns bad later is
    logged and the last good list stays in force.
    """

    def __init__(
        self,
        path: Path | None,
        ca_path: Path,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        check_every: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_reload: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.path = path
        self.on_reload = on_reload  # told "success" or "failure" of each re-read after a change (the audit log)
        # is_revoked runs for every agent message: look at the file at most this often.
        self.check_every = check_every
        self.monotonic = monotonic
        self._checked = monotonic()
        self.ca_path = ca_path
        self.now = now
        self.serials: frozenset[int] = frozenset()
        self.next_update: dt.datetime | None = None
        self._stamp: tuple[float, int] | None = None
        self._warned_stale = False
        if path is not None:
            self.serials, self.next_update = load_crl(path, ca_path)
            self._stamp = self._stat()

    def _stat(self) -> tuple[float, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed (or ``force``); True when the list was replaced."""
        if self.path is None:
            return False
        stamp = self._stat()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            serials, next_update = load_crl(self.path, self.ca_path)
        except RevocationError as exc:
            log.error("revocation list not reloaded; the previous one stays in force", error=str(exc))
            self.on_reload("failure")
            return False
        added = len(serials - self.serials)
        self.serials, self.next_update, self._warned_stale = serials, next_update, False
        log.info("revocation list loaded", path=str(self.path), revoked=len(serials), new=added)
        self.on_reload("success")
        return True

    def is_revoked(self, serial: int) -> bool:
        if self.monotonic() - self._checked >= self.check_every:
            self._checked = self.monotonic()
            self.refresh()
        if self.next_update is not None and self.now() > self.next_update and not self._warned_stale:
            # Still enforced: an old list is better than none. Re-sign it with `gpulse pki revoke --refresh`.
            self._warned_stale = True
            log.warning("revocation list is past its next update", next_update=self.next_update.isoformat())
        return serial in self.serials
