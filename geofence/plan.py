"""The plan of a scan: which inputs, in which order, cut into which partitions (issue #13).

Every engine (``local``, ``processes``, ``dask``) runs the same plan, so the output order
is (partition, row) everywhere and the bytes cannot depend on the engine:

* READS are expanded: a glob (``logs/*.csv.gz``, ``s3://bucket/2024-*/*.parquet``) gives
  its matches sorted by name; arguments keep the order they were given in (as the shell
  would expand them). Object-store URLs (``s3://``, ``gs://``, anything fsspec knows) are
  opened through fsspec with ``storage_options``; fsspec is imported only for them.
* Inputs are numbered in that order and each becomes partitions: a delimited text file
  (plain or compressed: a compressed stream cannot be cut) is one partition; a Parquet
  file is cut into runs of whole row groups of about ``partition_rows`` rows.
* Rows keep their 1-based number in their file, whatever partition reads them.

:func:`open_partition` opens one partition for reading wherever it runs (the client for
``local``, a worker process otherwise) and yields :class:`~geofence.model.ReadBatch` es
through the same readers as a single-file scan (:func:`geofence.scan.iter_reads` for text,
:func:`geofence.reads.batches_from_table` for Parquet).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from geofence.errors import ReadFormatError, UsageError

__all__ = [
    "DEFAULT_PARTITION_ROWS",
    "Partition",
    "PlannedInput",
    "ScanPlan",
    "TransientIOError",
    "is_url",
    "open_input",
    "open_partition",
    "plan_scan",
]

DEFAULT_PARTITION_ROWS = 2_000_000
"""Rows per Parquet partition (whole row groups are never cut). About 10 s of one core:
large enough that per-task overhead is negligible, small enough that a lost worker's
rerun is short and that 10M reads spread over several workers."""

_PARQUET_MAGIC = b"PAR1"


class TransientIOError(Exception):
    """Raised when an object-store read or write failed in a way worth retrying.

    Deliberately not an ``OSError``: the text reader turns ``OSError`` inside a compressed
    stream into "truncated or corrupt data", which is never retried.
    """


_FINAL = (FileNotFoundError, PermissionError, IsADirectoryError, UsageError, ReadFormatError)


def transient(exc: BaseException, where: str) -> BaseException:
    """``exc`` of an object-store call as the error to raise: missing objects and denied
    access as they are; anything else the store's client raised (connection refused, a
    timeout, botocore's ``EndpointConnectionError``, a 503) as :class:`TransientIOError`,
    which the worker retries."""
    if isinstance(exc, _FINAL) or not isinstance(exc, Exception):
        return exc
    return TransientIOError(f"{where}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class PlannedInput:
    """One input file of the plan.

    Attributes
    ----------
    index : int
        Position in the plan (0-based).
    url : str
        Local path, ``-`` (standard input) or an fsspec URL, as given (the report's
        ``source``).
    name : str
        File name for summaries and messages.
    kind : str
        ``"text"`` (delimited, any compression) or ``"parquet"``.
    row_group_rows : tuple of int
        Rows of each Parquet row group, from the footer at planning time.
    """

    index: int
    url: str
    name: str
    kind: str
    row_group_rows: tuple[int, ...] = ()

    @property
    def location(self) -> str:
        """Where a reader opens it: a local path made absolute (a worker's working
        directory is not the client's), else ``url``."""
        return self.url if self.url == "-" or is_url(self.url) else os.path.abspath(self.url)

    @property
    def rows(self) -> int | None:
        """Rows of a Parquet file (``None`` for text: known only once read)."""
        return sum(self.row_group_rows) if self.kind == "parquet" else None


@dataclass(frozen=True)
class Partition:
    """A unit of work: one text file or a run of whole row groups of one Parquet file.

    Attributes
    ----------
    index : int
        Position in the plan (0-based); outputs are concatenated in this order.
    input : PlannedInput
    row_groups : (int, int) or None
        ``[start, stop)`` row groups of a Parquet file.
    first_row : int
        1-based number, in its file, of the partition's first row.
    rows : int or None
        Rows the partition must yield (Parquet); ``None`` for text.
    label : str or None
        The ``source`` value of report rows (the input's URL when the plan has several
        inputs, as a multi-file scan always wrote), else ``None``.
    hashes_input : bool
        Whether this partition reports the SHA-256 of its whole file (text: always; a
        Parquet file: its first partition, which reads the file once more for it).
    """

    index: int
    input: PlannedInput
    row_groups: tuple[int, int] | None
    first_row: int
    rows: int | None
    label: str | None
    hashes_input: bool


@dataclass(frozen=True)
class ScanPlan:
    """Inputs and partitions of a scan, in order; the same for every engine."""

    inputs: tuple[PlannedInput, ...]
    partitions: tuple[Partition, ...]
    storage_options: Mapping[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.partitions)


# --------------------------------------------------------------------------------------
# Planning


def is_url(path: object) -> bool:
    """Whether ``path`` names an fsspec location (``s3://``, ``gs://``, ``file://`` ...)."""
    return isinstance(path, str) and "://" in path


def plan_scan(
    reads: Sequence[str | os.PathLike],
    *,
    storage_options: Mapping[str, object] | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
) -> ScanPlan:
    """Expand, number and partition the read logs of a scan.

    Parameters
    ----------
    reads : sequence of paths, globs, URLs or ``"-"``
        Read logs in the order given; a glob's matches are sorted by name.
    storage_options : mapping, optional
        fsspec options for URLs (``endpoint_url``, ``anon``, ``profile`` ...).
    partition_rows : int
        Target rows of a Parquet partition (whole row groups).

    Returns
    -------
    ScanPlan

    Raises
    ------
    UsageError
        A path does not exist, a glob matches nothing, or ``-`` is given twice.

    Examples
    --------
    >>> plan = plan_scan(["logs/2024-*.csv.gz", "s3://bucket/late.parquet"])  # doctest: +SKIP
    >>> [(p.index, p.input.name, p.row_groups) for p in plan.partitions]  # doctest: +SKIP
    """
    if not isinstance(partition_rows, int) or partition_rows < 1:
        raise UsageError(f"partition_rows must be a positive integer, not {partition_rows!r}")
    opts = dict(storage_options or {})
    urls: list[str] = []
    for src in reads:
        urls.extend(_expand(src, opts))
    if urls.count("-") > 1:
        raise UsageError("standard input (-) can be read only once; give it once")
    inputs = tuple(_describe(i, url, opts) for i, url in enumerate(urls))
    several = len(inputs) > 1
    parts: list[Partition] = []
    for inp in inputs:
        label = inp.url if several else None
        if inp.kind == "text":
            parts.append(Partition(len(parts), inp, None, 1, None, label, True))
            continue
        for start, stop in _row_group_runs(inp.row_group_rows, partition_rows):
            first = 1 + sum(inp.row_group_rows[:start])
            rows = sum(inp.row_group_rows[start:stop])
            parts.append(Partition(len(parts), inp, (start, stop), first, rows, label, start == 0))
    return ScanPlan(inputs, tuple(parts), opts)


def _expand(src, opts: Mapping[str, object]) -> list[str]:
    try:
        s = os.fspath(src)
    except TypeError:
        raise UsageError(
            f"a scan reads paths, globs, URLs or '-', not {type(src).__name__}; "
            "scan in-memory tables with geofence.scan()"
        ) from None
    if s == "-":
        return ["-"]
    if is_url(s):
        fs, paths = _fs_paths(s, opts)
        if glob.has_magic(s):
            found = sorted(fs.unstrip_protocol(p) for p in fs.glob(paths))
            if not found:
                raise UsageError(f"{s}: no file matches; check the pattern and --storage-option")
            return found
        return [s]
    if glob.has_magic(s):
        found = sorted(p for p in glob.glob(s) if os.path.isfile(p))
        if not found:
            raise UsageError(f"{s}: no file matches; check the pattern")
        return found
    return [s]


def _fs_paths(url: str, opts: Mapping[str, object]):
    try:
        import fsspec
    except ImportError:  # pragma: no cover - the dask extra brings it
        raise UsageError(
            f"{url}: reading URLs needs fsspec; install it with: pip install 'geofence[dask]'"
        ) from None
    try:
        return fsspec.core.url_to_fs(url, **dict(opts))
    except (ImportError, ValueError) as exc:
        raise UsageError(
            f"{url}: cannot open this kind of URL ({exc}); install its fsspec backend (s3fs, gcsfs ...)"
        ) from None


def _describe(index: int, url: str, opts: Mapping[str, object]) -> PlannedInput:
    name = "<stdin>" if url == "-" else _basename(url)
    if url == "-" or (not is_url(url) and _not_regular(url)):
        # standard input, a FIFO, /dev/stdin, <(zcat ...): peeking would eat its bytes
        return PlannedInput(index, url, name, "text")
    try:
        with open_input(url, opts) as fh:
            head = fh.read(len(_PARQUET_MAGIC))
            if head != _PARQUET_MAGIC:
                return PlannedInput(index, url, name, "text")
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(fh).metadata
            rows = tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
    except TransientIOError as exc:
        raise UsageError(
            f"{url}: cannot be read ({exc}); check the URL, network and --storage-option"
        ) from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        if isinstance(exc, UsageError):
            raise
        raise ReadFormatError(
            f"{name}: not a readable Parquet file ({exc}); re-copy or re-export it"
        ) from None
    return PlannedInput(index, url, name, "parquet", rows)


def _not_regular(path: str) -> bool:
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # opening it says why, in the reader's words


def _row_group_runs(rows: tuple[int, ...], target: int) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` runs of consecutive row groups of about ``target`` rows each."""
    if not rows:
        yield (0, 0)  # a file without row groups is still read (and counted: 0 rows)
        return
    start, have = 0, 0
    for g, n in enumerate(rows):
        have += n
        if have >= target:
            yield (start, g + 1)
            start, have = g + 1, 0
    if start < len(rows):
        yield (start, len(rows))


def _basename(url: str) -> str:
    return Path(url.rstrip("/").rsplit("/", 1)[-1]).name if is_url(url) else Path(url).name


# --------------------------------------------------------------------------------------
# Opening


class _RemoteFile(io.RawIOBase):
    """An fsspec file under the input's own name; its I/O errors become transient.

    The name makes messages and summaries say ``reads-01.csv`` as for a local file; the
    error translation lets the worker retry a timeout instead of calling the file corrupt.
    """

    def __init__(self, fh, name: str) -> None:
        super().__init__()
        self._fh = fh
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            return self._fh.read(n)
        except Exception as exc:
            raise transient(exc, self.name) from exc

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    @property
    def size(self) -> int:
        return self._fh.size

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._fh.close()
        super().close()


@contextlib.contextmanager
def open_input(url: str, storage_options: Mapping[str, object] | None = None):
    """Open an input file for binary reading: a local path or an fsspec URL.

    Raises
    ------
    UsageError
        No such file, a directory, or permission denied (not retried).
    TransientIOError
        An object-store error worth retrying.
    """
    if not is_url(url):
        try:
            fh = open(url, "rb")
        except FileNotFoundError:
            raise UsageError(f"{url}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{url}: is a directory, not a read log") from None
        except PermissionError:
            raise UsageError(f"{url}: permission denied") from None
        with fh:
            yield fh
        return
    fs, path = _fs_paths(url, storage_options or {})
    try:
        raw = fs.open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{url}: no such object") from None
    except PermissionError as exc:
        raise UsageError(f"{url}: access denied ({exc}); check the credentials") from None
    except Exception as exc:
        raise transient(exc, url) from exc
    wrapped = _RemoteFile(raw, _basename(url))
    try:
        yield wrapped
    finally:
        wrapped.close()


def sha256_input(url: str, storage_options: Mapping[str, object] | None = None) -> str:
    """SHA-256 of an input file's stored bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open_input(url, storage_options) as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _ParquetPartition:
    """Batches of one Parquet partition, with the attributes a summary needs."""

    def __init__(self, part: Partition, storage_options, *, columns, timezone, batch_size) -> None:
        import pyarrow.parquet as pq

        from geofence import reads as _reads

        self.part = part
        self.name = part.input.name
        self.timezone = timezone
        self.notes: list[str] = []
        self.rows = 0
        self.sha256: str | None = None
        self._storage_options = dict(storage_options or {})
        self._stack = contextlib.ExitStack()
        fh = self._stack.enter_context(open_input(part.input.location, storage_options))
        try:
            pf = pq.ParquetFile(fh)
        except (OSError, ValueError) as exc:
            self._stack.close()
            raise ReadFormatError(
                f"{self.name}: not a readable Parquet file ({exc}); re-copy or re-export it"
            ) from None
        meta = pf.metadata
        now = tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
        if now != part.input.row_group_rows:
            self._stack.close()
            raise ReadFormatError(
                f"{self.name}: the file changed after the scan was planned (row groups "
                f"{len(part.input.row_group_rows)} -> {len(now)}); rerun the scan"
            )
        self.fields = list(pf.schema_arrow.names)
        # the reader's own header rules: errors name this file, not "<table>"
        self.mapping = _reads._map_columns(self.fields, columns, self.name)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(self.fields)
        self.header = buf.getvalue().encode()
        self.parquet = {"row_groups": len(now)}  # in the summary's input document
        self._pf = pf
        from geofence.scan import SCAN_BATCH

        self._opts = {
            "columns": columns,
            "timezone": timezone,
            "batch_size": batch_size or SCAN_BATCH,
        }

    def __enter__(self) -> _ParquetPartition:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def __iter__(self) -> Iterator:
        from geofence import reads as _reads

        start, stop = self.part.row_groups
        groups = list(range(start, stop))
        shift = self.part.first_row - 1
        if groups:
            batches = self._record_batches(groups)
            for b in _reads.batches_from_table(batches, **self._opts):
                self.rows += len(b)
                yield replace(b, row=b.row + shift)
        if self.part.hashes_input:
            self.sha256 = sha256_input(self.part.input.location, self._storage_options)

    def row_bytes(self, batch, rows) -> list[bytes]:
        """Rows ``rows`` of ``batch`` as CSV lines of the file's values, for the rejects file.

        A Parquet row has no bytes of its own; its values as the reader saw them (every
        input column as a string, after the five normalised ones) stand in for them.
        """
        import pyarrow as pa

        from geofence.reads import NORMALISED_COLUMNS

        k = len(NORMALISED_COLUMNS)
        cols = batch.columns.columns[k : k + len(self.fields)]
        idx = pa.array(rows)
        values = (
            list(zip(*(c.take(idx).to_pylist() for c in cols), strict=True))
            if cols
            else [()] * len(rows)
        )
        out = []
        for v in values:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow(["" if x is None else x for x in v])
            out.append(buf.getvalue().encode())
        return out

    def _record_batches(self, groups: list[int]):
        import pyarrow as pa

        try:
            for g in groups:
                yield from self._pf.iter_batches(row_groups=[g], use_threads=False)
        except TransientIOError:
            raise
        except (OSError, ValueError, pa.ArrowException) as exc:
            row = self.part.first_row + self.rows
            raise ReadFormatError(
                f"{self.name}: cannot read Parquet row group {g} (from about row {row:,}): {exc}; "
                "re-copy or re-export the file"
            ) from None


def open_partition(
    part: Partition,
    storage_options: Mapping[str, object] | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    batch_size: int | None = None,
    keep_raw: bool = False,
    limits: Mapping[str, int] | None = None,
    profile=None,
    require_position: bool = True,
):
    """Open one partition; a context manager yielding an iterable of ReadBatch.

    Text partitions go through :func:`geofence.scan.iter_reads` exactly as a single-file
    scan (a local path is handed over as the path itself); Parquet partitions through
    :func:`geofence.reads.batches_from_table`, with row numbers shifted to the file's.
    The result has the reader's attributes (``sha256``, ``rows``, ``mapping``, ``notes``,
    ``header``, ``delimiter`` ...) once iterated. ``require_position`` False lets a text
    log without coordinate columns through, for a camera table to place (issue #10).
    """
    from geofence.scan import iter_reads

    inp = part.input
    if inp.kind == "parquet":
        if profile is not None:
            raise UsageError(
                f"{inp.name} is a Parquet file: format profiles describe text exports; name its columns with --columns instead"
            )
        return _ParquetPartition(
            part, storage_options, columns=columns, timezone=timezone, batch_size=batch_size
        )
    kw = {
        "columns": columns,
        "timezone": timezone,
        "batch_size": batch_size,
        "keep_raw": keep_raw,
        "limits": limits,
        "profile": profile,
    }
    if not require_position:
        kw["require_position"] = False
    if not is_url(inp.url):
        return iter_reads(inp.location, **kw)
    return _RemoteText(inp.url, storage_options, kw)


class _RemoteText(contextlib.AbstractContextManager):
    """A text partition read from an object store: the remote file, then the reader."""

    def __init__(self, url: str, storage_options, kw: dict) -> None:
        from geofence.scan import iter_reads

        self._stack = contextlib.ExitStack()
        try:
            fh = self._stack.enter_context(open_input(url, storage_options))
            self._stream = self._stack.enter_context(iter_reads(fh, **kw))
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self):
        return self._stream

    def __exit__(self, *exc) -> None:
        self._stack.close()
