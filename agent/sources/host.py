"""Host metrics through psutil, in the catalog's host fields and base units."""

from __future__ import annotations

import math
import os
import platform
import socket
import time

import psutil

from agent.records import HostInfo, Row
from protos.fields import CATALOG

_COLUMNS = {CATALOG[fid].name: i for i, fid in enumerate(CATALOG.host_ids)}


class HostSource:
    """Reads CPU, load, memory, swap, disk, network and uptime; each tick costs a few syscalls."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.field_ids: tuple[int, ...] = CATALOG.host_ids
        psutil.cpu_percent(interval=None)  # prime: the first call has no interval to measure

    def info(self, hostname: str | None = None) -> HostInfo:
        uname = platform.uname()
        return HostInfo(
            hostname=hostname or socket.gethostname(),
            kernel=uname.release,
            os=_os_name(),
            cpu_count=os.cpu_count() or 0,
            memory_total_bytes=psutil.virtual_memory().total,
        )

    def sample(self) -> Row:
        out = [math.nan] * len(self.field_ids)
        col = _COLUMNS

        def put(name: str, value: float) -> None:
            out[col[name]] = float(value)

        put("cpu_utilization", psutil.cpu_percent(interval=None) / 100.0)
        load1, load5, load15 = os.getloadavg()
        put("load1", load1)
        put("load5", load5)
        put("load15", load15)
        vm = psutil.virtual_memory()
        put("memory_used", vm.total - vm.available)
        put("memory_available", vm.available)
        put("memory_total", vm.total)
        swap = psutil.swap_memory()
        put("swap_used", swap.used)
        put("swap_total", swap.total)
        disk = psutil.disk_io_counters()
        if disk is not None:  # None in containers without /proc/diskstats
            put("disk_read", disk.read_bytes)
            put("disk_written", disk.write_bytes)
        rx = tx = rx_err = tx_err = 0
        for name, nic in psutil.net_io_counters(pernic=True).items():
            if name == "lo":
                continue
            rx += nic.bytes_recv
            tx += nic.bytes_sent
            rx_err += nic.errin
            tx_err += nic.errout
        put("network_receive", rx)
        put("network_transmit", tx)
        put("network_receive_errors", rx_err)
        put("network_transmit_errors", tx_err)
        put("uptime", time.time() - psutil.boot_time())
        try:
            fs = psutil.disk_usage(self.root)
            put("root_filesystem_used", fs.used)
            put("root_filesystem_size", fs.total)
        except OSError:
            pass  # stays NaN: not read this time
        return out


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()
