"""Slurm drain and resume through ``scontrol``; the node's state read back through ``sinfo``.

The drain reason is the lock: gpulse writes ``gpulse: <alert> <gpu> <evidence> [id]`` and resumes a
node only while its reason is still that. A drain an operator set (any other reason) is never undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from collector.actions.config import SlurmConfig

PREFIX = "gpulse:"


class SlurmError(Exception):
    """scontrol or sinfo failed; the message carries its output."""


@dataclass(frozen=True, slots=True)
class NodeState:
    state: str  # sinfo's %T, e.g. idle, drained, draining, mixed
    reason: str  # sinfo's %E; "none" when there is none

    @property
    def drained(self) -> bool:
        return "drain" in self.state  # drained, draining, drained*

    @property
    def ours(self) -> bool:
        return self.drained and self.reason.startswith(PREFIX)


class Slurm:
    def __init__(self, config: SlurmConfig) -> None:
        self.config = config
        self._env = {**os.environ, **({"SLURM_CONF": str(config.conf)} if config.conf else {})}

    async def _run(self, *argv: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self._env
            )
        except OSError as exc:
            raise SlurmError(f"{argv[0]}: {exc}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.config.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.communicate()
            raise SlurmError(f"{' '.join(argv[:3])}: no answer in {self.config.timeout:g}s") from None
        if process.returncode != 0:
            text = (err or out).decode(errors="replace").strip()
            raise SlurmError(f"{' '.join(argv[:3])} exited {process.returncode}: {text}")
        return out.decode(errors="replace")

    async def state(self, node: str) -> NodeState:
        out = await self._run(self.config.sinfo, "-h", "-N", "-n", node, "-o", "%T|%E")
        line = next((ln for ln in out.splitlines() if ln.strip()), "")
        if not line:
            raise SlurmError(f"sinfo knows no node {node!r}")
        state, _, reason = line.partition("|")
        return NodeState(state.strip().lower(), reason.strip())

    async def drain(self, node: str, reason: str) -> None:
        await self._run(self.config.scontrol, "update", f"nodename={node}", "state=drain", f"reason={reason}")
        if self.config.running_jobs == "requeue":
            jobs = await self._run("squeue", "-h", "-w", node, "-o", "%A")
            ids = ",".join(j.strip() for j in jobs.split() if j.strip())
            if ids:
                await self._run(self.config.scontrol, "requeue", ids)

    async def resume(self, node: str) -> None:
        await self._run(self.config.scontrol, "update", f"nodename={node}", "state=resume")


def drain_reason(alertname: str, gpu: str, evidence: str, action_id: str) -> str:
    """``gpulse: GpuXidRebootRequired gpu 3 xid 79 [id 1a2b3c4d]``, one line, at most 200 characters."""
    where = f"gpu {gpu}" if gpu else "host"
    text = " ".join(f"{PREFIX} {alertname} {where} {evidence}".split())
    tail = f" [id {action_id}]"
    return text[: 200 - len(tail)] + tail
