"""Atomic outputs (issue #6) with early write-back (issue #5)."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from geofence import atomic


def test_large_output_is_whole_hashed_and_handed_to_disk_early(tmp_path, monkeypatch):
    calls, waits, drops = [], [], []
    if atomic._SFR is not None:
        real = atomic._SFR
        real_advise = os.posix_fadvise

        def spy(fd, offset, nbytes, flags):
            (calls if flags == atomic._SYNC_FILE_RANGE_WRITE else waits).append((offset, nbytes))
            return real(fd, offset, nbytes, flags)

        def advise(fd, offset, nbytes, advice):
            drops.append((offset, nbytes, advice))
            return real_advise(fd, offset, nbytes, advice)

        monkeypatch.setattr(atomic, "_SFR", spy)
        monkeypatch.setattr(os, "posix_fadvise", advise)
    chunk = os.urandom(1 << 20)
    n = (atomic._WRITEBACK_BYTES >> 20) * 2 + 3
    target = tmp_path / "big.bin"
    with atomic.atomic_output(target) as w:
        for _ in range(n):
            w.write(chunk)
        assert not target.exists()  # only renamed into place when complete
    data = target.read_bytes()
    assert data == chunk * n
    assert w.size == len(data) and w.sha256 == hashlib.sha256(data).hexdigest()
    if atomic._SFR is None:
        pytest.skip("no sync_file_range here: nothing handed early")
    # consecutive ranges from the start, each at least the step
    assert len(calls) == 2 and calls[0][0] == 0 and calls[1][0] == calls[0][1]
    assert all(nb >= atomic._WRITEBACK_BYTES for _, nb in calls)
    # the window before the last one handed over is waited for, then leaves the cache
    assert waits == [calls[0]]
    assert drops == [(*calls[0], os.POSIX_FADV_DONTNEED)]


def test_failed_output_leaves_no_file(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic.atomic_output(target) as w:
        w.write(b"half")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_background_writer_gives_the_same_bytes_and_hash(tmp_path):
    chunks = [os.urandom(n) for n in (0, 1, 5000, 1 << 20, 333)] * 20
    out = {}
    for background in (False, True):
        target = tmp_path / f"out-{background}.bin"
        with atomic.atomic_output(target, background=background) as w:
            for c in chunks:
                w.write(c)
            w.write(bytearray(b"reused"))  # a buffer the caller may change afterwards
            out[background] = (w.sha256, w.size)
        assert target.read_bytes() == b"".join(chunks) + b"reused"
    assert out[True] == out[False]


@pytest.mark.parametrize("background", [False, True])
def test_output_without_digest_has_the_same_bytes_and_no_sha256(tmp_path, background):
    chunks = [os.urandom(n) for n in (1, 5000, 1 << 20)] * 3
    target = tmp_path / "out.bin"
    with atomic.atomic_output(target, background=background, digest=False) as w:
        for c in chunks:
            w.write(c)
    assert target.read_bytes() == b"".join(chunks)
    assert w.size == len(b"".join(chunks))
    with pytest.raises(ValueError, match="digest=False"):
        _ = w.sha256


def test_background_writer_error_reaches_the_caller_and_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    real = atomic._HashingWriter._commit

    def failing(self, data):
        if self._written > 3000:
            raise OSError(28, "No space left on device")
        real(self, data)

    monkeypatch.setattr(atomic._HashingWriter, "_commit", failing)
    with (
        pytest.raises(OSError, match="No space"),
        atomic.atomic_output(target, background=True) as w,
    ):
        for _ in range(100):
            w.write(b"x" * 1000)
    assert list(tmp_path.iterdir()) == []
    assert not any(t.name == "geofence-write" for t in threading.enumerate())
