"""Giving start-up's freed heap back: the glibc call, and when the agent makes it."""

from __future__ import annotations

import asyncio
import ctypes
import platform
from pathlib import Path

import pytest

from runtime.heap import release_after_start, release_free_memory


class Releases:
    """A stand-in for malloc_trim that records when it was called."""

    def __init__(self) -> None:
        self.at: list[float] = []

    def __call__(self) -> bool:
        self.at.append(asyncio.get_running_loop().time())
        return True


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_free_memory_calls_malloc_trim_on_glibc() -> None:
    assert hasattr(ctypes.CDLL(None), "malloc_trim")
    assert release_free_memory() is True


def resident_bytes() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_returns_pages_that_free_alone_keeps() -> None:
    # Start-up's pattern: many small blocks freed while one allocated later still sits above them, so
    # the heap cannot shrink from the top and free() keeps every page resident.
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 4096, 8192  # 32 MiB below the mmap threshold: served from the heap
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # make the pages resident
    pin = libc.malloc(size)
    for block in blocks:
        libc.free(block)
    before = resident_bytes()
    assert release_free_memory() is True
    after = resident_bytes()
    libc.free(pin)
    assert before - after > 16 * 1024 * 1024


def test_release_waits_for_start_then_settles_then_releases_once() -> None:
    releases = Releases()

    async def scenario() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(release_after_start(started, give_up_after=30.0, settle=0.05, release=releases))
        await asyncio.sleep(0.1)
        assert releases.at == []  # not while start-up goes on
        set_at = asyncio.get_running_loop().time()
        started.set()
        assert await task is True
        assert len(releases.at) == 1
        assert releases.at[0] >= set_at + 0.05

    asyncio.run(scenario())


def test_release_happens_even_when_start_never_completes() -> None:
    releases = Releases()
    assert asyncio.run(release_after_start(asyncio.Event(), give_up_after=0.05, release=releases)) is True
    assert len(releases.at) == 1


def test_stopping_before_start_releases_nothing() -> None:
    releases = Releases()

    async def scenario() -> None:
        task = asyncio.create_task(release_after_start(asyncio.Event(), give_up_after=30.0, release=releases))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert releases.at == []
