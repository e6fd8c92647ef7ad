"""Scale-out: a scan's partitions on worker processes or a Dask cluster (issue #13).

An audit is evidence only if the distributed answer is exactly the local one, so the
engines differ only in *where* :func:`geofence.scan.scan_partition` runs:

::

    client                                         worker process (once per process)
    ──────                                         ─────────────────────────────────
    layers, policy loaded and validated  ──blob + SHA-256──►  engine built, counted
    plan: inputs expanded, partitioned
    one task per partition  ───────────────────────────────►  run_partition:
                                                               scan_partition (the scan's
                                                               own loop, fragment writers)
                                                               → staging: part-N.report,
                                                                 part-N.rejects (temp file
                                                                 + rename, or one PUT)
    results, any order  ◄──────────── counts, full counters, fragment SHA-256s, versions
    in partition order: re-hash each fragment while appending it to the final
    (temporary) outputs; check in = clean + flagged + rejected per partition and in
    total; merge counters; rename outputs only when every partition succeeded;
    staging removed whatever happens.

``processes`` uses :class:`concurrent.futures.ProcessPoolExecutor` (spawned processes,
the site table handed over once per process by the initializer); ``dask`` uses
``dask.distributed`` (a local cluster of single-threaded worker processes, or a running
scheduler), imported only here and only then. The core never imports dask or fsspec.

Failures: a lost worker's partitions run again (Dask reschedules them; a broken process
pool is restarted); object-store errors are retried ``retries`` times inside the task;
bad input is not retried. Whatever fails, no file appears at a final path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geofence.atomic import hashed_writer  # the writers atomic_output hands out
from geofence.errors import GeofenceError, UsageError
from geofence.plan import Partition, ScanPlan, TransientIOError, is_url, transient

log = logging.getLogger("geofence")

VERSIONED = ("geofence", "shapely", "GEOS", "pyproj", "PROJ", "numpy", "pyarrow")
"""Libraries whose versions must agree between client and workers: they decide parsing
(pyarrow), arithmetic (numpy, GEOS/shapely, PROJ/pyproj) and the scan itself."""

LOST_POOL_LIMIT = 3
"""Times a process pool may break (a worker killed) before the run gives up; Dask's own
``distributed.scheduler.allowed-failures`` (default 3) plays this part for a task."""

_COPY_CHUNK = 4 << 20


class NonDeterministicPartition(GeofenceError):
    """Raised when two runs of one partition gave different bytes or counts."""


class SiteTableMismatch(GeofenceError):
    """Raised when a worker's site table does not have the SHA-256 the client planned with."""


# --------------------------------------------------------------------------------------
# Versions


def versions() -> dict[str, str]:
    """Versions of the libraries in :data:`VERSIONED` in this process."""
    import numpy
    import pyarrow
    import pyproj
    import shapely

    from geofence._version import __version__

    return {
        "geofence": __version__,
        "shapely": shapely.__version__,
        "GEOS": shapely.geos_version_string,
        "pyproj": pyproj.__version__,
        "PROJ": pyproj.proj_version_str,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
    }


def check_versions(mine: Mapping[str, str], worker: str, theirs: Mapping[str, str]) -> None:
    """Raise a one-line error when a worker's versions differ from the client's.

    Raises
    ------
    GeofenceError
        Naming the worker, the library and both versions.
    """
    diff = [
        f"{k} {theirs.get(k, 'missing')} (client {mine[k]})"
        for k in VERSIONED
        if theirs.get(k) != mine[k]
    ]
    if diff:
        raise GeofenceError(
            f"worker {worker} runs {', '.join(diff)}: every worker needs the client's "
            "geofence, shapely/GEOS, pyproj/PROJ, numpy and pyarrow versions; reinstall it"
        )


# --------------------------------------------------------------------------------------
# What travels to the workers


def make_payload(sites, policy, setup, pseudonymize_key: bytes | None) -> tuple[bytes, str]:
    """The site table, policy and run options as one blob, and its SHA-256.

    Workers build their engine from it once per process and check it against the SHA-256
    the client planned with; the key of ``--pseudonymize-plates`` travels inside it.
    """
    payload = {
        "sites": sites,
        "policy": policy,
        "positions": setup.positions,
        "columns": dict(setup.columns or {}),
        "timezone": setup.timezone,
        "batch_size": setup.batch_size,
        "limits": dict(setup.limits or {}),
        "profile": setup.profile,
        "pseudonymize_key": pseudonymize_key,
    }
    blob = pickle.dumps(payload, protocol=5)
    return blob, hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Task:
    """One partition's work order: no side effects but its fragments in ``staging``."""

    part: Partition
    sha256: str
    staging: str
    fmt: str | None  # report format, None: no report
    rejects: bool
    storage_options: Mapping[str, object] = field(default_factory=dict)
    retries: int = 2


@dataclass(frozen=True)
class Fragment:
    """One output fragment in staging: where, its SHA-256 and size, the header it kept."""

    url: str
    sha256: str
    size: int
    header: bytes | None


@dataclass
class PartitionResult:
    """What a task returns: everything the client merges, nothing else."""

    index: int
    scan: object  # geofence.scan.PartitionScan
    report: Fragment | None
    rejects: Fragment | None
    worker: dict
    attempts: int
    seconds: float

    def identity(self) -> tuple:
        """What two runs of the same partition must agree on."""
        s = self.scan.summary
        return (
            None
            if self.report is None
            else (self.report.sha256, self.report.size, self.report.header),
            None
            if self.rejects is None
            else (self.rejects.sha256, self.rejects.size, self.rejects.header),
            (s.reads_in, s.reads_clean, s.reads_flagged, s.reads_rejected),
        )


# --------------------------------------------------------------------------------------
# Worker side

_SETUPS: dict[str, object] = {}  # site-table SHA-256 -> ScanSetup, this process
_BLOBS: dict[str, bytes] = {}  # handed over by the process pool's initializer
ENGINE_BUILDS: dict[str, int] = {}
"""Engines built in this process, per site-table SHA-256 (once per process is the aim)."""
_KEEP = 2  # setups kept per process: a persistent cluster may serve a few tables in turn
_BUILD_LOCK = threading.Lock()  # a worker started with --nthreads > 1 still builds once


def _install(sha256: str, blob: bytes) -> None:
    """Process-pool initializer: keep the blob; Ctrl-C is the client's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _BLOBS[sha256] = blob


def _setup_for(sha256: str, blob: bytes | None):
    """The :class:`~geofence.scan.ScanSetup` of a site table, built once per process."""
    with _BUILD_LOCK:
        setup = _SETUPS.get(sha256)
        return setup if setup is not None else _build_setup(sha256, blob)


def _build_setup(sha256: str, blob: bytes | None):
    from geofence.engine import Engine
    from geofence.report import PlatePseudonymizer
    from geofence.scan import Labeller, ScanSetup

    blob = blob if blob is not None else _BLOBS.get(sha256)
    if blob is None:
        raise SiteTableMismatch(
            f"this worker has no site table with sha256 {sha256[:12]}…; rerun the scan"
        )
    got = hashlib.sha256(blob).hexdigest()
    if got != sha256:
        raise SiteTableMismatch(
            f"the site table a worker received has sha256 {got[:12]}…, not {sha256[:12]}… as planned: "
            "the layers changed after planning or the transfer was damaged; rerun the scan"
        )
    p = pickle.loads(blob)
    engine = Engine(p["sites"], p["policy"])
    key = p["pseudonymize_key"]
    setup = ScanSetup(
        engine,
        Labeller(engine, PlatePseudonymizer(key) if key else None),
        p["positions"],
        p["columns"] or None,
        p["timezone"],
        p["batch_size"],
        p["limits"] or None,
        p["profile"],
    )
    ENGINE_BUILDS[sha256] = ENGINE_BUILDS.get(sha256, 0) + 1
    while len(_SETUPS) >= _KEEP:
        _SETUPS.pop(next(iter(_SETUPS)))
    _SETUPS[sha256] = setup
    return setup


def run_partition(task: Task, blob: bytes | None = None) -> PartitionResult:
    """Scan one partition into fragments in staging; the one per-partition function.

    Streams the partition through :func:`geofence.scan.scan_partition` (the loop of
    every engine) with fragment writers, checks its counts in, renames (or PUTs) its
    fragments into staging and returns counts, full counters, the fragments' SHA-256s
    and this worker's facts. Object-store errors are retried ``task.retries`` times;
    errors of the input itself (:class:`GeofenceError`) are not.

    Parameters
    ----------
    task : Task
    blob : bytes, optional
        The site table (:func:`make_payload`); ``None`` when this process already has it.
    """
    started = time.perf_counter()
    setup = _setup_for(task.sha256, blob)
    attempt = 0
    while True:
        attempt += 1
        try:
            report, rejects, scan = _attempt(task, setup)
            break
        except TransientIOError as exc:
            if attempt > task.retries:
                raise GeofenceError(
                    f"{task.part.input.name}: object store failed {attempt} times ({exc}); "
                    "check the network and credentials, or raise --retries"
                ) from None
            log.info(
                "partition %d: %s; retrying (%d of %d)", task.part.index, exc, attempt, task.retries
            )
            time.sleep(min(0.5 * 2**attempt, 10.0))
    return PartitionResult(
        task.part.index,
        scan,
        report,
        rejects,
        {
            "name": f"{socket.gethostname()}:{os.getpid()}",
            "engine_builds": ENGINE_BUILDS.get(task.sha256, 0),
            "versions": versions(),
        },
        attempt,
        time.perf_counter() - started,
    )


def _attempt(task: Task, setup):
    from geofence._pipeline import OutputThread
    from geofence.report import WRITERS
    from geofence.scan import RejectsWriter, check_in, scan_partition

    i = task.part.index
    frags: dict[str, Fragment] = {}
    with contextlib.ExitStack() as stack:
        writer = rej = None
        if task.fmt is not None:
            fh = stack.enter_context(_fragment_output(task, f"part-{i:06d}.report", frags))
            writer = WRITERS[task.fmt](fh, fragment=True)
        if task.rejects:
            fh = stack.enter_context(_fragment_output(task, f"part-{i:06d}.rejects", frags))
            rej = RejectsWriter(fh, fragment=True)
        with OutputThread() as outq:
            scan = scan_partition(
                task.part,
                setup,
                outq,
                storage_options=task.storage_options,
                writer=writer,
                rejects=rej,
            )
            outq.close()
        check_in(task.part, scan)
        headers = {
            "report": writer.header if writer else None,
            "rejects": rej.header if rej else None,
        }
    report = frags.get("report")
    rejects = frags.get("rejects")
    if report is not None:
        report = Fragment(report.url, report.sha256, report.size, headers["report"])
    if rejects is not None:
        rejects = Fragment(rejects.url, rejects.sha256, rejects.size, headers["rejects"])
    return report, rejects, scan


@contextlib.contextmanager
def _fragment_output(task: Task, name: str, frags: dict):
    """A fragment file in staging: temp file + atomic rename, or one PUT to a store."""
    kind = name.rsplit(".", 1)[1]
    url = f"{task.staging.rstrip('/')}/{name}"
    # Hashed and written in a thread beside the output stage, the scan's slower one: a
    # task's output ends with its partition, with no next file to hide it behind (#13).
    hashed = functools.partial(hashed_writer, background=True)
    if not is_url(task.staging):
        # temp file + rename, without atomic_output's fsync: a fragment lives for one run,
        # and what a crash loses is rerun anyway; the rename makes it appear only whole
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.partial-", dir=task.staging)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as raw, hashed(raw) as fh:
                yield fh
            os.replace(tmp, url)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        frags[kind] = Fragment(url, fh.sha256, fh.size, None)
        return

    with tempfile.TemporaryFile() as tmp:
        with hashed(tmp) as fh:
            yield fh
        tmp.flush()
        tmp.seek(0)
        fs, path = _fs(url, task.storage_options)
        try:
            with fs.open(path, "wb") as dst:  # one PUT below the store's part size
                shutil.copyfileobj(tmp, dst, _COPY_CHUNK)
        except Exception as exc:
            raise transient(exc, url) from exc
    frags[kind] = Fragment(url, fh.sha256, fh.size, None)


def _fs(url: str, storage_options):
    from geofence.plan import _fs_paths

    return _fs_paths(url, storage_options or {})


def warm_imports() -> None:
    """Import what a task needs: the scan's modules and GeoPandas, the site table's type.

    A failure is left to the first task, which imports the same and reports it as a
    failed partition; here it would only be a thread's traceback in the worker's log.
    """
    try:
        import geopandas  # noqa: F401

        import geofence.engine
        import geofence.report
        import geofence.scan  # noqa: F401
    except Exception as exc:  # pragma: no cover - a broken install; the task says so
        log.debug("warm imports failed: %s", exc)


def dask_setup(worker) -> None:
    """Dask's preload hook (``dask worker ADDRESS --preload geofence.distributed``).

    A fresh worker process spends ~0.35 s importing the scan, and ~0.3 s more unpickling
    the site table, which imports GeoPandas. The cluster ``scan`` starts preloads this
    module, so the imports run in a thread while the worker registers and the client
    loads the layers, instead of at the start of the first task (#13).
    """
    threading.Thread(target=warm_imports, name="geofence-warm", daemon=True).start()


def worker_facts() -> dict:
    """This process's versions and engine builds (``client.run`` on every Dask worker)."""
    return {"versions": versions(), "engine_builds": dict(ENGINE_BUILDS), "pid": os.getpid()}


# --------------------------------------------------------------------------------------
# Client side: the engines


@dataclass
class Cluster:
    """Where partitions run: ``processes`` or ``dask``, and how many workers.

    Parameters
    ----------
    kind : {"processes", "dask"}
    jobs : int, optional
        Processes of ``processes`` (default the CPU count).
    workers : int, optional
        Worker processes of a local Dask cluster (default the CPU count).
    scheduler : str, optional
        Address of a running Dask scheduler; then ``workers`` is not used.
    retries : int
        Object-store retries per partition.
    connect_timeout_s : float, optional
        How long to try reaching the scheduler; default Dask's
        ``distributed.comm.timeouts.connect`` (30 s; ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT``).
    """

    kind: str
    jobs: int | None = None
    workers: int | None = None
    scheduler: str | None = None
    retries: int = 2
    connect_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("processes", "dask"):
            raise UsageError(f"unknown engine {self.kind!r}: use processes or dask")
        self._dask: _DaskConnection | None = None

    def __enter__(self) -> Cluster:
        """Start connecting now: a local Dask cluster starts while the client loads layers."""
        if self.kind == "dask":
            self._dask = _DaskConnection(self)
        return self

    def __exit__(self, *exc) -> None:
        if self._dask is not None:
            self._dask.close()
            self._dask = None

    def runner(self, blob: bytes, sha256: str):
        """A context manager running tasks: ``results(tasks)`` yields PartitionResults."""
        if self.kind == "processes":
            return _ProcessRunner(self.jobs or os.cpu_count() or 1, blob, sha256)
        if self._dask is None:
            raise UsageError("a dask Cluster is used inside `with Cluster(...)`")
        return _DaskRunner(self._dask, blob, sha256)


class _ProcessRunner:
    """Spawned worker processes; each receives the site table once, at start."""

    def __init__(self, jobs: int, blob: bytes, sha256: str) -> None:
        self.jobs, self.blob, self.sha256 = jobs, blob, sha256
        self.pool = None
        self.workers_seen: set[str] = set()

    def __enter__(self) -> _ProcessRunner:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop(kill=exc_type is not None)

    def _start(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the client already runs threads (reader, Arrow pools), and a
        # forked child would inherit their locks
        self.pool = ProcessPoolExecutor(
            self.jobs,
            mp_context=mp.get_context("spawn"),
            initializer=_install,
            initargs=(self.sha256, self.blob),
        )

    def _stop(self, *, kill: bool) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if kill:
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    p.terminate()
        pool.shutdown(wait=not kill, cancel_futures=True)

    def facts(self) -> dict:
        return {"engine": "processes", "workers": self.jobs}

    def results(self, tasks: list[Task]) -> Iterator[PartitionResult]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        todo = {t.part.index: t for t in tasks}
        breaks = 0
        finished = 0
        while todo:
            if self.pool is None:
                self._start()
            futs = {self.pool.submit(run_partition, t): i for i, t in todo.items()}
            broken = False
            while futs:
                done, _ = wait(futs, timeout=0.2, return_when=FIRST_COMPLETED)  # Ctrl-C wakes us
                for f in done:
                    i = futs.pop(f)
                    try:
                        res = f.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    del todo[i]
                    finished += 1
                    yield res
            if broken:
                breaks += 1
                self._stop(kill=True)
                if breaks > LOST_POOL_LIMIT:
                    hint = "check memory (dmesg) or lower --jobs"
                    if not finished:  # spawned children import the caller's main module
                        hint = (
                            "a script calling run_scan(engine='processes') needs `if __name__ == '__main__':`; else "
                            + hint
                        )
                    raise GeofenceError(
                        f"worker processes died {breaks} times (last with partitions {sorted(todo)[:5]} unfinished); {hint}"
                    )
                log.warning("a worker process died; rerunning %d partition(s)", len(todo))


class _DaskConnection:
    """A Dask client: to a running scheduler, or to a local cluster started for the run.

    Connecting (and starting a local cluster's worker processes, seconds) happens in a
    thread from the moment the run starts, while the client loads layers; :meth:`client`
    waits for it and raises what it raised.
    """

    def __init__(self, conf: Cluster) -> None:
        import importlib.util

        # found here, imported in the thread: the import (0.2 s) overlaps the layers' load
        if importlib.util.find_spec("distributed") is None:
            raise UsageError("--engine dask needs dask.distributed: pip install 'geofence[dask]'")
        self.conf = conf
        self._client = self._cluster = None
        self._error: BaseException | None = None
        # the cluster's own chatter (INFO by dask's config) stays off our stderr unless -vv
        # (its loggers, e.g. distributed.client, carry levels of their own from dask's config)
        self._quiet = not log.isEnabledFor(logging.DEBUG)
        self._levels: dict[str, int] = {}  # set by the thread, once dask has made its loggers
        self._thread = threading.Thread(
            target=self._connect, name="geofence-dask-start", daemon=True
        )
        self._thread.start()

    def _connect(self) -> None:
        c = self.conf
        try:
            from distributed import Client, LocalCluster

            names = ["distributed"] + [
                n for n in logging.root.manager.loggerDict if n.startswith("distributed.")
            ]
            self._levels = {n: logging.getLogger(n).level for n in names}
            if self._quiet:
                for n in names:
                    logging.getLogger(n).setLevel(logging.CRITICAL)
            if c.scheduler is not None:
                kw = {} if c.connect_timeout_s is None else {"timeout": c.connect_timeout_s}
                try:
                    self._client = Client(c.scheduler, set_as_default=False, **kw)
                except (OSError, TimeoutError) as exc:
                    raise GeofenceError(
                        f"cannot reach the Dask scheduler at {c.scheduler} ({type(exc).__name__}: {exc}); "
                        "start one with `dask scheduler` and workers with `dask worker ADDRESS`"
                    ) from None
            else:
                import warnings

                import dask

                # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536 and
                # OMP_NUM_THREADS=1 (distributed.nanny.pre-spawn-environ). The first makes
                # glibc hand memory back after every large free, and tasks run in a worker
                # thread: one partition took 1.9x as long (7x the system time, 17x the page
                # faults). The second makes Arrow's CSV parser single-threaded. Our workers
                # run one task at a time (threads_per_worker=1) and use the threads and the
                # memory a local scan uses, so neither is set for the cluster we start.
                environ: dict = {}
                with (
                    dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
                    warnings.catch_warnings(),
                ):
                    # the scheduler's HTTP routes move off a busy port 8787 with a warning
                    warnings.filterwarnings("ignore", message="Port .* is already in use")
                    self._cluster = LocalCluster(
                        n_workers=c.workers or os.cpu_count() or 1,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        preload=["geofence.distributed"],  # dask_setup: imports early
                        # in the worker processes too: a failed task is our error line, not their log
                        silence_logs=logging.CRITICAL if self._quiet else logging.DEBUG,
                    )
                self._client = Client(self._cluster, set_as_default=False)
        except BaseException as exc:  # raised again by client()
            self._error = exc

    def client(self):
        """The connected client (waits for the connection; Ctrl-C still interrupts)."""
        while self._thread.is_alive():
            self._thread.join(0.1)
        if self._error is not None:
            raise self._error
        return self._client

    def close(self) -> None:
        while self._thread.is_alive():
            self._thread.join(0.1)
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._client.close(timeout=10)
        with contextlib.suppress(Exception):
            if self._cluster is not None:
                self._cluster.close(timeout=10)
        self._client = self._cluster = None
        for n, level in self._levels.items():
            logging.getLogger(n).setLevel(level)


class _DaskRunner:
    """Tasks on the Dask cluster of a :class:`_DaskConnection`."""

    def __init__(self, conn: _DaskConnection, blob: bytes, sha256: str) -> None:
        self.conn, self.conf, self.blob, self.sha256 = conn, conn.conf, blob, sha256
        self.client = None
        self.n_workers = 0

    def __enter__(self) -> _DaskRunner:
        self.client = self.conn.client()
        self._check_workers()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.client = None  # closed with the connection, at the end of the run

    def _check_workers(self) -> None:
        """Versions of every worker, before any task (issue #13)."""
        import dask

        mine = versions()
        if not self.client.scheduler_info().get("workers"):
            wait_s = self.conf.connect_timeout_s or dask.utils.parse_timedelta(
                dask.config.get("distributed.comm.timeouts.connect")
            )
            try:
                self.client.wait_for_workers(1, timeout=2 * wait_s)
            except (OSError, TimeoutError):
                raise GeofenceError(
                    f"the Dask scheduler at {self.conf.scheduler} has no workers; start some with `dask worker {self.conf.scheduler}`"
                ) from None
        try:
            facts = self.client.run(worker_facts)
        except Exception as exc:
            raise GeofenceError(
                f"Dask workers cannot run geofence ({type(exc).__name__}: {exc}); install geofence on every worker"
            ) from None
        for addr, f in sorted(facts.items()):
            check_versions(mine, addr, f["versions"])
        self.n_workers = len(facts)

    def facts(self) -> dict:
        return {
            "engine": "dask",
            "workers": self.n_workers,
            "scheduler": self.conf.scheduler or "local cluster",
        }

    def results(self, tasks: list[Task]) -> Iterator[PartitionResult]:
        from distributed import as_completed

        # once to every worker now (a worker joining later fetches it from a peer)
        blob = self.client.scatter(self.blob, broadcast=True, hash=False)
        run = secrets.token_hex(4)
        futs = {
            self.client.submit(
                run_partition, t, blob, key=f"geofence-{run}-part-{t.part.index}", pure=False
            ): t.part.index
            for t in tasks
        }
        try:
            for f in as_completed(list(futs), loop=self.client.loop):
                i = futs.pop(f)
                try:
                    res = f.result()
                except GeofenceError:
                    raise
                except Exception as exc:  # KilledWorker, lost scheduler, cancelled ...
                    raise GeofenceError(_dask_failure(i, tasks, exc, self.conf.scheduler)) from None
                f.release()  # one result per partition, released on arrival
                yield res
        finally:
            if futs:
                with contextlib.suppress(Exception):
                    self.client.cancel(list(futs), force=True)
            with contextlib.suppress(Exception):
                blob.release()


def _dask_failure(i: int, tasks: list[Task], exc: Exception, scheduler: str | None) -> str:
    name = next(t.part.input.name for t in tasks if t.part.index == i)
    kind = type(exc).__name__
    if kind == "KilledWorker":
        return f"partition {i} ({name}) was lost with every worker that ran it; check the workers' memory and logs"
    if kind in ("CancelledError", "CommClosedError", "TimeoutError", "FutureCancelledError"):
        where = scheduler or "the local cluster"
        return f"lost the Dask scheduler at {where} during partition {i} ({name}): {kind}; nothing was written"
    return f"partition {i} ({name}) failed on a Dask worker: {kind}: {exc}"


# --------------------------------------------------------------------------------------
# Client side: staging, collecting, merging


def _staging_dir(staging, beside, storage_options) -> str:
    run = secrets.token_hex(6)
    if staging is not None:
        s = os.fspath(staging)
        if is_url(s):
            return f"{s.rstrip('/')}/geofence-{run}"
        d = Path(s).absolute() / f"geofence-{run}"  # as workers elsewhere see it
    elif beside is not None:
        b = Path(beside).absolute()
        d = b.parent / f".{b.name}.staging-{run}"
    else:
        d = Path.cwd() / f".geofence-staging-{run}"
    try:
        d.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(
            f"{d}: cannot create the staging folder ({exc.strerror}); choose another with --staging"
        ) from None
    return str(d)


def _remove_staging(run_dir: str, storage_options) -> None:
    if is_url(run_dir):
        with contextlib.suppress(Exception):
            fs, path = _fs(run_dir, storage_options)
            if fs.exists(path):
                fs.rm(path, recursive=True)
        return
    shutil.rmtree(run_dir, ignore_errors=True)


class _Collector:
    """Results in any order; outputs appended in partition order, re-hashed on the way."""

    def __init__(self, plan: ScanPlan, writer, rejects, storage_options, progress) -> None:
        self.plan = plan
        self.writer, self.rejects = writer, rejects
        self.storage_options = storage_options
        self.progress = progress
        self.mine = versions()
        self.seen: dict[int, tuple] = {}  # partition -> identity of its accepted result
        self.pending: dict[int, PartitionResult] = {}
        self.scans: list = []
        self.next = 0
        self.done_reads = 0
        self.builds: dict[str, int] = {}
        self.attempts = 0
        self.slowest_s = 0.0

    def accept(self, res: PartitionResult) -> None:
        from geofence.scan import check_in

        i = res.index
        check_versions(self.mine, res.worker["name"], res.worker["versions"])
        if i in self.seen:
            if res.identity() != self.seen[i]:
                raise NonDeterministicPartition(
                    f"non-deterministic partition {i} ({self.plan.partitions[i].input.name}): two runs gave "
                    "different bytes or counts; nothing was written"
                )
            return
        check_in(self.plan.partitions[i], res.scan)
        self.seen[i] = res.identity()
        self.builds[res.worker["name"]] = res.worker["engine_builds"]
        self.attempts += res.attempts
        self.slowest_s = max(self.slowest_s, res.seconds)
        self.done_reads += res.scan.summary.reads_in
        if self.progress:
            self.progress(self.done_reads)
        self.pending[i] = res
        while self.next in self.pending:
            self._append(self.pending.pop(self.next))
            self.next += 1

    def _append(self, res: PartitionResult) -> None:
        for frag, sink in ((res.report, self.writer), (res.rejects, self.rejects)):
            if frag is None or sink is None:
                continue
            h = hashlib.sha256()
            sink.append_fragment(
                frag.header, frag.size, _hashed_chunks(frag.url, self.storage_options, h)
            )
            if h.hexdigest() != frag.sha256:
                raise NonDeterministicPartition(
                    f"non-deterministic partition {res.index}: its fragment {frag.url} in staging is not "
                    "what the worker reported (another run overwrote it, or staging is shared); nothing was written"
                )
            _remove_file(frag.url, self.storage_options)
        self.scans.append(res.scan)

    def finish(self) -> list:
        if self.next != len(
            self.plan.partitions
        ):  # pragma: no cover - runners yield every partition
            raise GeofenceError(
                f"only {self.next} of {len(self.plan.partitions)} partitions finished; nothing was written"
            )
        return self.scans


def _hashed_chunks(url: str, storage_options, h) -> Iterator[bytes]:
    try:
        if is_url(url):
            fs, path = _fs(url, storage_options)
            opener = fs.open(path, "rb")
        else:
            opener = open(url, "rb")
        with opener as fh:
            while chunk := fh.read(_COPY_CHUNK):
                h.update(chunk)
                yield chunk
    except GeofenceError:
        raise
    except Exception as exc:
        raise GeofenceError(
            f"{url}: cannot read a partition's fragment back from staging ({type(exc).__name__}: {exc}); nothing was written"
        ) from None


def _remove_file(url: str, storage_options) -> None:
    with contextlib.suppress(Exception):
        if is_url(url):
            fs, path = _fs(url, storage_options)
            fs.rm_file(path)
        else:
            os.unlink(url)


def run_partitions(
    plan: ScanPlan,
    setup,
    sites_policy: tuple,
    cluster: Cluster,
    *,
    fmt: str | None,
    writer,
    rejects,
    staging=None,
    beside=None,
    pseudonymize_key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list, dict]:
    """Run every partition of ``plan`` on ``cluster`` and append the fragments in order.

    ``writer`` and ``rejects`` are the full writers of the final (still temporary)
    outputs; the caller renames them into place when this returns. Staging is removed
    whatever happens.

    Returns
    -------
    scans : list of geofence.scan.PartitionScan
        In partition order.
    execution : dict
        Engine, workers, partitions, engine builds per worker, attempts, seconds.
    """
    started = time.perf_counter()
    blob, sha = make_payload(*sites_policy, setup, pseudonymize_key)
    storage_options = dict(plan.storage_options)
    run_dir = _staging_dir(staging, beside, storage_options)
    try:
        tasks = [
            Task(part, sha, run_dir, fmt, rejects is not None, storage_options, cluster.retries)
            for part in plan.partitions
        ]
        col = _Collector(plan, writer, rejects, storage_options, progress)
        with cluster.runner(blob, sha) as runner:
            for res in runner.results(tasks):
                col.accept(res)
            facts = runner.facts()
        scans = col.finish()
    finally:
        _remove_staging(run_dir, storage_options)
    execution = {
        **facts,
        "partitions": len(plan.partitions),
        "attempts": col.attempts,
        "site_table_sha256": sha,
        "engine_builds": dict(sorted(col.builds.items())),
        "slowest_partition_s": round(col.slowest_s, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return scans, execution
