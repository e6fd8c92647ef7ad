"""Resident memory of the scan: hand freed memory back when it runs high (issue #5).

Freed blocks stay with the allocators (glibc malloc's arenas, Arrow's pool) for reuse.
With dense fences (100k sites, 8 matches per read) a scan's live data stays near 150 MB
above the engine, but what the allocators keep grew its resident size by ~225 MB more,
past the issue's 500 MB. Returning it on every batch instead cost 30 % of the speed at
10k sites (the pages are faulted in again), so it is done only above a target.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
import threading

import pyarrow as pa

MEMORY_TARGET_MB = 460
"""Resident size above which a scan hands freed memory back after a batch: the issue's
500 MB budget less room for the transients of one batch (issue #5). A dense scan (100k
sites) works in ~400-450 MB, so a lower target released after nearly every batch: with
400 MB, 235 releases per 10M reads and 11 s of system time re-faulting the pages (26.8 s
against 23.1 s without releasing, at 543 MB); 460 MB with 16k-read batches
(:data:`geofence.scan.BATCH_MATCHES`) gives 17-30 releases and a 463-476 MB peak (session 6)."""

HEADROOM_MB = 200
"""Growth over the resident size when the governor is made (at the start of each partition
of a scan) that also triggers a release.
At 10k sites the allocators' free blocks grew ~1 MB a batch (180 -> 400 MB over 10M
reads), so the 10M-read peak was 1.21x the 1M-read one (issue #5: at most 1.2x); with
the start + 200 MB (380 MB) it is 1.15x. 150 MB released after most batches: +1 s of
system time re-faulting the pages."""

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0


def resident_mb() -> float | None:
    """Resident set size of this process in MiB (None where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return None


def release() -> None:
    """Return the freed memory of Arrow's pool and of the C heap to the system."""
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class Governor:
    """Call :func:`release` when the resident size is above a target: ``target_mb``, or
    ``headroom_mb`` over the resident size when the governor is made, if that is less.

    Parameters
    ----------
    target_mb : float
    headroom_mb : float
    """

    def __init__(
        self, target_mb: float = MEMORY_TARGET_MB, headroom_mb: float = HEADROOM_MB
    ) -> None:
        start = resident_mb()
        self.target_mb = target_mb if start is None else min(target_mb, start + headroom_mb)
        self.releases = 0

    def check(self) -> None:
        """Release freed memory if the process holds more than the target."""
        rss = resident_mb()
        if rss is not None and rss > self.target_mb:
            release()
            self.releases += 1


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside the block (nestable, across threads).

    Building many small containers (a parsed JSON document, a record per camera) sets off
    full collections that walk every object already made: reading the 44.6k-camera file
    spent 0.1 s of its 0.23 s of record work there (issue #10). The objects made here hold
    no cycles worth collecting before the block ends, when the collector runs as before.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()
