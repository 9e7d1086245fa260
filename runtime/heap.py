"""Giving the C heap's free pages back to the kernel once a long-running service has started.

Start-up (imports, config, TLS setup, opening the GPU backend) allocates and frees a lot of small
blocks. glibc keeps the freed pages mapped in its heap, where fragmentation stops them from being
returned by the usual top-of-heap trimming, so a daemon that never needs them again carries them
in its resident memory for life. ``malloc_trim(0)`` hands every wholly free page back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
from collections.abc import Callable

import structlog

log = structlog.get_logger("gpulse.heap")


def release_free_memory() -> bool:
    """Return the heap's free pages to the kernel; False where the C library has no malloc_trim."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc is already loaded
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


async def release_after_start(
    started: asyncio.Event,
    *,
    give_up_after: float,
    settle: float = 0.0,
    release: Callable[[], bool] = release_free_memory,
) -> bool:
    """Once ``started`` is set (or ``give_up_after`` seconds passed without it), wait ``settle`` s and release."""
    # Without ``started`` start-up is over all the same: a service that cannot connect keeps no waste either.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(started.wait(), give_up_after)
    await asyncio.sleep(settle)
    released = release()
    log.debug("released free heap pages after start-up", released=released)
    return released
