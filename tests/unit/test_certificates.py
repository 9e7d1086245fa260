"""Server certificate rotation: gRPC asks before each handshake whether the files changed."""

from __future__ import annotations

import shutil
from pathlib import Path

from collector.trust import pki
from collector.trust.certificates import ServerCertificates
from runtime.tls import TlsFiles


def setup_files(tmp_path: Path) -> tuple[Path, TlsFiles]:
    pki.init_ca(tmp_path / "ca", days=2)
    issued = pki.issue(tmp_path / "ca", role="collector", name="c1", days=2)
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(tmp_path / "ca" / pki.CA_CERT, live / "ca.pem")
    shutil.copy(issued.cert, live / "cert.pem")
    shutil.copy(issued.key, live / "key.pem")
    return tmp_path / "ca", TlsFiles(live / "ca.pem", live / "cert.pem", live / "key.pem")


def test_unchanged_files_keep_the_current_configuration(tmp_path: Path) -> None:
    _, files = setup_files(tmp_path)
    certs = ServerCertificates(files)
    certs.credentials()
    assert certs.fetch() is None
    assert certs.rotations == 0


def test_a_rotated_pair_is_loaded_once(tmp_path: Path) -> None:
    ca, files = setup_files(tmp_path)
    certs = ServerCertificates(files)
    certs.credentials()
    renewed = pki.issue(ca, role="collector", name="c1", days=2)
    shutil.copy(renewed.cert, files.cert)
    shutil.copy(renewed.key, files.key)
    assert certs.fetch() is not None
    assert certs.fetch() is None, "the new configuration is handed over once"
    assert certs.rotations == 1


def test_a_half_rotated_pair_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    ca, files = setup_files(tmp_path)
    certs = ServerCertificates(files)
    certs.credentials()
    renewed = pki.issue(ca, role="collector", name="c1", days=2)
    shutil.copy(renewed.cert, files.cert)  # the key is still the old one
    assert certs.fetch() is None
    assert certs.failures == 1
    shutil.copy(renewed.key, files.key)  # the rotation completes
    assert certs.fetch() is not None
