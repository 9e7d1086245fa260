"""What README.md and docs/*.md show exists: repo paths, `gpulse` commands (with the real parser), TOML."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpulse.cli import build_parser
from tests.kit import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_REPO_PATH = re.compile(
    r"^(?:agent|collector|runtime|protos|gpulse|deploy|docs|systemd|scripts|bench|tests)/[\w./-]*$|^[A-Z]+\.md$"
)
# DIR, FILE, CA_DIR, NAME_OR_IP, 3f2a..., <host>: stand for a value the reader supplies.
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$|\.\.\.|<")


@dataclass(frozen=True)
class Shown:
    doc: Path
    text: str

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}: {self.text}"


def _split(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """A doc's inline code spans (outside fences) and its fenced blocks as (language, body)."""
    blocks = _FENCE.findall(text)
    prose = _FENCE.sub("", text)
    return re.findall(r"`([^`\n]+)`", prose), blocks


def _shown_commands() -> list[Shown]:
    found = []
    for doc in DOCS:
        spans, blocks = _split(doc.read_text())
        found += [Shown(doc, s) for s in spans if s.startswith("gpulse ")]
        for lang, body in blocks:
            if lang not in ("sh", ""):
                continue
            for line in body.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    command = re.sub(r"\s#.*$", "", part).strip()
                    command = re.sub(r"^\S*/(?=gpulse )", "", command)  # .venv/bin/gpulse, /opt/.../gpulse
                    if command.startswith("gpulse "):
                        found.append(Shown(doc, command))
    return found


def _shown_paths() -> list[Shown]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        spans, blocks = _split(text)
        words = [w for s in spans for w in s.split()]
        words += [w for lang, body in blocks if lang in ("sh", "") for w in body.split()]
        found += [Shown(doc, w.strip("\"'(),")) for w in words if _REPO_PATH.match(w.strip("\"'(),"))]
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _FENCE.sub("", text)):
            if not link.startswith(("http://", "https://", "mailto:")):
                found.append(Shown(doc, str((doc.parent / link).resolve().relative_to(ROOT))))
    return found


COMMANDS = _shown_commands()
PATHS = _shown_paths()


def test_the_docs_show_commands_and_paths() -> None:
    assert len(COMMANDS) > 30 and len(PATHS) > 20
    assert any(c.text == "gpulse demo" for c in COMMANDS)


@pytest.mark.parametrize("shown", PATHS, ids=str)
def test_each_path_shown_exists(shown: Shown) -> None:
    assert (ROOT / shown.text).exists(), f"{shown}: no such file in the repository"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("shown", COMMANDS, ids=str)
def test_each_command_shown_parses(shown: Shown) -> None:
    text = shown.text.replace("\\|", "|")
    words = shlex.split(text)[1:]
    root = build_parser()
    # The subcommands named (each of a|b|c alternatives) exist; the flags shown exist on the command.
    parser, rest = root, list(words)
    while rest and (subs := _subcommands(parser)):
        alternatives = rest[0].split("|")
        missing = [a for a in alternatives if a not in subs]
        if rest[0].startswith("-"):
            break
        assert not missing, f"{shown}: no command {missing} (have {sorted(subs)})"
        parser, rest = subs[alternatives[0]], rest[1:]
    for word in rest:
        flag = word.strip("[]").partition("=")[0]
        if flag.startswith("-"):
            assert flag in _options(parser), f"{shown}: {parser.prog} has no {flag}"
    # Without placeholders, the whole line is what a user would type: it must parse as it stands.
    literal = [w.strip("[]") for w in words if w not in ("[", "]")]
    if rest and not any(_PLACEHOLDER.search(w) or "|" in w for w in literal):
        try:
            args = root.parse_args(literal)
        except SystemExit as exit_:
            assert exit_.code == 0, f"{shown}: the parser refuses it"
        else:
            assert callable(args.func)


def _toml_blocks() -> list[tuple[Shown, str]]:
    return [
        (Shown(doc, f"toml block {i + 1}"), body)
        for doc in DOCS
        for i, (lang, body) in enumerate(b for b in _split(doc.read_text())[1] if b[0] == "toml")
    ]


@pytest.mark.parametrize(("shown", "body"), _toml_blocks(), ids=[str(s) for s, _ in _toml_blocks()])
def test_each_toml_example_parses(shown: Shown, body: str) -> None:
    try:
        tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{shown}: {exc}")
