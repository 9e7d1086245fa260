"""The agent's channel credentials notice when their files are rotated on disk."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from collector.trust import pki
from runtime.tls import TlsFiles, WatchedChannelCredentials, validity_problem


def test_changed_after_rotation_and_after_switching_paths(tmp_path: Path) -> None:
    pki.init_ca(tmp_path, days=2)
    issued = pki.issue(tmp_path, role="agent", name="gpu-01", days=2)
    live = TlsFiles(tmp_path / pki.CA_CERT, tmp_path / "cert.pem", tmp_path / "key.pem")
    shutil.copy(issued.cert, live.cert)
    shutil.copy(issued.key, live.key)
    watched = WatchedChannelCredentials(live)
    assert not watched.changed(), "nothing built yet, nothing to rebuild"
    watched()
    assert not watched.changed()
    renewed = pki.issue(tmp_path, role="agent", name="gpu-01", days=2)
    shutil.copy(renewed.cert, live.cert)
    shutil.copy(renewed.key, live.key)
    assert watched.changed()
    watched()
    assert not watched.changed()
    watched.use(TlsFiles(live.ca, renewed.cert, renewed.key))
    assert watched.changed()


def test_validity_problem_names_the_dates(tmp_path: Path) -> None:
    pki.init_ca(tmp_path, days=2)
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    cert = pki.issue(tmp_path, role="agent", name="gpu-02", days=1, not_before=start).cert.read_bytes()
    assert validity_problem(cert, start - dt.timedelta(hours=1)).startswith("not valid before 2030-01-01")
    assert validity_problem(cert, start + dt.timedelta(days=2)).startswith("expired at 2030-01-02")
    assert validity_problem(cert, start + dt.timedelta(hours=1)) == ""


def test_a_half_rotated_pair_is_not_a_change_yet(tmp_path: Path) -> None:
    pki.init_ca(tmp_path, days=2)
    issued = pki.issue(tmp_path, role="agent", name="gpu-03", days=2)
    live = TlsFiles(tmp_path / pki.CA_CERT, tmp_path / "cert.pem", tmp_path / "key.pem")
    shutil.copy(issued.cert, live.cert)
    shutil.copy(issued.key, live.key)
    watched = WatchedChannelCredentials(live)
    watched()
    renewed = pki.issue(tmp_path, role="agent", name="gpu-03", days=2)
    shutil.copy(renewed.key, live.key)  # the new key is in place, the certificate not yet
    assert not watched.changed()
    shutil.copy(renewed.cert, live.cert)
    assert watched.changed()
