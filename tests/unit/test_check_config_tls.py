"""`gpulse check-config` checks the TLS files a config names, as the service would use them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from collector.trust import pki
from gpulse.cli import main
from tests.kit import Pki, agent_config


def check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str]:
    code = main(["check-config", "agent", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_good_files_pass(tmp_path: Path, test_pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, agent_config(tmp_path, test_pki, "node-ok", ["127.0.0.1:7443"]))
    assert code == 0, out


def test_a_missing_certificate_fails(tmp_path: Path, test_pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_config(tmp_path, test_pki, "node-a", ["127.0.0.1:7443"], tls={"cert": str(tmp_path / "gone.pem")})
    code, out = check(capsys, path)
    assert code == 2 and "gone.pem" in out and "No such file" in out


def test_a_certificate_for_another_host_fails(
    tmp_path: Path, test_pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(capsys, agent_config(tmp_path, test_pki, "gpu-node-01", ["127.0.0.1:7443"], cert_host="node-b"))
    assert code == 2 and "not host_id 'gpu-node-01'" in out and "node-b" in out


def test_a_mismatched_key_an_expired_certificate_and_another_ca_fail(
    tmp_path: Path, test_pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    _, other_key = test_pki.agent("node-other")
    path = agent_config(tmp_path, test_pki, "node-c", ["127.0.0.1:7443"], tls={"key": str(other_key)})
    code, out = check(capsys, path)
    assert code == 2 and "the key does not match the certificate" in out
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    expired = pki.issue(test_pki.directory, role="agent", name="node-old", days=1, not_before=old)
    path = agent_config(
        tmp_path, test_pki, "node-old", ["127.0.0.1:7443"], tls={"cert": str(expired.cert), "key": str(expired.key)}
    )
    code, out = check(capsys, path)
    assert code == 2 and "expired at" in out
    other = tmp_path / "other-ca"
    pki.init_ca(other, days=2)
    path = agent_config(tmp_path, test_pki, "node-c", ["127.0.0.1:7443"], tls={"ca": str(other / pki.CA_CERT)})
    code, out = check(capsys, path)
    assert code == 2 and "not issued by the CA" in out
