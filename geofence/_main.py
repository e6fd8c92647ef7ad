"""Entry point of the ``geofence`` script: Ctrl-C even during start-up is one line, 130."""

from __future__ import annotations

import contextlib
import os
import sys


def main() -> None:
    """Run the command line; heavy imports happen inside the interrupt guard."""
    # Arrow's buffers from jemalloc on Linux (its wheels ship it), else the C heap; not
    # Arrow's default mimalloc, which kept ~90 MB more at 100k sites. On glibc's heap
    # the scan's varying Arrow buffers fragmented it: 10k x 10M grew 245 -> 449 MB
    # unless handed back (geofence._memory), and the 14 hand-backs cost ~480k page
    # faults; jemalloc stays near 340 MB with none (issue #5, session 7). The variable
    # is read when pyarrow is imported, so it is set here. A user's choice stays.
    os.environ.setdefault(
        "ARROW_DEFAULT_MEMORY_POOL", "jemalloc" if sys.platform.startswith("linux") else "system"
    )
    # geofence makes no BLAS calls, but OpenBLAS's second thread spins for a while after
    # numpy loads it: 0.2 CPU-s of every run on two cores (measured with perf; issue #5).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        from geofence.cli import cli

        cli()
    except KeyboardInterrupt:
        # Outputs are already removed (their context managers ran while this unwound).
        # Leave now: once, in CI, an interrupt during the imports still ended the process
        # by the signal (-2) after this line, in the interpreter's finalisation (#6).
        # Threads left behind (a process pool's manager, whose workers were just
        # terminated) must not print after the one line: once one printed an OSError.
        import threading

        threading.excepthook = lambda args: None
        sys.stderr.write("geofence: interrupted\n")
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(130)
