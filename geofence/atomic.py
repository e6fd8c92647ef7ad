"""Outputs that appear whole or not at all (issue #6).

Every file geofence writes goes to a hidden temporary file beside its target and is
renamed into place only when complete, so a run killed at any point leaves no file at
the final path (a stale ``.NAME.partial-*`` file at most). ``-`` means standard output,
which is streamed as it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from geofence.errors import GeofenceError


class _HashingWriter:
    """A binary writer that also keeps the SHA-256 and size of what went through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._h.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    @property
    def sha256(self) -> str:
        return self._h.hexdigest()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[_HashingWriter]:
    """Open ``path`` for binary writing so that it appears only when complete.

    Parameters
    ----------
    path : str or path-like
        Target file, or ``"-"`` for standard output.

    Yields
    ------
    writer
        Has ``write(bytes)``, and ``sha256`` and ``size`` of what was written.
    """
    if str(path) == "-":
        w = _HashingWriter(sys.stdout.buffer)
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
            w = _HashingWriter(fh)
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
