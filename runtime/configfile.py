"""Reading TOML config files into typed dataclasses, with errors that name the file, key and problem."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A config file is unusable; the message names the file, the key and the problem."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {problem}")


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning I/O and syntax errors into a ConfigError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except PermissionError:
        raise ConfigError(path, "", "permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None


class Section:
    """Typed access to one table of a config file; tracks keys so unknown ones are refused."""

    def __init__(self, path: Path, prefix: str, data: Mapping[str, Any]) -> None:
        self.path = path
        self.prefix = prefix
        self.data = data
        self._seen: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self._key(key), problem)

    def get(self, key: str, kind: type[T], default: T) -> T:
        self._seen.add(key)
        if key not in self.data:
            return default
        return self._check(key, self.data[key], kind)

    def require(self, key: str, kind: type[T]) -> T:
        self._seen.add(key)
        if key not in self.data:
            raise self.error(key, "required key is missing")
        return self._check(key, self.data[key], kind)

    def _check(self, key: str, value: Any, kind: type[Any]) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is Path and isinstance(value, str):
            return Path(value)
        if kind is list and isinstance(value, list):
            return value
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value

    def positive(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if not value > 0:
            raise self.error(key, f"must be greater than 0, got {value}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def secret(self, key: str, env: Mapping[str, str] | None = None) -> str:
        """A secret from ``key``, or from the environment variable named by ``key_env``."""
        environ = os.environ if env is None else env
        env_key = f"{key}_env"
        self._seen.update({key, env_key})
        if env_key in self.data:
            var = self._check(env_key, self.data[env_key], str)
            if var not in environ:
                raise self.error(env_key, f"environment variable {var} is not set")
            return environ[var]
        return self._check(key, self.data.get(key, ""), str)

    def section(self, key: str) -> Section:
        self._seen.add(key)
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a table, got {type(value).__name__}")
        return Section(self.path, self._key(key), value)

    def sections(self, key: str) -> list[Section]:
        """An array of tables, e.g. ``[[receivers]]``."""
        self._seen.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.error(key, "expected an array of tables")
        return [Section(self.path, f"{self._key(key)}[{i}]", v) for i, v in enumerate(value)]

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


_AGENT_MARKS = ("collector", "host_id", "gpu", "sim", "backoff", "spool", "interval")
_COLLECTOR_MARKS = ("listen", "http_listen", "collector_id", "limits", "exposition", "alerting", "remote_write")


def infer_kind(path: Path) -> str:
    """Tell a rule file (its [[rule]] tables), an agent config and a collector config apart by the
    keys they use, then by the file name."""
    data = load_toml(path)
    if "rule" in data:
        return "rules"
    agent = sum(key in data for key in _AGENT_MARKS)
    collector = sum(key in data for key in _COLLECTOR_MARKS)
    if agent != collector:
        return "agent" if agent > collector else "collector"
    for kind in ("agent", "collector"):
        if kind in path.name:
            return kind
    raise ConfigError(path, "", "cannot tell an agent config from a collector config or rules; name the kind first")
