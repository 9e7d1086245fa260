"""The generic action: a configured executable, given the action and its alert as JSON on stdin,
under a timeout, with its exit status and output captured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collector.actions.config import CommandConfig

MAX_OUTPUT = 4096  # bytes of stdout/stderr kept in the action log


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_status: int | None  # None: killed at the timeout, or could not start
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def describe(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.exit_status is None:
            return f"could not start: {self.stderr}"
        return f"exit status {self.exit_status}" + (f": {self.stderr.strip()[-200:]}" if self.stderr.strip() else "")


def _cut(data: bytes) -> str:
    return data[-MAX_OUTPUT:].decode(errors="replace")


async def run_command(config: CommandConfig, payload: Mapping[str, Any]) -> CommandResult:
    """Run the command once; never raises for the command's own failure."""
    try:
        process = await asyncio.create_subprocess_exec(
            str(config.path),
            *config.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return CommandResult(None, "", str(exc))
    try:
        out, err = await asyncio.wait_for(
            process.communicate(json.dumps(dict(payload), sort_keys=True).encode()), config.timeout
        )
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: a child must not hold the pipes open
        out, err = await process.communicate()
        return CommandResult(None, _cut(out), _cut(err), timed_out=True)
    return CommandResult(process.returncode, _cut(out), _cut(err))
