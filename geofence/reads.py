"""Stream ALPR read logs (delimited text) into :class:`~geofence.model.ReadBatch` es.

This is the hot input path of ``scan``, ``filter`` and the server. A read log is a
CSV/TSV/pipe export with a header row, plain or compressed (gzip, bz2, zstd, found by
magic bytes). :func:`open_reads` returns a :class:`ReadStream` that yields batches of
column arrays plus, for the byte-preserving sharing filter, the exact bytes of every row.
:func:`batches_from_table` applies the same rules to DataFrames and Arrow tables.

How a chunk is read
-------------------
1. A worker thread reads the decompressed bytes in fixed chunks (``CHUNK_BYTES``),
   hashes the stored bytes, and cuts each chunk at its last record boundary; the partial
   record after it is carried into the next chunk, so memory stays flat for any size.
2. Record boundaries are found with NumPy over the byte buffer: a ``\\n`` ends a record
   only when the number of ``"`` before it is even (RFC 4180 section 2.6: a line break
   inside a quoted field is data).
3. The records are parsed by ``pyarrow.csv`` with every column as a string (the output
   keeps the input columns as written). Arrow's rows are trusted only when they must
   match the byte offsets: every quote follows RFC 4180, there is no bare CR, and the
   row count agrees. Otherwise vectorised checks mark the malformed records (wrong field
   count, stray or unbalanced quote, bare CR, undecodable UTF-8), the rest is parsed
   again, and as a last resort bisected until Arrow agrees.
4. Positions and times are converted with one ``pyarrow.compute`` cast per column; only
   when it fails does a slower, still vectorised path find which cells are bad.

Rules
-----
- ``row`` counts records from 1 after the header. A quoted line break does not start a
  record; lines holding only ``\\n`` or ``\\r\\n`` are not records at all: they are
  skipped, noted, and missing from ``raw`` (so a byte-exact copy has no blank lines).
- Quoting is strict RFC 4180: a quote that neither opens a field nor closes one (or is
  doubled) makes its record ``malformed_row``. Such a stray quote opens a quoted section
  up to the next quote, so the lines in between are one (malformed) record; if no quote
  follows, the record runs to the end of the input (``malformed_row``) or past
  ``max_line_bytes`` (:class:`ResourceLimitError` naming the row).
- Missing values: empty, ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` (any case, spaces
  around ignored) in lat/lon are ``missing_position``, in the time column
  ``missing_timestamp``. Coordinates that are not finite numbers or longer than
  ``MAX_NUMBER_CHARS`` are ``bad_position``.
- Times: ISO 8601 with ``Z`` or an offset is converted to UTC; naive ISO 8601,
  ``MM/DD/YYYY - HH:MM:SS`` and ``MM/DD/YYYY HH:MM:SS`` are read in ``timezone``; plain
  numbers are epoch seconds below ``EPOCH_MS_FROM`` (1e11) and milliseconds from there up
  to ``EPOCH_MAX`` (1e14), decided per value. A local time in the fall-back hour, which
  happens twice, is taken at its earlier (first) instant; one in the spring-forward gap
  never existed and is ``bad_timestamp`` (shifting it would invent a time). Both are
  noted once. Impossible dates (02/30) are ``bad_timestamp``.
- ``columns`` of a batch: ``read_id``, ``plate``, ``timestamp`` (UTC,
  ``YYYY-MM-DDTHH:MM:SSZ`` with a fraction only when there is one), ``camera_id``,
  ``agency`` (null where the input has no such column or the cell is empty), then every
  input column as strings under its own name. An input column whose name is one of the
  five is renamed ``input:<name>``. A malformed row has nulls in every column.
"""

from __future__ import annotations

import bz2
import csv
import datetime as _dt
import gzip
import hashlib
import os
import queue
import re
import sys
import threading
import zlib
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from geofence import _kernels as K
from geofence.errors import ReadFormatError, ResourceLimitError, UsageError
from geofence.model import NO_TIME, REASON_CODE, ReadBatch

__all__ = ["CHUNK_BYTES", "NORMALISED_COLUMNS", "ReadStream", "batches_from_table", "open_reads"]

CHUNK_BYTES = 4 << 20
"""Decompressed bytes read per step: one Arrow block. Both cores are already busy with the
pipeline's stages, and 8 MiB steps held ~60 MB more in flight at no gain in speed (#5)."""

FIRST_SPAN_BYTES = 1 << 20
"""Bytes of records in a stream's first span. The header read has already taken a whole
chunk, and the first span used to be that chunk and the next (8 MiB, ~115k reads): the
output stage waited ~0.05 s for it to be parsed and matched at the start of every file,
which a scale-out task, one file per task, cannot hide behind the file before (#13)."""

NORMALISED_COLUMNS = ("read_id", "plate", "timestamp", "camera_id", "agency")
"""String columns every batch's ``columns`` table starts with, in this order."""

MAX_NUMBER_CHARS = 32
"""A coordinate cell longer than this is ``bad_position``, not parsed (absurdly long)."""

EPOCH_MS_FROM = 1e11
"""Epoch values with ``abs(v) >= 1e11`` are milliseconds, below are seconds.

1e11 seconds is the year 5138 and 1e11 milliseconds is 1973-03-03, so for any real
read log the two readings cannot be confused.
"""

EPOCH_MAX = 1e14
"""Epoch values with ``abs(v) >= 1e14`` (microseconds or nanoseconds) are rejected."""

_SAMPLE_ROWS = 1000
_DEFAULT_BATCH = 262_144

# Field -> header names that map to it, compared after _norm_name (case, spaces, '_').
_ALIASES = {
    "lat": ("lat", "latitude", "y", "gpslatitude"),
    "lon": ("lon", "lng", "long", "longitude", "x", "gpslongitude"),
    "plate": ("plate", "platenumber", "platehash", "vrm", "bestplatenumber"),
    "timestamp": ("timestamp", "dt", "datetime", "time", "readtime", "epoch", "epochstart"),
    "camera_id": ("camera", "cameraid", "device", "cameraname"),
    "agency": ("agency", "ori", "agencyori"),
    "read_id": ("readid", "id", "uuid", "bestuuid"),
}
_FIELDS = tuple(_ALIASES)

# Cells that mean "no value" in exports (compared case-insensitively, after trimming).
_NULL_TOKENS = pa.array(["", "na", "n/a", "nan", "null", "none"])
_EXACT_NULL_TOKENS = pa.array(["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "none", "na"])

_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TIME_RES = {
    "iso_offset": r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)$",
    "iso_local": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$",
    "us_dash": r"^\d{1,2}/\d{1,2}/\d{4} - \d{1,2}:\d{2}:\d{2}$",
    "us_space": r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2}$",
    "epoch": r"^[+-]?\d{1,16}(\.\d+)?$",
}
_STRPTIME = {"us_dash": "%m/%d/%Y - %H:%M:%S", "us_space": "%m/%d/%Y %H:%M:%S"}

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_NOT_TEXT = (
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\xff\xfe", "UTF-16 text"),
    (b"\xfe\xff", "UTF-16 text"),
)
_BOM = b"\xef\xbb\xbf"
_DELIMITERS = (",", "\t", "|", ";")

_NL, _CR, _QUOTE = 10, 13, 34


# --------------------------------------------------------------------------------------
# Public API


def open_reads(
    source,
    *,
    columns: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    batch_size: int = _DEFAULT_BATCH,
    delimiter: str | None = None,
    max_line_bytes: int = 1 << 20,
    keep_raw: bool = True,
    require_position: bool = True,
) -> ReadStream:
    """Open a read log and read its header; iterate the result for batches.

    Parameters
    ----------
    source : str, os.PathLike or binary file object
        A path, ``"-"`` for standard input, or a file object opened in binary mode.
        gzip, bz2 and zstd (needs the ``geofence[zstd]`` extra) are recognised by their
        magic bytes; UTF-8 with or without a byte order mark.
    columns : mapping of str to str, optional
        Input column for a field, overriding detection, e.g. ``{"lat": "Y", "lon": "X"}``.
        Fields: ``lat``, ``lon``, ``timestamp``, ``plate``, ``read_id``, ``camera_id``,
        ``agency``. ``None`` or ``""`` as a column says the field has no column.
    timezone : str, default "UTC"
        IANA zone of times written without an offset (``10/01/2021 - 00:02:08``).
    batch_size : int, default 262144
        Rows per batch; every batch but the last has exactly this many.
    delimiter : str, optional
        Field delimiter; by default the most frequent of ``, \\t | ;`` in the header.
    max_line_bytes : int, default 1 MiB
        Longest record accepted; longer ones raise :class:`ResourceLimitError`.
    keep_raw : bool, default True
        Keep each row's original bytes (``ReadBatch.raw``). ``False`` is faster for scans.

    Returns
    -------
    ReadStream
        A context manager and iterator of :class:`~geofence.model.ReadBatch`.

    Raises
    ------
    ReadFormatError
        The file is empty, not UTF-8 in its header, corrupt, or has no lat/lon column.
    UsageError
        An option is invalid (unknown timezone, ``columns`` naming a missing column).

    Examples
    --------
    >>> with open_reads("reads.csv.gz", timezone="America/Los_Angeles") as reads:
    ...     for batch in reads:
    ...         usable = batch.reason == 0
    """
    return ReadStream(
        source,
        columns=columns,
        timezone=timezone,
        batch_size=batch_size,
        delimiter=delimiter,
        max_line_bytes=max_line_bytes,
        keep_raw=keep_raw,
        require_position=require_position,
    )


def batches_from_table(
    data,
    *,
    columns: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    batch_size: int = _DEFAULT_BATCH,
) -> Iterator[ReadBatch]:
    """Yield read batches from in-memory tabular data, with the rules of :func:`open_reads`.

    Parameters
    ----------
    data : pandas.DataFrame, pyarrow.Table or iterable of pyarrow.RecordBatch
        The reads. Numeric lat/lon columns are taken as they are; timestamp columns may
        be Arrow/pandas datetimes (naive ones are read in ``timezone``), epoch numbers
        or strings.
    columns : mapping of str to str, optional
        As for :func:`open_reads`.
    timezone : str, default "UTC"
        IANA zone of naive times.
    batch_size : int, default 262144
        Rows per batch.

    Yields
    ------
    ReadBatch
        With ``raw`` and ``offsets`` ``None``; ``row`` is the 1-based position in ``data``.
    """
    _check_batch_size(batch_size)
    _check_timezone(timezone)
    label = "<table>"
    batches = _record_batches(data)
    first = next(batches, None)
    if first is None:
        return
    names = list(first.schema.names)
    mapping = _map_columns(names, columns, label)
    norm = _Normaliser(names, mapping, timezone, label, notes=[])

    def parts() -> Iterator[_Part]:
        row = 1
        for rb in _chain_first(first, batches):
            if rb.num_rows == 0:
                continue
            if list(rb.schema.names) != names:
                raise ReadFormatError(
                    f"{label}: a record batch has columns {rb.schema.names}, expected {names}"
                )
            cols = [rb.column(i) for i in range(rb.num_columns)]
            yield norm.convert(cols, np.zeros(rb.num_rows, dtype=bool), row)
            row += rb.num_rows

    yield from _rebatch(parts(), batch_size, keep_raw=False)


# --------------------------------------------------------------------------------------
# The stream


class ReadStream:
    """An open read log: header facts now, batches when iterated.

    Use :func:`open_reads` to create one. Attributes set when it is created:

    Attributes
    ----------
    header : bytes
        The header line as in the file, terminator included, byte order mark excluded.
    bom : bool
        Whether the text started with a UTF-8 byte order mark.
    delimiter : str
        Field delimiter used.
    line_terminator : bytes
        ``b"\\n"`` or ``b"\\r\\n"``, as the header ends.
    fields : list of str
        Input column names (duplicates and blanks renamed, see ``notes``).
    mapping : dict of str to str
        Normalised field -> input column, for the fields that have one.
    timezone : str
        Zone naive times are read in.
    time_format : str or None
        Time form detected from the first rows (for summaries); ``None`` without times.
    path_label : str
        File name, or ``"<stdin>"``.
    compression : str
        ``"none"``, ``"gzip"``, ``"bz2"`` or ``"zstd"``.

    Attributes set once the stream is exhausted (``None``/running until then):

    Attributes
    ----------
    sha256 : str or None
        SHA-256 of the bytes as stored (before decompression).
    rows : int
        Records read (usable and rejected; blank lines are not records).
    notes : list of str
        Things worth telling the user (swapped coordinates, DST repeats, blank lines).
    """

    def __init__(
        self,
        source,
        *,
        columns: Mapping[str, str] | None = None,
        timezone: str = "UTC",
        batch_size: int = _DEFAULT_BATCH,
        delimiter: str | None = None,
        max_line_bytes: int = 1 << 20,
        keep_raw: bool = True,
        chunk_bytes: int = CHUNK_BYTES,
        require_position: bool = True,
    ) -> None:
        _check_batch_size(batch_size)
        if not isinstance(max_line_bytes, int) or max_line_bytes < 1:
            raise UsageError(f"max_line_bytes must be a positive integer, not {max_line_bytes!r}")
        if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
            raise UsageError(
                f"delimiter must be one character other than a quote or line break, not {delimiter!r}"
            )
        _check_timezone(timezone)
        self.timezone = timezone
        self.batch_size = batch_size
        self.max_line_bytes = max_line_bytes
        self.keep_raw = keep_raw
        self._chunk_bytes = max(1, int(chunk_bytes))
        self.notes: list[str] = []
        self.rows = 0
        self.sha256: str | None = None
        self._counts = {"blank_lines": 0}
        self._src = _Source(source)
        self.path_label = self._src.label
        self.compression = self._src.compression
        try:
            self._read_header(delimiter)
            self.mapping = _map_columns(
                self.fields, columns, self.path_label, require_position=require_position
            )
            self._norm = _Normaliser(
                self.fields, self.mapping, timezone, self.path_label, self.notes
            )
            self._detect_time_format()
        except BaseException:
            self._src.close()
            raise
        self._part_gen = self._parts()
        # the scan may resize the batches as it goes (geofence.scan.BATCH_MATCHES)
        self._gen = _rebatch(self._part_gen, lambda: self.batch_size, keep_raw=keep_raw)

    # -- protocol ---------------------------------------------------------------------

    def __enter__(self) -> ReadStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> ReadStream:
        return self

    def __next__(self) -> ReadBatch:
        return next(self._gen)

    def close(self) -> None:
        """Stop reading; close the source if this stream opened it (not standard input)."""
        gen = getattr(self, "_part_gen", None)
        if gen is not None:
            self._gen.close()
            gen.close()  # ends the read-ahead thread before the file is closed
        self._src.close()

    @property
    def time_format(self) -> str | None:
        """The time form detected (or ``None`` when the log has no times yet seen)."""
        return self._norm.time_format

    @property
    def format(self) -> dict:
        """What was detected about the file, as a JSON-able dict for summaries."""
        return {
            "compression": self.compression,
            "encoding": "utf-8-sig" if self.bom else "utf-8",
            "bom": self.bom,
            "delimiter": self.delimiter,
            "line_terminator": self.line_terminator.decode("ascii"),
            "time_format": self.time_format,
            "timezone": self.timezone,
        }

    def __repr__(self) -> str:
        return f"<ReadStream {self.path_label!r} rows={self.rows}>"

    # -- header -----------------------------------------------------------------------

    def _read_header(self, delimiter: str | None) -> None:
        label = self.path_label
        buf = self._read_or_fail()
        while len(buf) < len(_BOM) and not self._src.eof:
            buf += self._read_or_fail()
        self.bom = buf.startswith(_BOM)
        if self.bom:
            buf = buf[len(_BOM) :]
        start = 0
        while True:
            end = _first_record_end(buf, start)
            if end == -1 and not self._src.eof:  # the header goes on in the next chunk
                if len(buf) - start > self.max_line_bytes:
                    self._header_too_long()
                buf = buf[start:] + self._read_or_fail()
                start = 0
                continue
            if end == -1:
                end = len(buf)
            line = buf[start:end]
            if line.strip(b"\r\n"):
                break
            if not line and self._src.eof:  # nothing but blank lines, or nothing at all
                raise ReadFormatError(
                    f"{label} is empty; expected a header row naming the columns "
                    "(e.g. lat,lon,timestamp) followed by one row per read"
                )
            self._counts["blank_lines"] += bool(line)  # blank lines before the header too
            start = end
        if end - start > self.max_line_bytes:
            self._header_too_long()
        self.header = bytes(line)
        self.line_terminator = b"\r\n" if line.endswith(b"\r\n") else b"\n"
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise ReadFormatError(
                f"{label}: the header row is not valid UTF-8 (byte {line[exc.start]:#04x} at "
                f"position {exc.start}); re-save the file as UTF-8"
            ) from None
        self.delimiter = delimiter or _detect_delimiter(text)
        try:
            names = next(csv.reader([text], delimiter=self.delimiter, quotechar='"', strict=True))
        except csv.Error as exc:
            raise ReadFormatError(
                f"{label}: the header row cannot be split ({exc}); check its quoting"
            ) from None
        self.fields = _clean_names(names, self.notes, label)
        self._carry = buf[end:]

    def _header_too_long(self) -> None:
        raise ResourceLimitError(
            f"{self.path_label}: the header row is longer than max_line_bytes="
            f"{self.max_line_bytes:,}; raise it with --max-line-bytes if the file is right"
        )

    def _read_or_fail(self) -> bytes:
        try:
            return self._src.read(self._chunk_bytes)
        except _CorruptData as exc:
            raise ReadFormatError(self._src.corrupt_message(exc, 0)) from None

    def _detect_time_format(self) -> None:
        """Look at up to 1000 rows already in memory to name the time form early."""
        if "timestamp" not in self.mapping:
            return
        buf = self._carry[: self.max_line_bytes * 2 + (1 << 20)]
        arr = np.frombuffer(buf, dtype=np.uint8)
        quotes = buf.find(b'"') != -1
        ends, q = _record_ends(
            arr, eof=self._src.eof and len(buf) == len(self._carry), quotes=quotes
        )
        if ends.size == 0:
            return
        ends = ends[:_SAMPLE_ROWS]
        starts = np.concatenate(([0], ends[:-1]))
        keep = ~_blank_records(arr, starts, ends)
        if not keep.any():
            return
        try:
            table, _bad = self._parse(buf, starts[keep], ends[keep], q)
        except ResourceLimitError:
            return  # reported with its row number when iterated
        col = table.column(self.fields.index(self.mapping["timestamp"]))
        self._norm.detect_time_kind(_single(col))

    # -- records ----------------------------------------------------------------------

    def _parts(self) -> Iterator[_Part]:
        # Reading, decompressing, hashing and splitting the next chunk (NumPy, zlib and
        # hashlib release the GIL) run in a worker thread while this one parses. The
        # worker holds no reference to this stream, so an abandoned stream is collected
        # and its generator's ``finally`` stops the worker.
        carry, self._carry = self._carry, b""
        spans = _ReadAhead(
            _split_spans(
                self._src,
                carry,
                self._chunk_bytes,
                self.max_line_bytes,
                self._counts,
                FIRST_SPAN_BYTES,
            )
        )
        try:
            for span in spans:
                table, malformed = self._parse(span.buf, span.starts, span.ends, span.quotes)
                part = self._norm.convert(table.columns, malformed, span.row)
                if self.keep_raw:
                    part.raw, part.offsets = _raw_of(
                        span.buf, span.starts, span.ends, gaps=span.gaps
                    )
                self.rows = span.row + len(span.starts) - 1
                yield part
        finally:
            spans.close()
        self._finish()

    def _finish(self) -> None:
        self.sha256 = self._src.finish()
        if self._counts["blank_lines"]:
            self.notes.append(
                f"{self._counts['blank_lines']:,} blank line(s) skipped: they are not records, and a "
                "byte-preserving copy of the rows will not contain them"
            )
        self._norm.finish()
        self._src.close()

    def _parse(
        self, buf: bytes, starts: np.ndarray, ends: np.ndarray, q: np.ndarray | None
    ) -> tuple[pa.Table, np.ndarray]:
        """Parse records ``buf[starts[i]:ends[i]]`` into string columns; flag malformed ones.

        ``q`` holds the positions of the quotes in ``buf`` (``None`` if it has none).
        """
        n = len(starts)
        lo, hi = int(starts[0]), int(ends[-1])
        arr = np.frombuffer(buf, dtype=np.uint8)[:hi]
        if q is not None:
            q = q[: np.searchsorted(q, hi)]
        has_quotes = q is not None and q.size > 0
        delim = ord(self.delimiter)
        # Arrow splits rows exactly as the byte offsets do only if every quote follows
        # RFC 4180 (Arrow keeps a stray quote as text, the offsets count it) and there is
        # no bare CR (Arrow ends a row there). Only then is its row count proof enough.
        clean = not has_quotes or (q.size % 2 == 0 and not _quote_faults(arr, q, delim).any())
        has_cr = clean and buf.find(b"\r", lo, hi) != -1  # find is memchr; count is not
        if has_cr:
            clean = buf.count(b"\r", lo, hi) == buf.count(b"\r\n", lo, hi)
        if clean and not has_quotes and not has_cr:
            # Plain records (no quote, no CR): the compiled split gives Arrow's columns
            # at a fraction of its parse (issue #5); any other count of fields, or a
            # non-ASCII byte, leaves the chunk to Arrow below.
            cols = K.csv_columns(buf, starts, ends, len(self.fields), self.delimiter)
            if cols is not None:
                return _text_table(cols, n), np.zeros(n, dtype=bool)
        if clean:
            # Gaps between records can only be blank lines, which Arrow skips too.
            try:
                table = self._arrow(buf, lo, hi, has_quotes)
                if table.num_rows == n:
                    return table, np.zeros(n, dtype=bool)
            except (pa.ArrowInvalid, pa.ArrowKeyError):
                pass
        # Slow path: find malformed records with vectorised checks, parse the rest.
        bad = _malformed(buf, arr, starts, ends, len(self.fields), delim, q if has_quotes else None)
        good = np.flatnonzero(~bad)
        table = self._parse_good(buf, starts[good], ends[good], has_quotes, bad)
        return table, bad

    def _parse_good(self, buf, starts, ends, has_quotes, bad) -> pa.Table:
        """Parse the good records (few bad ones removed); bisect if Arrow still disagrees."""
        n_all = len(bad)
        if len(starts):
            gbuf, gstarts, gends = _compact(buf, starts, ends)
            tables: list[pa.Table] = []
            rejected: list[int] = []
            self._bisect(gbuf, gstarts, gends, 0, len(gstarts), has_quotes, tables, rejected)
            good_idx = np.flatnonzero(~bad)
            if rejected:
                bad[good_idx[rejected]] = True
            table = pa.concat_tables(tables) if tables else None
        else:
            table = None
        if table is None:
            table = pa.table({f"f{i}": pa.nulls(0, pa.string()) for i in range(len(self.fields))})
        take = np.full(n_all, -1, dtype=np.int64)
        take[~bad] = np.arange(int((~bad).sum()))
        # Null indices give null rows: malformed records have no cell values.
        return table.take(pa.array(take, mask=bad))

    def _bisect(self, gbuf, starts, ends, lo, hi, has_quotes, tables, rejected) -> None:
        try:
            table = self._arrow(gbuf, int(starts[lo]), int(ends[hi - 1]), has_quotes)
            if table.num_rows == hi - lo:
                tables.append(table)
                return
        except (pa.ArrowInvalid, pa.ArrowKeyError):
            pass
        if hi - lo == 1:
            rejected.append(lo)
            return
        mid = (lo + hi) // 2
        self._bisect(gbuf, starts, ends, lo, mid, has_quotes, tables, rejected)
        self._bisect(gbuf, starts, ends, mid, hi, has_quotes, tables, rejected)

    def _arrow(self, buf: bytes, lo: int, hi: int, has_quotes: bool) -> pa.Table:
        names = [f"f{i}" for i in range(len(self.fields))]
        data = pa.py_buffer(buf)
        if lo or hi != len(buf):
            data = data.slice(lo, hi - lo)
        return pacsv.read_csv(
            pa.BufferReader(data),
            # One thread: the scan's other stages keep both cores busy, and Arrow's pool
            # splitting each 4 MiB chunk only added hand-offs (10k x 10M: 0.5 CPU-s
            # less, most of it system time; issue #5).
            read_options=pacsv.ReadOptions(
                column_names=names, block_size=4 << 20, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                # Only needed (and slower) when a quote could hold a line break.
                newlines_in_values=has_quotes,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )


def _text_table(cols: list, n: int) -> pa.Table:
    """A table of ``string`` columns ``f0, f1, ...`` from ``(offsets, bytes)`` pairs."""
    return pa.Table.from_arrays(
        [
            pa.StringArray.from_buffers(n, pa.py_buffer(off), pa.py_buffer(data))
            for off, data in cols
        ],
        names=[f"f{i}" for i in range(len(cols))],
    )


# --------------------------------------------------------------------------------------
# Sources: path, stdin or file object; compression by magic bytes; SHA-256 as stored


class _Tap:
    """A read-only file wrapper that hashes what passes and can give back a peeked head."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self._head = b""
        self.hash = hashlib.sha256()
        self.nbytes = 0

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            data = self._pull(n - len(self._head))
            if not data:
                break
            self._head += data
        return self._head[:n]

    def _pull(self, n: int) -> bytes:
        data = self._fh.read(n)
        if isinstance(data, str):
            raise UsageError("read logs must be opened in binary mode ('rb'), not text mode")
        if data:
            self.hash.update(data)
            self.nbytes += len(data)
        return data or b""

    def read(self, n: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            if n is None or n < 0:
                return head + self._drain()
            if len(head) >= n:
                self._head = head[n:]
                return head[:n]
            return head + self._pull(n - len(head))
        if n is None or n < 0:
            return self._drain()
        return self._pull(n)

    def _drain(self) -> bytes:
        parts = []
        while data := self._pull(1 << 20):
            parts.append(data)
        return b"".join(parts)

    def readable(self) -> bool:
        return True


class _Source:
    """Decompressed bytes of a read log, with the SHA-256 of the stored bytes."""

    def __init__(self, source) -> None:
        self._owned = False
        if isinstance(source, str) and source == "-":
            fh, self.label = sys.stdin.buffer, "<stdin>"
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            self.label = path.name
            try:
                fh = open(path, "rb")  # closed by close()
            except FileNotFoundError:
                raise UsageError(f"{source}: no such file") from None
            except IsADirectoryError:
                raise UsageError(f"{source}: is a directory, not a read log") from None
            except PermissionError:
                raise UsageError(f"{source}: permission denied") from None
            self._owned = True
        elif hasattr(source, "read"):
            fh = source
            name = getattr(source, "name", None)
            self.label = Path(name).name if isinstance(name, str) and name else "<stream>"
        else:
            raise UsageError(
                f"cannot read reads from {type(source).__name__}; pass a path, '-' or a binary file"
            )
        self._fh = fh
        self._tap = _Tap(fh)
        self.eof = False
        self._out = 0
        head = self._tap.peek(6)
        self.compression = next((name for magic, name in _MAGIC if head.startswith(magic)), "none")
        if self.compression == "none":
            for magic, what in _NOT_TEXT:
                if head.startswith(magic):
                    raise ReadFormatError(
                        f"{self.label} looks like {what}, not a UTF-8 delimited read log"
                    )
        self._reader = self._open_reader()

    def _open_reader(self):
        if self.compression == "gzip":
            return gzip.GzipFile(fileobj=self._tap, mode="rb")
        if self.compression == "bz2":
            return bz2.BZ2File(self._tap, mode="rb")
        if self.compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise ReadFormatError(
                    f"{self.label} is zstd-compressed, but the 'zstandard' package is not "
                    "installed; install it with: pip install 'geofence[zstd]'"
                ) from None
            return _ZstdReader(self._tap, zstandard)
        return self._tap

    def read(self, n: int) -> bytes:
        """Up to about ``n`` decompressed bytes; ``b""`` and ``eof`` at the end.

        Raises ``_CorruptData`` when the data cannot be decompressed or ends early: the
        tail of a file is never dropped quietly.
        """
        if self.eof:
            return b""
        try:
            data = self._reader.read(n)
        except (EOFError, OSError, zlib.error, ValueError) as exc:
            if isinstance(exc, UsageError):
                raise
            raise _CorruptData(str(exc)) from None
        if not data:
            self.eof = True
        self._out += len(data)
        return data

    def corrupt_message(self, exc: Exception, rows: int) -> str:
        what = self.compression if self.compression != "none" else "input"
        return (
            f"{self.label}: truncated or corrupt {what} data after {self._out:,} decompressed "
            f"bytes (after row {rows:,}): {exc}; re-copy or re-export the file"
        )

    def finish(self) -> str:
        """Hash whatever follows the end of the data (so the digest is of the whole file)."""
        self._tap.read()
        return self._tap.hash.hexdigest()

    def close(self) -> None:
        if self._owned:
            self._fh.close()


@dataclass
class _Span:
    """Complete records of one chunk: ``buf[starts[i]:ends[i]]``, the first being ``row``."""

    buf: bytes
    starts: np.ndarray
    ends: np.ndarray
    quotes: np.ndarray | None  # positions of '"' in buf, None if it has none
    gaps: bool  # blank lines lie between some records
    row: int


class _ReadAhead:
    """Run an iterator in a worker thread, one item ahead of the consumer.

    Errors raised by the iterator are raised again by ``__next__``; ``close`` stops the
    worker (the consumer may stop early) and waits for it.
    """

    def __init__(self, it: Iterator) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(it,), name="geofence-read", daemon=True
        )
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it: Iterator) -> None:
        try:
            for item in it:
                if not self._put(("item", item)):
                    return
            self._put(("done", None))
        except BaseException as exc:  # handed to the consumer
            self._put(("error", exc))

    def __iter__(self) -> _ReadAhead:
        return self

    def __next__(self):
        kind, value = self._queue.get()
        if kind == "item":
            return value
        self._stop.set()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


class _CorruptData(Exception):
    """Internal: the compressed stream is damaged (turned into :class:`ReadFormatError`)."""


class _ZstdReader:
    """zstd frames decompressed in bounded steps; a missing frame end is an error.

    ``zstandard``'s ``stream_reader`` ends quietly on a truncated frame, so this feeds
    ``decompressobj`` small pieces and checks ``eof`` at the end of the input.
    """

    _PIECE = 1 << 16

    def __init__(self, tap: _Tap, zstandard) -> None:
        self._tap = tap
        self._zstd = zstandard
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = None
        self._in_frame = False

    def read(self, n: int) -> bytes:
        out: list[bytes] = []
        size = 0
        while size < n:
            data = self._tap.read(self._PIECE)
            if not data:
                if self._in_frame:
                    raise EOFError("compressed file ended before the end of a zstd frame")
                break
            while data:
                if self._obj is None:
                    self._obj = self._dctx.decompressobj()
                try:
                    piece = self._obj.decompress(data)
                except self._zstd.ZstdError as exc:
                    raise ValueError(str(exc)) from None
                self._in_frame = not self._obj.eof
                if piece:
                    out.append(piece)
                    size += len(piece)
                if self._obj.eof:
                    data = self._obj.unused_data
                    self._obj = None
                else:
                    data = b""
        return b"".join(out)


# --------------------------------------------------------------------------------------
# Byte-level record splitting (NumPy over the buffer)


def _split_spans(
    src: _Source,
    carry: bytes,
    chunk_bytes: int,
    limit: int,
    counts: dict,
    first_bytes: int,
) -> Iterator[_Span]:
    """Record-aligned buffers: read, decompress, hash and split (runs in a worker).

    The first span holds only the records within the first ``first_bytes`` of what the
    header read left over, so the first batch is parsed and matched while the rest is
    read (:data:`FIRST_SPAN_BYTES`).
    """
    row = 1  # row number of the next record
    head = first_bytes if first_bytes and len(carry) > first_bytes else None
    while True:
        if head is not None:
            buf, eof = carry, False  # a prefix: its last record may go on
        elif src.eof:
            buf, eof = carry, True
        else:
            try:
                chunk = src.read(chunk_bytes)
            except _CorruptData as exc:
                raise ReadFormatError(src.corrupt_message(exc, row - 1)) from None
            buf, eof = (carry + chunk if carry else chunk), src.eof
        if not buf:
            return
        prefix = head is not None
        n = head if prefix else len(buf)
        head = None
        arr = np.frombuffer(buf, dtype=np.uint8, count=n)
        ends, q = _record_ends(arr, eof=eof, quotes=buf.find(b'"', 0, n) != -1)
        if ends.size == 0:  # not one complete record yet: read on
            carry = buf
            if not prefix and len(carry) > limit:
                _too_long(src.label, limit, row, len(carry), complete=False)
            continue
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1]
        last_end = int(ends[-1])
        lengths = ends - starts
        gaps = False
        if int(lengths.min()) <= 2:  # only then can a record be a blank line
            blank = _blank_records(arr, starts, ends)
            if blank.any():
                gaps = True
                counts["blank_lines"] += int(blank.sum())
                starts, ends, lengths = starts[~blank], ends[~blank], lengths[~blank]
        if lengths.size and int(lengths.max()) > limit:
            i = int(np.flatnonzero(lengths > limit)[0])
            _too_long(src.label, limit, row + i, int(lengths[i]), complete=True)
        carry = buf[last_end:]
        if not prefix and len(carry) > limit:
            _too_long(src.label, limit, row + len(starts), len(carry), complete=False)
        if starts.size:
            yield _Span(buf, starts, ends, q, gaps, row)
            row += len(starts)
        if eof:
            return


def _too_long(label: str, limit: int, row: int, length: int, *, complete: bool) -> None:
    size = f"{length:,} bytes" if complete else f"more than {length:,} bytes"
    raise ResourceLimitError(
        f"{label}: row {row:,} is {size}, over max_line_bytes={limit:,}; "
        'raise it with --max-line-bytes if the row is right, or look for an unbalanced quote (") that '
        "makes the rest of the file one row"
    )


def _first_record_end(buf: bytes, start: int) -> int:
    """End (exclusive) of the record starting at ``start``, or -1 if not in ``buf``."""
    pos = start
    while True:
        nl = buf.find(b"\n", pos)
        if nl == -1:
            return -1
        if buf.count(b'"', start, nl) % 2 == 0:  # RFC 4180 2.6: a quoted \n is data
            return nl + 1
        pos = nl + 1


def _record_ends(
    arr: np.ndarray, *, eof: bool, quotes: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Exclusive end offsets of the complete records in ``arr`` (which starts at one).

    Also returns the positions of all quotes (``None`` when ``quotes`` says there are none).

    A ``\\n`` ends a record only when an even number of ``"`` precede it (RFC 4180 2.6);
    the chunk always starts at a record boundary, so the parity is counted from 0. At the
    end of the input the remainder, if any, is a last record without a terminator.
    """
    nl = np.flatnonzero(arr == _NL)
    q = None
    if quotes:
        q = np.flatnonzero(arr == _QUOTE)
        nl = nl[(np.searchsorted(q, nl) & 1) == 0]
    ends = nl + 1
    if eof and arr.size and (ends.size == 0 or ends[-1] != arr.size):
        ends = np.append(ends, arr.size)
    return ends.astype(np.int64, copy=False), q


def _blank_records(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Records that are only ``\\n``, ``\\r\\n`` (or a lone final ``\\r``): not records."""
    if starts.size == 0:
        return np.zeros(0, dtype=bool)
    lengths = ends - starts
    first = arr[np.minimum(starts, arr.size - 1)]
    second = arr[np.minimum(starts + 1, arr.size - 1)]
    return ((lengths == 1) & ((first == _NL) | (first == _CR))) | (
        (lengths == 2) & (first == _CR) & (second == _NL)
    )


def _quote_faults(arr: np.ndarray, q: np.ndarray, delim: int) -> np.ndarray:
    """Which quotes break RFC 4180 (sections 2.5-2.7).

    Counting from a record start, a quote at an even index opens a field, so it must
    begin one (record start or after a delimiter) or be the second of a doubled ``""``;
    a quote at an odd index closes, so it must end the field (delimiter, CR, LF, end of
    input) or be the first of a doubled ``""``.
    """
    even = (np.arange(q.size) & 1) == 0
    prev = arr[np.maximum(q - 1, 0)]
    # An opening quote right after a \n starts a record: that \n had an even count of
    # quotes before it, so it ended one (blank lines end in \n too).
    ok_open = (q == 0) | (prev == _NL) | (prev == delim) | (prev == _QUOTE)
    nxt_pos = q + 1
    nxt = arr[np.minimum(nxt_pos, arr.size - 1)]
    ok_close = (
        (nxt_pos >= arr.size) | (nxt == delim) | (nxt == _CR) | (nxt == _NL) | (nxt == _QUOTE)
    )
    return np.where(even, ~ok_open, ~ok_close)


def _malformed(
    buf: bytes, arr: np.ndarray, starts, ends, nfields: int, delim: int, q: np.ndarray | None
) -> np.ndarray:
    """Records that break RFC 4180 or the header's field count, found without a row loop."""
    n = len(starts)
    bad = np.zeros(n, dtype=bool)
    if q is None:
        q = np.zeros(0, dtype=np.int64)
    # Wrong number of fields: delimiters outside quotes (even count before them).
    d = np.flatnonzero(arr == delim)
    if q.size:
        d = d[(np.searchsorted(q, d) & 1) == 0]
    bad |= (np.searchsorted(d, ends) - np.searchsorted(d, starts)) != nfields - 1
    if q.size:
        # Stray quotes make Arrow and the byte offsets disagree on the rows: malformed.
        wrong = _quote_faults(arr, q, delim)
        bad[np.searchsorted(starts, q[wrong], side="right") - 1] = True
        # Unbalanced: an odd count in a record (only the last one, at the end of input).
        bad |= ((np.searchsorted(q, ends) - np.searchsorted(q, starts)) & 1) == 1
    # A bare CR outside quotes: Arrow ends a row there, the byte offsets do not.
    cr = np.flatnonzero(arr == _CR)
    if cr.size:
        nxt = arr[np.minimum(cr + 1, arr.size - 1)]
        lone = (cr + 1 < arr.size) & (nxt != _NL)
        if q.size:
            lone &= (np.searchsorted(q, cr) & 1) == 0
        bad[np.searchsorted(starts, cr[lone], side="right") - 1] = True
    # Undecodable UTF-8: only records holding a non-ASCII byte need a look (a short loop).
    high = np.flatnonzero(arr >= 0x80)
    if high.size:
        for i in np.unique(np.searchsorted(starts, high, side="right") - 1):
            if not bad[i]:
                try:
                    buf[starts[i] : ends[i]].decode("utf-8")
                except UnicodeDecodeError:
                    bad[i] = True
    return bad


def _compact(
    buf: bytes, starts: np.ndarray, ends: np.ndarray
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Concatenate records (given in order) into one buffer; offsets in the new buffer."""
    lengths = ends - starts
    new_ends = np.cumsum(lengths)
    new_starts = new_ends - lengths
    if int(ends[-1] - starts[0]) == int(new_ends[-1]):
        lo = int(starts[0])
        return buf[lo : int(ends[-1])], new_starts, new_ends
    # Join contiguous runs of records (runs are few: they are split by rejected records).
    breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
    run_lo = np.concatenate(([0], breaks))
    run_hi = np.concatenate((breaks, [len(starts)]))
    mv = memoryview(buf)
    joined = b"".join(
        mv[int(starts[a]) : int(ends[b - 1])] for a, b in zip(run_lo, run_hi, strict=True)
    )
    return joined, new_starts, new_ends


def _raw_of(
    buf: bytes, starts: np.ndarray, ends: np.ndarray, *, gaps: bool
) -> tuple[bytes, np.ndarray]:
    """The bytes of the records and offsets into them; blank lines between them left out."""
    if gaps:
        raw, _, new_ends = _compact(buf, starts, ends)
        return raw, np.concatenate(([0], new_ends)).astype(np.int64)
    # Offsets into the whole chunk: the batch that takes these rows copies them once.
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = starts[0]
    offsets[1:] = ends
    return buf, offsets


# --------------------------------------------------------------------------------------
# Header helpers and column mapping


def _detect_delimiter(text: str) -> str:
    """The most frequent of ``, \\t | ;`` outside quotes; ties go to that order."""
    outside = "".join(text.split('"')[::2])
    counts = [outside.count(d) for d in _DELIMITERS]
    return _DELIMITERS[counts.index(max(counts))] if max(counts) else ","


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_\-\ufeff]+", "", name).lower()


def _clean_names(names: list[str], notes: list[str], label: str) -> list[str]:
    """Name blank columns ``column_N`` and suffix repeats ``_2``, ``_3`` (noted)."""
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        new = name if name.strip() else f"column_{i + 1}"
        k = 2
        while new in seen:
            new = f"{name}_{k}"
            k += 1
        if new != name:
            notes.append(
                f"{label}: header column {i + 1} {name!r} renamed {new!r} (blank or repeated)"
            )
        seen.add(new)
        out.append(new)
    return out


def _field_of_key(key: str) -> str | None:
    n = _norm_name(key)
    for field, aliases in _ALIASES.items():
        if n == _norm_name(field) or n in aliases:
            return field
    return None


def _map_columns(
    fields: list[str],
    columns: Mapping[str, str] | None,
    label: str,
    *,
    require_position: bool = True,
) -> dict[str, str]:
    """Normalised field -> input column, from the header names and the ``columns`` overrides.

    With ``require_position`` False a log with a camera id and no coordinate columns at
    all is accepted: its reads are placed by a camera table (``scan --cameras``, issue
    #10) or rejected as ``missing_position``.
    """
    mapping: dict[str, str] = {}
    by_norm: dict[str, str] = {}
    for name in fields:
        by_norm.setdefault(_norm_name(name), name)
    for field, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in by_norm:
                mapping[field] = by_norm[alias]
                break
    for key, column in (columns or {}).items():
        field = _field_of_key(key)
        if field is None:
            raise UsageError(f"columns: unknown field {key!r}; use one of {', '.join(_FIELDS)}")
        if column is None or column == "":
            mapping.pop(field, None)
            continue
        if column not in fields:
            folded = [f for f in fields if f.lower() == str(column).lower()]
            if len(folded) != 1:
                raise UsageError(
                    f"columns: {key}={column!r} names no column of {label}; "
                    f"its header has {len(fields)} columns (see `head -1` of the file)"
                )
            column = folded[0]
        mapping[field] = column
    missing = [f for f in ("lat", "lon") if f not in mapping]
    if missing and not require_position and len(missing) == 2 and "camera_id" in mapping:
        return mapping
    if missing:
        raise ReadFormatError(
            f"{label}: no {' or '.join('latitude' if f == 'lat' else 'longitude' for f in missing)} "
            f"column found among its {len(fields)} header columns (if the first row is data, "
            "add a header row); name them with --columns lat=COLUMN,lon=COLUMN"
        )
    return mapping


# --------------------------------------------------------------------------------------
# Normalisation: strings (or Arrow values) -> positions, times, reasons, output columns


@dataclass
class _Part:
    """Converted rows of one chunk, before they are cut into batches."""

    row: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    time_us: np.ndarray
    reason: np.ndarray
    columns: pa.Table
    raw: bytes | None = None
    offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.row)


class _Done:
    """A finished job: ``result()`` returns the value."""

    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value


class _Normaliser:
    """Turns the input columns of a chunk into a :class:`_Part` (shared by text and tables)."""

    def __init__(
        self,
        fields: list[str],
        mapping: dict[str, str],
        timezone: str,
        label: str,
        notes: list[str],
    ):
        self.fields = fields
        self.mapping = mapping
        self.index = {f: fields.index(c) for f, c in mapping.items()}
        self.timezone = timezone
        self.label = label
        self.notes = notes
        self.time_kind: str | None = None
        self.epoch_ms: bool | None = None
        self.out_names = list(NORMALISED_COLUMNS) + [
            f"input:{f}" if f in NORMALISED_COLUMNS else f for f in fields
        ]
        self._noted: set[str] = set()
        self._numeric = 0
        self._swappable = 0

    @property
    def time_format(self) -> str | None:
        kind = self.time_kind
        tz = self.timezone
        if kind is None:
            return None
        return {
            "iso_offset": "ISO 8601 with UTC offset",
            "iso_local": f"ISO 8601 local time ({tz})",
            "us_dash": f"MM/DD/YYYY - HH:MM:SS local time ({tz})",
            "us_space": f"MM/DD/YYYY HH:MM:SS local time ({tz})",
            "epoch": "epoch milliseconds" if self.epoch_ms else "epoch seconds",
        }[kind]

    def detect_time_kind(self, col: pa.Array) -> None:
        """Name the time form from string values: the form most of them match."""
        if self.time_kind is not None or not pa.types.is_string(col.type):
            return
        t = pc.utf8_trim_whitespace(col)
        present = pc.invert(pc.fill_null(pc.is_in(pc.utf8_lower(t), value_set=_NULL_TOKENS), True))
        t = t.filter(present)
        if len(t) == 0:
            return
        t = t.slice(0, _SAMPLE_ROWS)
        counts = {
            k: pc.sum(pc.match_substring_regex(t, rx)).as_py() or 0 for k, rx in _TIME_RES.items()
        }
        kind = max(counts, key=counts.get)
        if counts[kind] == 0:
            return
        self.time_kind = kind
        if kind == "epoch":
            v = pc.cast(t.filter(pc.match_substring_regex(t, _TIME_RES["epoch"])), pa.float64())
            self.epoch_ms = bool(
                np.nanmedian(np.abs(v.to_numpy(zero_copy_only=False))) >= EPOCH_MS_FROM
            )

    def convert(self, cols: list, malformed: np.ndarray, first_row: int) -> _Part:
        """Convert one chunk's input columns (Arrays or ChunkedArrays, all ``n`` long)."""
        n = len(malformed)
        # The three conversions are independent Arrow/NumPy work that releases the GIL:
        # run the coordinates in the pool while this thread does the times.
        if "lat" in self.index:
            lat_job = _pool().submit(_coordinate, _single(cols[self.index["lat"]]))
            lon_job = _pool().submit(_coordinate, _single(cols[self.index["lon"]]))
        else:  # no coordinate columns: camera-positioned log (issue #10)
            lat_job = lon_job = _Done(
                (np.full(n, np.nan), np.ones(n, dtype=bool), np.zeros(n, dtype=bool))
            )
        if "timestamp" in self.index:
            tcol = _single(cols[self.index["timestamp"]])
            if pa.types.is_large_string(tcol.type) or pa.types.is_string_view(tcol.type):
                tcol = pc.cast(tcol, pa.string())
            self.detect_time_kind(tcol)
            time_us, t_missing, t_bad, ts_strings = self._times(tcol)
        lat, lat_missing, lat_bad = lat_job.result()
        lon, lon_missing, lon_bad = lon_job.result()
        if "timestamp" not in self.index:
            time_us = np.full(n, NO_TIME, dtype=np.int64)
            t_missing = t_bad = np.zeros(n, dtype=bool)
            ts_strings = pa.nulls(n, pa.string())
        pos_missing = lat_missing | lon_missing
        pos_bad = lat_bad | lon_bad
        with np.errstate(invalid="ignore"):
            out_of_range = (np.abs(lat) > 90) | (np.abs(lon) > 180)
            null_island = (lat == 0) & (lon == 0)
            numeric = ~malformed & ~pos_missing & ~pos_bad
            self._numeric += int(numeric.sum())
            self._swappable += int(
                (numeric & (np.abs(lat) > 90) & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)).sum()
            )
        # First applicable reason wins (the order of the reader's contract).
        reason = np.select(
            [malformed, pos_missing, pos_bad, out_of_range, null_island, t_missing, t_bad],
            [REASON_CODE[r] for r in _PRIORITY],
            default=0,
        ).astype(np.int8)
        no_pos = (reason >= REASON_CODE["malformed_row"]) & (reason <= REASON_CODE["null_island"])
        if no_pos.any():
            lat = np.where(no_pos, np.nan, lat)
            lon = np.where(no_pos, np.nan, lon)
        bad_time = malformed | t_missing | t_bad
        if bad_time.any():
            time_us = np.where(bad_time, NO_TIME, time_us)
        norm = []
        for name in NORMALISED_COLUMNS:
            if name == "timestamp":
                norm.append(ts_strings)
            elif name in self.index:
                norm.append(_nonempty_strings(cols[self.index[name]]))
            else:
                norm.append(pa.nulls(n, pa.string()))
        inputs = [_as_strings(c) for c in cols]
        table = pa.Table.from_arrays(norm + inputs, names=self.out_names)
        return _Part(
            row=np.arange(first_row, first_row + n, dtype=np.int64),
            lon=np.ascontiguousarray(lon, dtype=np.float64),
            lat=np.ascontiguousarray(lat, dtype=np.float64),
            time_us=np.ascontiguousarray(time_us, dtype=np.int64),
            reason=reason,
            columns=table,
        )

    def finish(self) -> None:
        if self._numeric and self._swappable == self._numeric:
            lat, lon = self.mapping["lat"], self.mapping["lon"]
            self.notes.append(
                f"coordinates look swapped: every latitude (column {lat!r}) is a plausible "
                f"longitude outside +/-90 and every longitude a plausible latitude; if so, "
                f"use --columns lat={lon},lon={lat}"
            )

    def _note_once(self, key: str, text: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)

    # -- times ------------------------------------------------------------------------

    def _times(self, col: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
        """UTC microseconds, missing and bad masks, and the normalised ISO strings."""
        n = len(col)
        t = col.type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return self._temporal(col)
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            us, ok = _epoch_us(v)
            missing = np.isnan(v)
            bad = ~ok & ~missing
            return us, missing, bad, _iso_strings(us, ok)
        if not pa.types.is_string(t):
            col = _as_strings(col)
        # Fast path: the whole column in the detected form, one vectorised cast. Empty
        # cells become nulls first: they are missing, not bad.
        if self.time_kind is not None:
            s = col
            if n and pc.min(pc.binary_length(s)).as_py() == 0:
                s = pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)
            whole = self._parse_kind(s, self.time_kind, strict=True)
            if whole is not None:
                us, ok = whole
                no = np.zeros(n, dtype=bool)
                if self.time_kind == "iso_offset" and s.null_count == 0 and _is_canonical_utc(s):
                    return us, ~ok, no, s
                return us, ~ok, no, _iso_strings(us, ok)
        # Slow path: the cells still to do are matched against each form (vectorised
        # regexes; the detected form first, so the rest are usually few) and parsed.
        trimmed = pc.utf8_trim_whitespace(col)
        missing = _is_missing(trimmed)
        us = np.full(n, NO_TIME, dtype=np.int64)
        todo = np.flatnonzero(~missing)
        kinds = sorted(_TIME_RES, key=lambda k: k != self.time_kind)
        for kind in kinds:
            if todo.size == 0:
                break
            sub = trimmed if todo.size == n else trimmed.take(pa.array(todo))
            match = pc.fill_null(pc.match_substring_regex(sub, _TIME_RES[kind]), False)
            hit = np.flatnonzero(np.asarray(match.to_numpy(zero_copy_only=False), dtype=bool))
            if hit.size == 0:
                continue
            sub_us, sub_ok = self._parse_kind(sub.take(pa.array(hit)), kind, strict=False)
            us[todo[hit[sub_ok]]] = sub_us[sub_ok]
            keep = np.ones(todo.size, dtype=bool)
            keep[hit[sub_ok]] = False
            todo = todo[keep]
        bad = np.zeros(n, dtype=bool)
        bad[todo] = True
        ok = ~missing & ~bad
        return us, missing, bad, _iso_strings(us, ok)

    def _parse_kind(self, s: pa.Array, kind: str, *, strict: bool):
        """Parse strings of one form to UTC microseconds and an ok mask.

        With ``strict``, return ``None`` unless every non-null cell parses (the fast path);
        otherwise failing cells are ``False`` in the mask. Null cells are not ok.
        """
        n = len(s)
        if kind in ("iso_offset", "iso_local"):
            target = pa.timestamp("us", "UTC") if kind == "iso_offset" else pa.timestamp("us")
            if strict:
                try:
                    ts = pc.cast(s, target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return None
            else:
                ts = _cast_or_null(s, target)
            if kind == "iso_local":
                us, nonexistent = self._localise(_ts_values(ts))
            else:
                us, nonexistent = _ts_values(ts), np.zeros(n, dtype=bool)
            ok = ~_nulls(ts) & ~nonexistent
            if strict and nonexistent.any():
                return None
            return np.where(ok, us, NO_TIME), ok
        if kind in _STRPTIME:
            local = _us_fixed_width(s, kind)  # exports write every cell alike: fast
            if local is None:
                ts = pc.strptime(s, format=_STRPTIME[kind], unit="us", error_is_null=True)
                # Arrow's strptime rolls 02/30 over to 03/02; a changed month reveals it.
                valid = _month_matches(s, ts) & ~_nulls(ts)
                local = np.where(valid, _ts_values(ts), NO_TIME)
            if strict and not ((local != NO_TIME) | _nulls(s)).all():
                return None
            us, nonexistent = self._localise(local)
            ok = (local != NO_TIME) & ~nonexistent
            if strict and nonexistent.any():
                return None
            return np.where(ok, us, NO_TIME), ok
        if kind == "epoch":
            try:
                v = pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                if strict:
                    return None
                v = _cast_or_null(s, pa.float64()).to_numpy(zero_copy_only=False)
            us, ok = _epoch_us(v)
            if strict and not (ok | _nulls(s)).all():
                return None
            return us, ok
        raise AssertionError(kind)

    def _localise(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local wall times (µs, ``NO_TIME`` for none) -> UTC µs, and which never existed.

        In the fall-back hour a wall time happens twice: the earlier (first) instant is
        taken, once noted. In the spring-forward gap it never happened: rejected as
        ``bad_timestamp`` rather than shifted, since any shift would invent a time.

        Arrow's ``assume_timezone`` is asked about each minute of the chunk's span rather
        than each row (zone transitions since 1970 fall on whole minutes), then the
        offsets are looked up per row: some 20 times faster for a day of reads.
        """
        n = len(local)
        tz = self.timezone
        none = np.zeros(n, dtype=bool)
        present = local != NO_TIME
        if tz == "UTC" or not present.any():
            return local, none
        lo, hi = int(local[present].min()), int(local[present].max())
        minute = 60_000_000
        if lo >= 0 and (hi - lo) // minute < 1 << 21:
            first = lo // minute
            grid = np.arange(first, hi // minute + 1, dtype=np.int64) * minute
            early, gap, late = self._assume(grid)
            idx = np.where(present, local // minute - first, 0)
            shift = (early - grid)[idx]
            nonexistent = present & (early != gap)[idx]
            ambiguous = present & (early != late)[idx] & ~nonexistent
            utc = local + shift
        else:
            early, gap, late = self._assume(local, present)
            nonexistent = present & (early != gap)
            ambiguous = present & (early != late) & ~nonexistent
            utc = early
        for mask, key, text in (
            (ambiguous, "ambiguous", "happen twice; the earlier (first) occurrence was taken"),
            (
                nonexistent,
                "nonexistent",
                "never existed; those reads are rejected as bad_timestamp",
            ),
        ):
            if mask.any():
                when = _dt.datetime(1970, 1, 1) + _dt.timedelta(microseconds=int(local[mask][0]))
                hour = "repeated (fall-back)" if key == "ambiguous" else "skipped (spring-forward)"
                self._note_once(
                    key,
                    f"local times in the {hour} hour of {tz}, such as {when:%Y-%m-%d %H:%M:%S}, {text}",
                )
        return np.where(present & ~nonexistent, utc, NO_TIME), nonexistent

    def _assume(self, local: np.ndarray, present: np.ndarray | None = None):
        """UTC µs of local times: (earliest, gap 'latest', ambiguous 'latest') readings."""
        arr = pa.array(local, pa.timestamp("us"), mask=None if present is None else ~present)
        tz = self.timezone
        return tuple(
            _ts_values(pc.assume_timezone(arr, timezone=tz, ambiguous=a, nonexistent=g))
            for a, g in (("earliest", "earliest"), ("earliest", "latest"), ("latest", "earliest"))
        )

    def _temporal(self, col) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
        """Arrow timestamps/dates (from tables): aware ones converted, naive ones localised."""
        t = col.type
        if pa.types.is_date(t):
            col = pc.cast(col, pa.timestamp("s"))
            t = col.type
        if t.unit != "us":
            col = pc.cast(col, pa.timestamp("us", t.tz), safe=False)
        if t.tz is not None:
            us = _ts_values(col)
            nonexistent = np.zeros(len(col), dtype=bool)
        else:
            us, nonexistent = self._localise(_ts_values(col))
        missing = _nulls(col)
        ok = ~missing & ~nonexistent
        return np.where(ok, us, NO_TIME), missing, nonexistent, _iso_strings(us, ok)


_PRIORITY = (
    "malformed_row",
    "missing_position",
    "bad_position",
    "position_out_of_range",
    "null_island",
    "missing_timestamp",
    "bad_timestamp",
)


def _coordinate(col: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Degrees as float64 (NaN where not a number), and the missing and bad masks."""
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        missing = np.isnan(v)
        return v, missing, np.isinf(v)
    if not pa.types.is_string(t):
        col = _as_strings(col)
    # Fast path: one cast of the whole column. "NaN"/"nan" cast to NaN, which is the
    # missing-value token; "inf" to infinity, which is bad.
    if len(col) == 0 or (pc.max(pc.binary_length(col)).as_py() or 0) <= MAX_NUMBER_CHARS:
        try:
            v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        else:
            return v, np.isnan(v), np.isinf(v)
        # Usually it failed on "NA" or empty cells: blank those out and cast again.
        tokens = pc.fill_null(pc.is_in(col, value_set=_EXACT_NULL_TOKENS), True)
        try:
            v = pc.cast(pc.if_else(tokens, pa.scalar(None, pa.string()), col), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        else:
            v = v.to_numpy(zero_copy_only=False)
            return v, np.isnan(v), np.isinf(v)
    trimmed = pc.utf8_trim_whitespace(col)
    missing = _is_missing(trimmed)
    ok = pc.and_(
        pc.match_substring_regex(trimmed, _NUMBER_RE),
        pc.less_equal(pc.binary_length(trimmed), MAX_NUMBER_CHARS),
    )
    ok = np.asarray(pc.fill_null(ok, False).to_numpy(zero_copy_only=False), dtype=bool) & ~missing
    v = _cast_or_null(pc.if_else(pa.array(ok), trimmed, pa.scalar(None, pa.string())), pa.float64())
    v = v.to_numpy(zero_copy_only=False)
    bad = ~missing & ~np.isfinite(v)
    return np.where(missing | bad, np.nan, v), missing, bad


def _is_missing(trimmed: pa.Array) -> np.ndarray:
    """Null, empty or a no-value token (``NA``, ``N/A``, ``NaN``, ``null``, ``None``)."""
    hit = pc.is_in(pc.utf8_lower(trimmed), value_set=_NULL_TOKENS)
    return np.asarray(pc.fill_null(hit, True).to_numpy(zero_copy_only=False), dtype=bool)


def _cast_or_null(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast, with the cells that cannot be cast made null (found by bisection)."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(arr) <= 1:
            return pa.nulls(len(arr), target)
    mid = len(arr) // 2
    return pa.concat_arrays(
        [_cast_or_null(arr.slice(0, mid), target), _cast_or_null(arr.slice(mid), target)]
    )


def _ts_values(ts) -> np.ndarray:
    """int64 microseconds of a timestamp[us] array (NO_TIME for nulls)."""
    v = pc.cast(ts, pa.int64())
    if isinstance(v, pa.ChunkedArray):
        v = v.combine_chunks()
    return (
        v.to_numpy(zero_copy_only=False)
        if v.null_count == 0
        else pc.fill_null(v, NO_TIME).to_numpy()
    )


def _epoch_us(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds or milliseconds (by magnitude, see ``EPOCH_MS_FROM``) -> microseconds."""
    with np.errstate(invalid="ignore"):
        a = np.abs(v)
        ok = np.isfinite(v) & (a < EPOCH_MAX)
        scale = np.where(a >= EPOCH_MS_FROM, 1e3, 1e6)
        us = np.where(ok, np.rint(np.where(ok, v, 0) * scale), 0).astype(np.int64)
    return np.where(ok, us, NO_TIME), ok


_US_LAYOUT = {
    # kind: (width, {position: required byte}, positions of MM DD YYYY HH MM SS digits)
    "us_dash": (21, {2: "/", 5: "/", 10: " ", 11: "-", 12: " ", 15: ":", 18: ":"}, 13),
    "us_space": (19, {2: "/", 5: "/", 10: " ", 13: ":", 16: ":"}, 11),
}


def _us_fixed_width(s: pa.Array, kind: str) -> np.ndarray | None:
    """Parse ``MM/DD/YYYY[ -] HH:MM:SS`` cells of exactly that width with NumPy.

    Returns local µs since the epoch (``NO_TIME`` where a cell is not a real date and
    time), or ``None`` unless every cell has the width (then ``strptime`` is used).
    About ten times faster than Arrow's ``strptime``, which also accepts 02/30.
    """
    width, fixed, t0 = _US_LAYOUT[kind]
    s = _single(s)
    n = len(s)
    if n == 0 or s.null_count:
        return None
    offsets = np.frombuffer(s.buffers()[1], dtype=np.int32)[s.offset : s.offset + n + 1]
    if offsets[-1] - offsets[0] != width * n or not (np.diff(offsets) == width).all():
        return None
    b = np.frombuffer(s.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(n, width)
    # Column by column: NumPy is slow at short rows (a 21-byte row reduction costs more
    # than the 21 strided column passes).
    ok = np.ones(n, dtype=bool)
    for pos, ch in fixed.items():
        ok &= b[:, pos] == ord(ch)

    def num(*cols: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int32)
        for c in cols:
            digit = b[:, c] - np.uint8(48)  # wraps below '0', so one test covers both ends
            ok[:] &= digit < 10
            out = out * 10 + digit
        return out

    month, day, year = num(0, 1), num(3, 4), num(6, 7, 8, 9)
    hour, minute, sec = num(t0, t0 + 1), num(t0 + 3, t0 + 4), num(t0 + 6, t0 + 7)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    month = np.where(month_ok, month, 1)
    dim = _DAYS_IN_MONTH[month - 1] + ((month == 2) & leap)
    ok &= month_ok & (day >= 1) & (day <= dim) & (hour < 24) & (minute < 60) & (sec < 60)
    days = _days_from_civil(year, month, day)
    local = (days.astype(np.int64) * 86400 + (hour * 3600 + minute * 60 + sec)) * 1_000_000
    return np.where(ok, local, NO_TIME)


_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(year, month, day) -> days since 1970-01-01, H. Hinnant's ``days_from_civil``."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_matches(s: pa.Array, ts: pa.Array) -> np.ndarray:
    """Whether the month written first in ``M/D/Y`` strings equals the parsed month."""
    n = len(s)
    if n == 0:
        return np.zeros(0, dtype=bool)
    s = _single(s)
    offsets = np.frombuffer(s.buffers()[1], dtype=np.int32)[s.offset : s.offset + n + 1]
    data = s.buffers()[2]
    if data is None or len(data) == 0:
        return np.zeros(n, dtype=bool)
    b = np.frombuffer(data, dtype=np.uint8)
    first = b[np.minimum(offsets[:-1], b.size - 1)].astype(np.int64) - 48
    second = b[np.minimum(offsets[:-1] + 1, b.size - 1)].astype(np.int64) - 48
    two = (second >= 0) & (second <= 9)
    written = np.where(two, first * 10 + second, first)
    parsed = pc.fill_null(pc.month(ts), -1).to_numpy(zero_copy_only=False)
    return written == parsed


def _is_canonical_utc(s: pa.Array) -> bool:
    """Whether every string is exactly ``YYYY-MM-DDTHH:MM:SSZ`` (then it is reused as is).

    Called only after the whole column cast as ISO 8601; 20 characters with ``T`` at 10
    and ``Z`` at 19 leave no other form.
    """
    s = _single(s)
    n = len(s)
    if n == 0:
        return True
    offsets = np.frombuffer(s.buffers()[1], dtype=np.int32)[s.offset : s.offset + n + 1]
    if offsets[-1] - offsets[0] != 20 * n or not (np.diff(offsets) == 20).all():
        return False
    b = np.frombuffer(s.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(n, 20)
    return bool((b[:, 10] == ord("T")).all() and (b[:, 19] == ord("Z")).all())


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days since 1970-01-01 -> (year, month, day), H. Hinnant's ``civil_from_days``.

    In int32, which divides about twice as fast as int64 (days fit easily).
    """
    z = days.astype(np.int32) + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    y = yoe + era * 400 + (m <= 2)
    return y, m, d


def _digits(table: np.ndarray, col: int, values: np.ndarray) -> None:
    """Write ``values`` (0-99) as two ASCII digits into ``table[:, col:col + 2]``."""
    tens = values // 10
    table[:, col] = tens + 48
    table[:, col + 1] = values - tens * 10 + 48


def _time_of_day_table() -> np.ndarray:
    """``HH:MM:SS`` for each second of a day, as 86,400 items of 8 bytes."""
    s = np.arange(86400, dtype=np.int32)
    t = np.empty((86400, 8), dtype=np.uint8)
    t[:, 2] = t[:, 5] = ord(":")
    for col, val in ((0, s // 3600), (3, s // 60 % 60), (6, s % 60)):
        _digits(t, col, val)
    return t.view("V8").ravel()


def _zulu_table() -> np.ndarray:
    """``HH:MM:SSZ`` for each second of a day, as 86,400 items of 9 bytes."""
    t = np.empty((86400, 9), dtype=np.uint8)
    t[:, :8] = _TIME_OF_DAY.view(np.uint8).reshape(86400, 8)
    t[:, 8] = ord("Z")
    return t.view("V9").ravel()


def _three_digits_table() -> np.ndarray:
    """``000`` .. ``999`` as 1,000 items of 3 bytes."""
    v = np.arange(1000)
    t = np.stack([v // 100, v // 10 % 10, v % 10], axis=1).astype(np.uint8) + 48
    return np.ascontiguousarray(t).view("V3").ravel()


_TIME_OF_DAY = _time_of_day_table()
_ZULU = _zulu_table()
_THREE_DIGITS = _three_digits_table()


def _date_items(days: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DDT`` for each day number (days since 1970-01-01), 11-byte items."""
    y, m, d = _civil(days)
    y = np.clip(y, 0, 9999)
    t = np.empty((len(days), 11), dtype=np.uint8)
    t[:, 4] = t[:, 7] = ord("-")
    t[:, 10] = ord("T")
    for col, val in ((0, y // 100), (2, y % 100), (5, m), (8, d)):
        _digits(t, col, val)
    return t.view("V11").ravel()


def _fixed_strings(rec: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A string array over fixed-width records (a structured array of byte fields)."""
    n, width = len(rec), rec.dtype.itemsize
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    bitmap = (
        None
        if valid is None or valid.all()
        else pa.py_buffer(np.packbits(valid, bitorder="little"))
    )
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(rec), bitmap)


def _iso_strings(us: np.ndarray, ok: np.ndarray) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` for ``us`` where ``ok``, else null.

    Built as bytes with NumPy from lookup tables (the days of the chunk, the seconds of a
    day): Arrow's ``strftime`` costs about 1 s per million rows, this some 30 ms. The
    fraction is written only when it is not zero, without trailing zeros.
    """
    n = len(us)
    if n == 0:
        return pa.array([], pa.string())
    v = np.where(ok, us, 0)
    secs, frac = np.divmod(v, 1_000_000)
    days, sod = np.divmod(secs, 86400)
    first, last = int(days.min()), int(days.max())
    if last - first < 1 << 16:  # a read log spans days or years, not centuries
        dates = _date_items(np.arange(first, last + 1))[days - first]
    else:
        uniq, inverse = np.unique(days, return_inverse=True)
        dates = _date_items(uniq)[inverse]
    rec = np.empty(n, dtype=[("date", "V11"), ("time", "V9")])
    rec["date"] = dates
    rec["time"] = _ZULU[sod]
    plain = _fixed_strings(rec, ok)
    has_frac = frac != 0
    if not has_frac.any():
        return plain
    rec = np.empty(
        n, dtype=[("date", "V11"), ("time", "V8"), ("dot", "V1"), ("ms", "V3"), ("us", "V3")]
    )
    rec["date"] = dates
    rec["time"] = _TIME_OF_DAY[sod]
    rec["dot"] = np.frombuffer(b".", dtype="V1")[0]
    rec["ms"] = _THREE_DIGITS[frac // 1000]
    rec["us"] = _THREE_DIGITS[frac % 1000]
    fraction = pc.utf8_rtrim(_fixed_strings(rec), characters="0")
    fraction = pc.binary_join_element_wise(fraction, "Z", "")
    return pc.if_else(pa.array(has_frac), fraction, plain)


# --------------------------------------------------------------------------------------
# Small Arrow helpers


def _single(arr) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _nulls(arr) -> np.ndarray:
    """Boolean NumPy mask of the null cells."""
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _as_strings(col) -> pa.Array:
    """An input column as strings (tables may hold numbers); left as is if it cannot be."""
    if pa.types.is_string(col.type):
        return col
    if pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
        return pc.cast(col, pa.string())
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return col


def _nonempty_strings(col) -> pa.Array:
    """A normalised text field: the input strings with empty cells made null."""
    col = _as_strings(col)
    if not pa.types.is_string(col.type):
        return pa.nulls(len(col), pa.string())
    if len(col) and pc.min(pc.binary_length(col)).as_py() == 0:
        return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    return col


def _record_batches(data) -> Iterator[pa.RecordBatch]:
    pd = sys.modules.get("pandas")  # a DataFrame implies pandas is already imported
    if pd is not None and isinstance(data, pd.DataFrame):
        data = pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, pa.Table):
        return iter(data.to_batches())
    if isinstance(data, pa.RecordBatch):
        return iter([data])
    if isinstance(data, Iterable):
        return iter(data)
    raise UsageError(
        f"batches_from_table needs a DataFrame, Arrow table or record batches, not {type(data).__name__}"
    )


def _chain_first(first, rest):
    yield first
    yield from rest


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads for converting columns side by side (shared, created on first use)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="geofence-convert")
    return _POOL


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, not {batch_size!r}")


def _check_timezone(tz: str) -> None:
    try:
        zoneinfo.ZoneInfo(tz)
        pc.assume_timezone(pa.array([0], pa.timestamp("us")), timezone=tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, pa.ArrowInvalid):
        raise UsageError(
            f"unknown timezone {tz!r}; use an IANA name such as America/Los_Angeles or UTC"
        ) from None


# --------------------------------------------------------------------------------------
# Batching: parts (one per chunk) -> batches of exactly batch_size rows


def _rebatch(
    parts: Iterator[_Part], batch_size: int | Callable[[], int], *, keep_raw: bool
) -> Iterator[ReadBatch]:
    """Batches of ``batch_size`` rows; a callable is asked again for every batch."""
    size = batch_size if callable(batch_size) else lambda: batch_size
    pending: list[_Part] = []
    have = 0
    batch_size = size()
    for part in parts:
        pos, n = 0, len(part)
        while pos < n:
            take = min(batch_size - have, n - pos)
            pending.append(_slice(part, pos, pos + take) if (pos, take) != (0, n) else part)
            have += take
            pos += take
            if have == batch_size:
                yield _join(pending, keep_raw)
                pending, have = [], 0
                batch_size = size()
    if have:
        yield _join(pending, keep_raw)


def _slice(p: _Part, a: int, b: int) -> _Part:
    return _Part(
        p.row[a:b],
        p.lon[a:b],
        p.lat[a:b],
        p.time_us[a:b],
        p.reason[a:b],
        p.columns.slice(a, b - a),
        p.raw,
        None if p.offsets is None else p.offsets[a : b + 1],
    )


def _join(parts: list[_Part], keep_raw: bool) -> ReadBatch:
    if len(parts) == 1:
        p = parts[0]
        arrays = (p.row, p.lon, p.lat, p.time_us, p.reason)
        columns = p.columns
    else:
        arrays = tuple(
            np.concatenate([getattr(p, k) for p in parts])
            for k in ("row", "lon", "lat", "time_us", "reason")
        )
        columns = pa.concat_tables([p.columns for p in parts])
    raw = offsets = None
    if keep_raw and parts[0].offsets is not None:
        pieces, offs, shift = [], [np.zeros(1, dtype=np.int64)], 0
        for p in parts:
            lo, hi = int(p.offsets[0]), int(p.offsets[-1])
            whole = (lo, hi) == (0, len(p.raw))
            pieces.append(p.raw if whole else memoryview(p.raw)[lo:hi])
            offs.append(p.offsets[1:] - lo + shift)
            shift += hi - lo
        if len(pieces) == 1:
            raw = pieces[0] if isinstance(pieces[0], bytes) else pieces[0].tobytes()
        else:
            raw = b"".join(pieces)
        offsets = np.concatenate(offs)
    return ReadBatch(*arrays, columns=columns, raw=raw, offsets=offsets)
