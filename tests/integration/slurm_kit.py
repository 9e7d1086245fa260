"""A real one-node Slurm cluster on loopback: munged, slurmctld and slurmd from Debian's slurm-wlm,
with a generated munge key, a tmp slurm.conf, and state and spool in a tmp directory."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.kit import free_port, wait_for

NODE = "gpu-node-1"


@dataclass
class SlurmCluster:
    conf: Path
    node: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, env=self.env, check=True, capture_output=True, text=True, timeout=30).stdout

    def state(self) -> tuple[str, str]:
        """(state, reason) as sinfo shows them, less the "*" of a node slurmctld has not heard from lately."""
        state, _, reason = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T|%E").strip().partition("|")
        return state.rstrip("*"), reason

    def show(self) -> str:
        return self.run("scontrol", "show", "node", self.node)


def _conf(root: Path, ctld_port: int, slurmd_port: int) -> str:
    return f"""
ClusterName=gpulsetest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/linear
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName={NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN
PartitionName=gpu Nodes={NODE} Default=YES State=UP
"""


@contextmanager
def slurm_cluster(root: Path) -> Iterator[SlurmCluster]:
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, timeout=30)
    subprocess.run(
        [
            "munged",
            "--force",  # pytest's tmp directories are private (0700); munged wants world-searchable ones
            f"--key-file={key}",
            f"--socket={root}/munge/munge.socket",
            f"--pid-file={root}/munge/munged.pid",
            f"--log-file={root}/munge/munged.log",
            f"--seed-file={root}/munge/munged.seed",
        ],
        check=True,
        timeout=30,
    )
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, free_port(), free_port()))
    cluster = SlurmCluster(conf, NODE)
    log = (root / "daemons.out").open("wb")
    daemons = [
        subprocess.Popen(["slurmctld", "-D", "-i"], env=cluster.env, stdout=log, stderr=log),
        subprocess.Popen(["slurmd", "-D", "-N", NODE], env=cluster.env, stdout=log, stderr=log),
    ]
    try:

        def idle() -> bool:
            try:
                return cluster.state()[0] == "idle"
            except subprocess.SubprocessError:
                return False

        try:
            wait_for(idle, timeout=60, interval=0.5, what="the Slurm node to come up idle")
        except AssertionError:
            logs = "".join(p.read_text() for p in root.glob("*.log"))
            raise AssertionError(f"Slurm did not come up; logs:\n{logs[-4000:]}") from None
        yield cluster
    finally:
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(5)
        pid = root / "munge" / "munged.pid"
        if pid.exists():
            os.kill(int(pid.read_text().strip()), 15)
            time.sleep(0.1)
        log.close()
