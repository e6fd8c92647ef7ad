"""The scan's memory governor (issue #5): hands freed memory back only above its target."""

from __future__ import annotations

import pytest

from geofence import _memory


def test_resident_size_is_read():
    rss = _memory.resident_mb()
    if rss is None:
        pytest.skip("no /proc/self/statm here")
    assert 5 < rss < 100_000


def test_governor_releases_only_above_its_target(monkeypatch):
    if _memory.resident_mb() is None:
        pytest.skip("no /proc/self/statm here")
    calls = []
    monkeypatch.setattr(_memory, "release", lambda: calls.append(1))
    high = _memory.Governor(target_mb=10**9, headroom_mb=10**9)
    high.check()
    assert calls == [] and high.releases == 0
    # the target is the start's resident size plus the headroom, when that is less
    near = _memory.Governor(target_mb=10**9, headroom_mb=50)
    assert near.target_mb < 10**9 and abs(near.target_mb - (_memory.resident_mb() + 50)) < 20
    low = _memory.Governor(target_mb=1)
    low.check()
    low.check()
    assert calls == [1, 1] and low.releases == 2


def test_release_runs():
    _memory.release()  # Arrow's pool and malloc_trim: must not raise on any platform


def test_gc_paused_nests_across_threads_and_restores_the_collector():
    import gc
    import threading

    from geofence._memory import gc_paused

    assert gc.isenabled()
    inner_started, outer_may_end = threading.Event(), threading.Event()
    seen = []

    def other():
        with gc_paused():
            inner_started.set()
            outer_may_end.wait(5)
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())

    with gc_paused():
        assert not gc.isenabled()
        t = threading.Thread(target=other)
        t.start()
        inner_started.wait(5)
    assert not gc.isenabled()  # the other thread's pause still holds
    outer_may_end.set()
    t.join(5)
    assert seen == [False, True] and gc.isenabled()
    gc.disable()
    try:  # a collector the caller turned off stays off
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()
