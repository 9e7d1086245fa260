"""Every subcommand's --help ends with an example that parses, and every flag has help text."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator

import pytest

from gpulse.cli import build_parser


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` that runs something (has no further subcommands), with its path."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, (*path, name))


ALL = list(leaves(build_parser()))


def test_every_command_is_walked() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"agent", "top", "pki issue", "silence list", "sim-fault", "backtest"} <= names


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p))
def test_each_command_has_an_example_that_parses(path: tuple[str, ...]) -> None:
    parser = dict(ALL)[path]
    epilog = parser.epilog or ""
    examples = [line.removeprefix("example: ").strip() for line in epilog.splitlines() if line.startswith("example: ")]
    assert examples, f"gpulse {' '.join(path)} --help has no 'example: gpulse ...' line"
    for example in examples:
        argv = shlex.split(example)
        assert argv[0] == "gpulse" and tuple(argv[1 : 1 + len(path)]) == path, example
        args = build_parser().parse_args(argv[1:])
        assert callable(args.func)


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p))
def test_every_flag_and_argument_has_help(path: tuple[str, ...]) -> None:
    parser = dict(ALL)[path]
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert not missing, f"gpulse {' '.join(path)}: no help for {missing}"
