"""Giving the C allocator's free memory back to the system after a burst.

A catch-up queues up to tens of thousands of decoded events per partition and fetches batches of
raw records (the Faust consumer thread allocates them in glibc arenas of its own). Once the
backlog is released that memory is free, but glibc keeps most of it mapped: measured on the
bench's many-room catch-up (600,000 events, 1,000 rooms), the worker's RSS was 200-202 MiB
while tracemalloc counted ~36 MiB of live objects allocated after start-up. ``malloc_trim(0)``
after the burst brought it to 159-172 MiB. A trim walks the heap (tens of ms on a few hundred
MiB), so it runs once per burst, not on a timer: the live path never pays it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["TrimAfterBurst", "malloc_trim", "rss_mib"]


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS)."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(fn(0))


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident set size of ``pid`` (this process by default) in MiB: ``VmRSS`` in
    ``/proc/PID/status``, what the kernel charges it (Linux; else None). The bench reads the
    worker's the same way."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return None


class TrimAfterBurst:
    """Decides when to trim: after the queued events reached ``min_burst`` (5,000 decoded events
    and their raw records: megabytes; a live worker queues tens to hundreds) and then fell to a
    tenth of their peak, at most once per ``min_interval_s``. Pure: the caller passes the
    queue's size and the time, and gets the burst's peak when it should trim now, else 0."""

    def __init__(self, min_burst: int = 5_000, min_interval_s: float = 30.0) -> None:
        self.min_burst, self.min_interval_s = min_burst, min_interval_s
        self.peak = 0
        self.last: float | None = None

    def due(self, queued: int, now: float) -> int:
        if queued > self.peak:
            self.peak = queued
        if self.peak < self.min_burst or queued * 10 > self.peak:
            return 0
        if self.last is not None and now - self.last < self.min_interval_s:
            return 0
        peak, self.peak, self.last = self.peak, queued, now
        return peak
