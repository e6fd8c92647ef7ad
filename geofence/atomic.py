"""Outputs that appear whole or not at all (issue #6).

Every file geofence writes goes to a hidden temporary file beside its target and is
renamed into place only when complete, so a run killed at any point leaves no file at
the final path (a stale ``.NAME.partial-*`` file at most). ``-`` means standard output,
which is streamed as it is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from geofence.errors import GeofenceError

_WRITEBACK_BYTES = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start write-out of dirty pages, do not wait
_SYNC_FILE_RANGE_WAIT = 1 | 2 | 4  # wait for earlier write-out, write, wait for it


def _load_sync_file_range():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_SFR = _load_sync_file_range()


class _HashingWriter:
    """A binary writer that keeps the size, and unless ``digest=False`` the SHA-256, of what
    went through it.

    With ``writeback`` (a regular file), every 32 MiB written are handed to the disk
    without waiting (``sync_file_range``), so that the fsync that ends an atomic output
    has little left to do: it took 0.25 s at the end of a 665 MB report (issue #5).
    The 32 MiB before those, on disk by then, leave the page cache (``POSIX_FADV_DONTNEED``):
    a report streams through a few windows of memory instead of filling the cache, whose
    pages the kernel otherwise reclaimed from other files as the report grew. Writing
    2.3 GB took 4.7-6.0 s of system time on a machine whose memory was full of cached
    files, 0.8-0.9 s dropping behind; 1.0-1.3 vs 0.7 s with memory to spare (session 7).
    """

    def __init__(self, fh: BinaryIO, *, writeback: bool = False, digest: bool = True) -> None:
        self._fh = fh
        self._h = hashlib.sha256() if digest else None
        self.size = 0
        self._written = 0
        self._synced = 0 if writeback and _SFR is not None else None
        self._dropped = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self._commit(data)
        return len(data)

    def _commit(self, data: bytes) -> None:
        if self._h is not None:
            self._h.update(data)
        self._fh.write(data)
        self._written += len(data)
        if self._synced is not None and self._written - self._synced >= _WRITEBACK_BYTES:
            self._fh.flush()
            fd = self._fh.fileno()
            _SFR(fd, self._synced, self._written - self._synced, _SYNC_FILE_RANGE_WRITE)
            if self._synced > self._dropped:  # the window before: written out, then dropped
                _SFR(fd, self._dropped, self._synced - self._dropped, _SYNC_FILE_RANGE_WAIT)
                with contextlib.suppress(OSError):
                    os.posix_fadvise(
                        fd, self._dropped, self._synced - self._dropped, os.POSIX_FADV_DONTNEED
                    )
                self._dropped = self._synced
            self._synced = self._written

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        """Everything written has reached the file object (nothing to wait for here)."""

    def abort(self) -> None:
        """Stop writing (the output is being thrown away)."""

    @property
    def sha256(self) -> str:
        if self._h is None:
            raise ValueError("opened with digest=False: no SHA-256 was kept")
        return self._h.hexdigest()


class _BackgroundWriter(_HashingWriter):
    """A :class:`_HashingWriter` that hashes and writes in a thread of its own.

    With dense fences (100k sites) a scan's output thread, which formats the report, was
    the slower of the scan's two stages; hashing and writing its 2.3 GB (1.8 GB/s for
    SHA-256, plus the copy into the page cache) moved to this thread, which the matching
    stage's slack then pays for (issue #5). At most ``max_bytes`` wait; an error of the
    thread is raised by the next ``write``, ``flush`` or ``close``.
    """

    def __init__(
        self,
        fh: BinaryIO,
        *,
        writeback: bool = False,
        digest: bool = True,
        max_bytes: int = 64 << 20,
    ):
        super().__init__(fh, writeback=writeback, digest=digest)
        self._max_bytes = max_bytes
        self._waiting = 0
        self._error: BaseException | None = None
        self._stop = False
        self._cv = threading.Condition()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="geofence-write", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        if not isinstance(data, bytes):  # the caller may reuse a buffer it hands us
            data = bytes(data)
        with self._cv:
            while self._waiting > self._max_bytes and self._error is None:
                self._cv.wait()
            self._raise()
            self._waiting += len(data)
        self.size += len(data)
        self._q.put(data)
        return len(data)

    def _run(self) -> None:
        while (data := self._q.get()) is not None:
            try:
                if self._error is None and not self._stop:
                    self._commit(data)
            except BaseException as exc:  # handed to the writing thread
                self._error = exc
            with self._cv:
                self._waiting -= len(data)
                self._cv.notify_all()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        with self._cv:
            while self._waiting > 0 and self._error is None:
                self._cv.wait()
            self._raise()

    def flush(self) -> None:
        self._drain()
        self._fh.flush()

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        self._stop = True
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()

    @property
    def sha256(self) -> str:
        self._drain()
        return super().sha256


@contextlib.contextmanager
def hashed_writer(
    fh: BinaryIO, *, background: bool = False, writeback: bool = False, digest: bool = True
) -> Iterator[_HashingWriter]:
    """A writer over the open binary file ``fh`` (see :func:`atomic_output`): closed when
    the block ends, so everything written has reached ``fh``; abandoned if it raises."""
    w = (_BackgroundWriter if background else _HashingWriter)(
        fh, writeback=writeback, digest=digest
    )
    try:
        yield w
        w.close()
    except BaseException:
        w.abort()
        raise


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, *, background: bool = False, digest: bool = True
) -> Iterator[_HashingWriter]:
    """Open ``path`` for binary writing so that it appears only when complete.

    Parameters
    ----------
    path : str or path-like
        Target file, or ``"-"`` for standard output.
    background : bool, default False
        Hash and write in a thread of its own (large reports; standard output is always
        written in the caller's thread).
    digest : bool, default True
        Keep the SHA-256 of what is written (``sha256``). A scan's report and rejects keep
        none: nothing reads it, and it cost 0.46 CPU-s per 800 MB of report (#13).

    Yields
    ------
    writer
        Has ``write(bytes)``, and ``sha256`` and ``size`` of what was written.
    """
    if str(path) == "-":
        w = _HashingWriter(sys.stdout.buffer, digest=digest)
        yield w
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    except OSError as exc:
        raise GeofenceError(
            f"{target}: cannot write there ({exc.strerror}); choose another output path"
        ) from None
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            with hashed_writer(fh, background=background, writeback=True, digest=digest) as w:
                yield w
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
