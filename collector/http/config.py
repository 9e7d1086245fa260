"""The collector's ``[web]`` section: the web config file (TLS, users), roles and listener limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from runtime.configfile import Section
from runtime.listener import ListenerLimits
from runtime.webconfig import WebConfig
from runtime.webconfig import load as load_web_config


@dataclass(frozen=True, slots=True)
class WebSettings:
    config_file: Path | None = None  # exporter-toolkit web config: TLS and basic_auth_users
    # Users (basic-auth names or client-certificate CNs) with the write role; None: every
    # authenticated user may write. Everyone who authenticates may read.
    writers: frozenset[str] | None = None
    read_only: bool = False  # refuse every write (silences, alert pushes), whoever asks
    limits: ListenerLimits = field(default_factory=ListenerLimits)


def parse_web(section: Section, http_listen: str) -> WebSettings:
    """Read ``[web]``; refuses a listener beyond loopback that would take writes from anyone."""
    config_file = section.get("config_file", Path, Path()) if "config_file" in section.data else None
    writers_list = section.get("writers", list, []) if "writers" in section.data else None
    if writers_list is not None and not all(isinstance(w, str) and w for w in writers_list):
        raise section.error("writers", "must be a list of user names")
    limits = ListenerLimits(
        max_connections=section.get("max_connections", int, 512),
        header_timeout=section.positive("header_timeout", 10.0),
        idle_timeout=section.positive("idle_timeout", 30.0),
    )
    if limits.max_connections < 1:
        raise section.error("max_connections", f"must be at least 1, got {limits.max_connections}")
    settings = WebSettings(
        config_file=config_file,
        writers=frozenset(writers_list) if writers_list is not None else None,
        read_only=section.get("read_only", bool, False),
        limits=limits,
    )
    section.finish()
    web = load_web_config(config_file) if config_file is not None else WebConfig()
    if not settings.read_only and not web.has_credentials and not is_loopback(http_listen):
        raise section.error(
            "config_file" if config_file else "read_only",
            f"http_listen {http_listen} is reachable beyond this host and the API would accept silences and "
            "alerts from anyone: name a web config file with basic_auth_users (or client_auth_type "
            "RequireAndVerifyClientCert), set read_only = true, or listen on 127.0.0.1",
        )
    return settings


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as reachable
