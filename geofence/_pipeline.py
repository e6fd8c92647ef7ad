"""A second thread for the output side of a scan (issue #5).

The scan has three stages per batch: read (split and parse), match, and output (report
rows, CSV/JSON formatting, file writes, SHA-256, summary counts). Reading already runs
its splitting in a read-ahead thread; this runs the output stage in another, so that on
two cores matching overlaps with formatting. pyarrow's CSV writer, file writes, hashlib
and most numpy work release the GIL, so the threads really run side by side.

Tasks run one at a time in submission order, so outputs are byte-identical to a serial
run. The queue is bounded: memory holds at most ``depth`` batches waiting for output.
An exception in the output thread is raised again in the caller at the next ``submit``
or at ``close``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

_STOP = object()


class OutputThread:
    """Run callables in order in one background thread.

    Parameters
    ----------
    depth : int
        Tasks allowed to wait; ``submit`` blocks beyond that (back-pressure).
    """

    def __init__(self, depth: int = 2) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="geofence-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            task = self._q.get()
            if task is _STOP:
                return
            if self._error is not None:
                continue  # drain without running: the caller will raise
            try:
                task()
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, task: Callable[[], None]) -> None:
        """Queue ``task``; raise the output thread's error if one happened."""
        self._raise()
        while True:
            try:
                self._q.put(task, timeout=0.1)
                return
            except queue.Full:
                # wake up now and then so that Ctrl-C is seen, and a failed writer too
                self._raise()

    def close(self, *, wait: bool = True) -> None:
        """Finish the queued tasks (or drop them when ``wait`` is False) and stop.

        Raises the output thread's error, if any, when ``wait`` is True.
        """
        if not self._thread.is_alive():
            return
        if not wait:
            self._error = self._error or _Abandoned()
        self._q.put(_STOP)
        self._thread.join()
        if wait:
            self._raise()

    def __enter__(self) -> OutputThread:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # on an error in the caller, pending output is dropped: the atomic outputs are
        # discarded anyway, and nothing half-written may be renamed into place
        self.close(wait=exc_type is None)


class _Abandoned(Exception):
    pass
