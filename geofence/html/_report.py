"""Read a geofence report (GeoJSON, GeoJSON-seq or CSV) as a stream of column blocks.

The writers of :mod:`geofence.report` put one feature per line (GeoJSON: ``,`` at the end of
every line but the last; GeoJSON-seq: RFC 8142 ``RS`` before each line), so the fast path
turns each block of lines into newline-delimited JSON and lets Arrow's JSON reader parse it
(no Python object per feature). A GeoJSON file laid out differently, or with property types
Arrow cannot reconcile, is read by a slower, still streaming, decoder. The CSV is read with
Arrow's streaming CSV reader; its ``matches`` column (``site_id@distance_m;…``) is split
with vectorised string kernels.

Every block has the same shape: ``lon``, ``lat``, the report's properties in file order, and
the matches in compressed-row form. Memory is one block (``BLOCK_BYTES`` of input) at a time.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from geofence.errors import GeofenceError

BLOCK_BYTES = 16 << 20
"""Bytes of report read per block (about 25,000 GeoJSON features or 120,000 CSV rows)."""

# Types of the properties geofence writes; the JSON reader infers anything else.
_STR = pa.string()
_MATCH = pa.struct([("site_id", _STR), ("category", _STR), ("distance_m", pa.float64())])
KNOWN_TYPES = {
    "row": pa.int64(),
    "source": _STR,
    "read_id": _STR,
    "plate": _STR,
    "timestamp": _STR,
    "camera_id": _STR,
    "agency": _STR,
    "site_id": _STR,
    "site_name": _STR,
    "category": _STR,
    "distance_m": pa.float64(),
    "buffer_m": pa.float64(),
    "tier": _STR,
    "packs": pa.list_(_STR),
    "clauses": pa.list_(_STR),
    "n_matches": pa.int64(),
    "matches": pa.list_(_MATCH),
}
_CSV_NUMERIC = {
    "row": pa.int64(),
    "distance_m": pa.float64(),
    "buffer_m": pa.float64(),
    "n_matches": pa.int64(),
    "lon": pa.float64(),
    "lat": pa.float64(),
}


class ReportError(GeofenceError, ValueError):
    """Raised when a report, its summary or its layers cannot be read or do not belong together."""


@dataclass
class Block:
    """Flagged reads of one block of a report.

    Attributes
    ----------
    lon, lat : numpy.ndarray
        float64 degrees (WGS84).
    props : dict of str to pyarrow.Array
        Report properties in file order (``matches`` and the coordinates excluded).
    match_ptr : numpy.ndarray
        int64, ``len + 1``: the matches of read ``i`` are ``match_ptr[i]:match_ptr[i+1]``.
    match_site : pyarrow.Array
        site_id of every match.
    match_distance_m : numpy.ndarray
        distance_m of every match.
    """

    lon: np.ndarray
    lat: np.ndarray
    props: dict
    match_ptr: np.ndarray
    match_site: pa.Array
    match_distance_m: np.ndarray

    def __len__(self) -> int:
        return len(self.lon)


class _HashingReader(io.RawIOBase):
    """A readable file that keeps the SHA-256 and size of the raw bytes read through it."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._fh.readinto(b)
        if n:
            self.sha.update(memoryview(b)[:n])
            self.size += n
        return n


class ReportStream:
    """Open a report file; iterate over its :class:`Block` s; then read ``sha256`` and ``format``.

    Parameters
    ----------
    path : path-like
        The report (``.gz`` and ``.bz2`` are decompressed).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fields: frozenset | None = None
        try:
            raw = open(self.path, "rb")  # closed in close()
        except OSError as exc:
            raise ReportError(
                f"{self.path}: cannot read the report ({exc.strerror}); give the file `geofence scan --out` wrote"
            ) from None
        self._raw = raw
        self._hash = _HashingReader(raw)
        buffered = io.BufferedReader(self._hash, buffer_size=1 << 20)
        name = self.path.name.lower()
        if name.endswith(".gz"):
            self._fh = gzip.GzipFile(fileobj=buffered)
        elif name.endswith(".bz2"):
            self._fh = bz2.BZ2File(buffered)
        else:
            self._fh = buffered
        self._fh = (
            io.BufferedReader(self._fh, buffer_size=1 << 20)
            if not isinstance(self._fh, io.BufferedReader)
            else self._fh
        )
        self.format = self._sniff()

    def _sniff(self) -> str:
        head = self._fh.peek(1 << 16)[: 1 << 16].lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"\x1e"):
            return "geojsonseq"
        if head.startswith(b"{"):
            first = head.split(b"\n", 1)[0]
            try:
                obj = json.loads(first)
            except ValueError:
                return "geojson"  # a FeatureCollection laid out over several lines
            # newline-delimited Features without RS, or geofence's collection header line
            return (
                "geojsonseq"
                if isinstance(obj, dict) and obj.get("type") == "Feature"
                else "geojson"
            )
        if not head:
            raise ReportError(
                f"{self.path}: the report is empty; give the file `geofence scan --out` wrote"
            )
        return "csv"

    @property
    def sha256(self) -> str:
        """SHA-256 of the file's bytes (complete once the blocks are exhausted)."""
        return self._hash.sha.hexdigest()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> ReportStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def blocks(self, fields: Iterable[str] | None = None) -> Iterator[Block]:
        """Yield the report's flagged reads block by block, in file order.

        ``fields`` names the properties needed (``matches`` included); the others are
        skipped by the parsers, which is over twice as fast for GeoJSON. Default: all.
        """
        self.fields = None if fields is None else frozenset(fields)
        try:
            if self.format == "csv":
                yield from _read_csv_blocks(self)
            else:
                yield from self._json_blocks()
        except (OSError, EOFError) as exc:
            raise ReportError(
                f"{self.path}: the report cannot be read ({exc}); is the file complete?"
            ) from None
        # the hash must cover the whole file, also what follows the last feature
        while self._fh.read(1 << 20):
            pass

    # ---------------------------------------------------------------- JSON
    def _lines(self) -> Iterator[bytes]:
        """Blocks of whole lines."""
        leftover = b""
        while True:
            data = self._fh.read(BLOCK_BYTES)
            if not data:
                break
            buf = leftover + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                leftover = buf
                continue
            leftover = buf[cut + 1 :]
            yield buf[: cut + 1]
        if leftover.strip():
            yield leftover + b"\n"

    def _json_blocks(self) -> Iterator[Block]:
        collection = self.format == "geojson"
        lines = self._lines()
        first = True
        for block in lines:
            if first and collection:
                first = False
                header, _, block = block.partition(b"\n")
                if header.strip() != b'{"type": "FeatureCollection", "features": [':
                    # not laid out one feature per line: decode feature by feature
                    yield from _generic_collection(
                        self.path, header + b"\n" + block, lines, self.fields
                    )
                    return
            first = False
            if collection:
                # the closing "]}" line is the file's last: look for it in the block's tail only
                if block.startswith(b"]"):
                    block = b""
                else:
                    end = block.find(b"\n]", max(0, len(block) - 4096))
                    if end >= 0:
                        block = block[: end + 1]
                block = block.replace(b",\n", b"\n")
            else:
                block = block.replace(b"\x1e", b"")
            if block.strip():
                yield _json_block(self.path, block, self.fields)


def _json_block(path: Path, data: bytes, wanted: frozenset | None = None) -> Block:
    """Parse newline-delimited Features (Arrow), falling back to Python for odd types."""
    # Arrow fills fields of an explicit schema that the data lack with nulls: type only the
    # properties the block's first feature has (geofence writes the same keys on every line).
    first = _loads(path, next((ln for ln in data[: 1 << 20].split(b"\n") if ln.strip()), b"{}"), 0)
    keys = (first.get("properties") or {}) if isinstance(first, dict) else {}
    if wanted is not None:
        keys = {k: v for k, v in keys.items() if k in wanted}
    schema = pa.schema(
        [
            ("geometry", pa.struct([("type", _STR), ("coordinates", pa.list_(pa.float64()))])),
            ("properties", pa.struct([(k, t) for k, t in KNOWN_TYPES.items() if k in keys])),
        ]
    )
    try:
        table = pajson.read_json(
            io.BytesIO(data),
            # one block, one thread: Arrow's threaded JSON reader was 2.3 times slower on the
            # 2-core benchmark machine (issue #9 benchmark notes)
            read_options=pajson.ReadOptions(
                block_size=max(1 << 20, len(data) + 1), use_threads=False
            ),
            # properties not wanted are skipped, not built (2.4 times faster on reports)
            parse_options=pajson.ParseOptions(
                explicit_schema=schema,
                unexpected_field_behavior="infer" if wanted is None else "ignore",
            ),
        )
    except pa.ArrowInvalid:
        feats = []
        for n, line in enumerate(data.split(b"\n")):
            if line.strip():
                feats.append(_loads(path, line, n))
        return _block_from_features(path, feats, wanted)
    geom = table.column("geometry").combine_chunks()
    props = table.column("properties").combine_chunks()
    coords = geom.field("coordinates")
    if coords.null_count or pc.min(pc.list_value_length(coords)).as_py() < 2:
        raise ReportError(
            f"{path}: a feature has no point geometry; the HTML report draws Point features as `geofence scan` writes them"
        )
    first = pc.list_element(coords, 0).to_numpy(zero_copy_only=False)
    second = pc.list_element(coords, 1).to_numpy(zero_copy_only=False)
    fields = {props.type.field(i).name: props.field(i) for i in range(props.type.num_fields)}
    return _make_block(path, first, second, fields)


def _loads(path: Path, line: bytes, n: int) -> dict:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise ReportError(
            f"{path}: a feature near block line {n + 1} is not valid JSON ({exc.msg}); is the file complete?"
        ) from None


def _make_block(path: Path, lon: np.ndarray, lat: np.ndarray, fields: dict) -> Block:
    matches = fields.pop("matches", None)
    n = len(lon)
    if matches is None or pa.types.is_null(matches.type):
        ptr = np.zeros(n + 1, np.int64)
        site = pa.array([], _STR)
        dist = np.zeros(0)
    else:
        counts = pc.fill_null(pc.list_value_length(matches), 0).to_numpy(zero_copy_only=False)
        ptr = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        flat = pc.list_flatten(matches)
        site = flat.field("site_id").cast(_STR)
        dist = pc.fill_null(flat.field("distance_m").cast(pa.float64()), np.nan).to_numpy(
            zero_copy_only=False
        )
    return Block(np.asarray(lon, np.float64), np.asarray(lat, np.float64), fields, ptr, site, dist)


def _block_from_features(path: Path, feats: list, wanted: frozenset | None = None) -> Block:
    """The slow path: Python dicts of Features into a Block (types reconciled per column)."""
    lon, lat = [], []
    cols: dict[str, list] = {}
    for i, f in enumerate(feats):
        g = f.get("geometry") if isinstance(f, dict) else None
        if not g or g.get("type") != "Point" or len(g.get("coordinates") or ()) < 2:
            raise ReportError(
                f"{path}: feature {i + 1} of a block is not a Point Feature; give the file `geofence scan --out` wrote"
            )
        lon.append(float(g["coordinates"][0]))
        lat.append(float(g["coordinates"][1]))
        props = f.get("properties") or {}
        if wanted is not None:
            props = {k: v for k, v in props.items() if k in wanted}
        for k in props:
            cols.setdefault(k, [None] * i)
        for k, col in cols.items():
            col.append(props.get(k))
    fields = {}
    for k, values in cols.items():
        t = KNOWN_TYPES.get(k)
        try:
            fields[k] = pa.array(values, type=t)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            if k == "matches":
                raise ReportError(
                    f"{path}: property matches is not a list of {{site_id, category, distance_m}}"
                ) from None
            fields[k] = pa.array(
                [
                    None if v is None else (v if isinstance(v, str) else json.dumps(v))
                    for v in values
                ],
                _STR,
            )
    return _make_block(path, np.array(lon), np.array(lat), fields)


def _generic_collection(
    path: Path, start: bytes, rest: Iterator[bytes], wanted: frozenset | None = None
) -> Iterator[Block]:
    """Stream the features of any FeatureCollection layout with ``json.JSONDecoder.raw_decode``."""
    decoder = json.JSONDecoder()
    text = start.decode("utf-8")
    chunks = (b.decode("utf-8") for b in rest)
    pos = _find_features(text)
    while pos < 0:
        more = next(chunks, None)
        if more is None:
            raise ReportError(
                f'{path}: no "features" array found; give a GeoJSON FeatureCollection as `geofence scan` writes it'
            )
        text += more
        pos = _find_features(text)
    text = text[pos:]
    batch: list = []
    done = False
    while not done:
        i = 0
        while True:
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i < len(text) and text[i] == "]":
                done = True
                break
            try:
                obj, j = decoder.raw_decode(text, i)
            except ValueError:
                break  # incomplete: read more
            batch.append(obj)
            i = j
        text = text[i:]
        if len(batch) >= 25_000 or (done and batch):
            yield _block_from_features(path, batch, wanted)
            batch = []
        if done:
            break
        more = next(chunks, None)
        if more is None:
            raise ReportError(f"{path}: the FeatureCollection ends early; is the file complete?")
        text += more


def _find_features(text: str) -> int:
    m = re.search(r'"features"\s*:\s*\[', text)
    return -1 if m is None else m.end()


# -------------------------------------------------------------------- CSV


def _csv_reader(stream: ReportStream):
    header = stream._fh.readline()
    try:
        names = next(csv.reader([header.decode("utf-8-sig")]))
    except (StopIteration, UnicodeDecodeError):
        raise ReportError(
            f"{stream.path}: no CSV header; give the file `geofence scan --format csv` wrote"
        ) from None
    for need in ("lon", "lat"):
        if need not in names:
            raise ReportError(
                f"{stream.path}: the CSV report has no {need} column; give the file `geofence scan --format csv` wrote"
            )
    types = {n: _CSV_NUMERIC.get(n, _STR) for n in names}
    keep = [n for n in names if stream.fields is None or n in stream.fields or n in ("lon", "lat")]
    reader = pacsv.open_csv(
        stream._fh,
        read_options=pacsv.ReadOptions(
            column_names=names, block_size=BLOCK_BYTES, use_threads=True
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            include_columns=keep,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return keep, reader


def _read_csv_blocks(self: ReportStream) -> Iterator[Block]:
    names, reader = _csv_reader(self)
    for batch in reader:
        if batch.num_rows == 0:
            continue
        cols = {n: batch.column(n) for n in names}
        lon = cols.pop("lon")
        lat = cols.pop("lat")
        if lon.null_count or lat.null_count:
            raise ReportError(
                f"{self.path}: a row of the CSV report has no lon/lat; give the file `geofence scan --format csv` wrote"
            )
        matches = cols.pop("matches", None)
        fields = dict(cols)
        if matches is not None:
            # "site_id@distance_m;…" -> list<struct>: split on ";", then on the last "@"
            parts = pc.split_pattern(pc.fill_null(matches, ""), ";")
            flat = pc.list_flatten(parts)
            keep = pc.not_equal(flat, "")
            counts = _count_true(parts, keep)
            flat = flat.filter(keep)
            ext = pc.extract_regex(flat, r"^(?P<site_id>.*)@(?P<distance_m>[^@]*)$")
            if ext.null_count:
                raise ReportError(
                    f"{self.path}: a matches cell is not site_id@distance_m;…; give the file `geofence scan --format csv` wrote"
                )
            dist = pc.cast(ext.field("distance_m"), pa.float64())
            entries = pa.StructArray.from_arrays(
                [ext.field("site_id"), pa.nulls(len(ext), _STR), dist],
                names=["site_id", "category", "distance_m"],
            )
            offsets = np.zeros(len(counts) + 1, np.int32)
            np.cumsum(counts, out=offsets[1:])
            fields["matches"] = pa.ListArray.from_arrays(pa.array(offsets), entries)
        yield _make_block(
            self.path,
            lon.to_numpy(zero_copy_only=False),
            lat.to_numpy(zero_copy_only=False),
            fields,
        )


def _count_true(parts: pa.ListArray, keep: pa.BooleanArray) -> np.ndarray:
    """Number of kept list elements per row."""
    parent = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
    k = keep.to_numpy(zero_copy_only=False)
    return np.bincount(parent[k], minlength=len(parts)).astype(np.int64)
