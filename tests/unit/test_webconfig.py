from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest

from runtime.configfile import ConfigError
from runtime.webconfig import Passwords, parse, parse_basic


def test_unknown_keys_and_unverified_client_auth_are_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    with pytest.raises(ConfigError, match=r"web.yml: basic_auth_user: unknown or unsupported key"):
        parse(path, "basic_auth_user: {}\n")
    text = "tls_server_config:\n  cert_file: a.pem\n  key_file: a-key.pem\n  client_auth_type: RequireAnyClientCert\n"
    with pytest.raises(ConfigError, match="accepts unverified certificates"):
        parse(path, text)
    with pytest.raises(ConfigError, match=r"client_ca_file: required with client_auth_type"):
        parse(path, text.replace("RequireAnyClientCert", "RequireAndVerifyClientCert"))


def test_a_plain_password_is_refused_and_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"basic_auth_users.alice: expected a bcrypt hash") as caught:
        parse(tmp_path / "web.yml", "basic_auth_users:\n  alice: hunter2-plain\n")
    assert "hunter2" not in str(caught.value)


def test_passwords_check_bcrypt_and_remember_only_good_answers() -> None:
    users = {"alice": bcrypt.hashpw(b"right", bcrypt.gensalt(4))}
    passwords = Passwords()
    assert not passwords.check(users, "alice", "wrong")
    assert not passwords.check(users, "mallory", "right")
    assert not passwords.cached(users, "alice", "right")
    assert passwords.check(users, "alice", "right")
    assert passwords.cached(users, "alice", "right")
    # A changed hash (the password rotated) is not answered from the cache.
    assert not passwords.cached({"alice": bcrypt.hashpw(b"new", bcrypt.gensalt(4))}, "alice", "right")


def test_basic_headers_parse_or_are_refused() -> None:
    good = "Basic " + base64.b64encode(b"alice:pa:ss").decode()
    assert parse_basic(good) == ("alice", "pa:ss")
    assert parse_basic("Bearer abc") is None
    assert parse_basic("Basic not-base64!") is None
    assert parse_basic("Basic " + base64.b64encode(b"no-colon").decode()) is None
