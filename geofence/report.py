"""Report writers (GeoJSON, GeoJSON-seq, CSV) and the summary of a scan.

Writers take one scanned batch at a time and never hold more than that batch, so a
report of any size streams. Rows keep input order; numbers are written the same way
on every run, so the same inputs give the same bytes (issue #6).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from geofence._kernels import join_matches
from geofence.model import REJECT_REASONS

FORMATS = ("geojson", "geojsonseq", "csv")

# distance_m is reported to the millimetre: the method is good to micrometres and
# PostGIS itself differs by up to 9 mm (exact-distance.md).
DISTANCE_DECIMALS = 3

READ_FIELDS = ("read_id", "plate", "timestamp", "camera_id", "agency")


class PlatePseudonymizer:
    """Replace plates by a keyed HMAC-SHA256 so one plate still links across a report.

    Parameters
    ----------
    key : bytes
        Secret key (e.g. the bytes of ``--pseudonymize-plates KEYFILE``).
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, plates: pa.Array) -> pa.Array:
        """Pseudonymise an array of plates (nulls stay null); each distinct plate hashed once."""
        enc = pc.dictionary_encode(plates)
        dic = enc.dictionary.to_pylist()
        hashed = pa.array(
            [
                None if p is None else hmac.new(self._key, p.encode(), hashlib.sha256).hexdigest()
                for p in dic
            ],
            type=pa.string(),
        )
        return pc.take(hashed, enc.indices)


@dataclass
class ScanTables:
    """The flagged reads of one batch, ready for the writers.

    ``flagged`` holds one row per flagged read (input order) with the read fields, the
    nearest site and the policy labels; ``matches_*`` hold every match in compressed-row
    form aligned with ``flagged``.
    """

    flagged: pa.Table
    lon: np.ndarray
    lat: np.ndarray
    match_ptr: np.ndarray
    match_site: np.ndarray  # site codes into site_ids / site_categories
    match_distance_m: np.ndarray
    site_ids: pa.Array
    site_categories: pa.Array

    @property
    def match_site_id(self) -> pa.Array:
        """The site id of every match (built on demand: the CSV writer does not need it)."""
        return self.site_ids.take(pa.array(self.match_site))

    @property
    def match_category(self) -> pa.Array:
        """The category of every match."""
        return self.site_categories.take(pa.array(self.match_site))


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(type(o))


class Writer:
    """Base writer: ``start()``, ``write(tables)`` per batch, ``finish()``.

    Fragment form (issue #13): a partition of a scale-out scan writes with
    ``fragment=True`` and never calls ``start``/``finish``; its bytes are the body only
    (no document header or footer, no separator before its first record, a CSV header
    kept in ``header`` instead of written). The full writer of the final file then takes
    the fragments in partition order with :meth:`append_fragment`, which adds exactly
    what a single writer would have written between them, so the bytes are the same.
    """

    SEP = b""  # written between the records of two non-empty fragments

    def __init__(self, fh, *, fragment: bool = False, attribution: str | None = None) -> None:
        self.fh = fh
        self.fragment = fragment
        # credits the sites' licences ask of every report (ODbL 4.3 for OpenStreetMap
        # sites, issue #8); formats with a document header carry them
        self.attribution = attribution
        self.header: bytes | None = None
        self._first = True  # nothing written yet

    def start(self) -> None:
        pass

    def write(self, t: ScanTables) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass

    def append_fragment(self, header: bytes | None, size: int, chunks) -> None:
        """Append one fragment: its ``header`` (as the writer kept it), ``size`` bytes of body
        in ``chunks`` (an iterable of bytes)."""
        if size and not self._first:
            self.fh.write(self.SEP)
        for chunk in chunks:
            self.fh.write(chunk)
        self._first = self._first and not size


def _features(t: ScanTables):
    """Yield GeoJSON Feature dicts of a batch (RFC 7946: [lon, lat])."""
    cols = t.flagged.to_pydict()
    n = t.flagged.num_rows
    names = list(cols)
    ptr = t.match_ptr
    ids = t.match_site_id.to_pylist()
    cats = t.match_category.to_pylist()
    dists = t.match_distance_m.tolist()
    lon = t.lon.tolist()
    lat = t.lat.tolist()
    for i in range(n):
        props = {k: cols[k][i] for k in names}
        props["packs"] = props["packs"].split(";") if props.get("packs") else []
        props["clauses"] = props["clauses"].split(";") if props.get("clauses") else []
        props["matches"] = [
            {"site_id": ids[j], "category": cats[j], "distance_m": dists[j]}
            for j in range(ptr[i], ptr[i + 1])
        ]
        yield {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon[i], lat[i]]},
            "properties": props,
        }


class GeoJSONWriter(Writer):
    """An RFC 7946 FeatureCollection, written feature by feature."""

    HEAD = b'{"type": "FeatureCollection", "features": [\n'
    SEP = b",\n"
    FOOT = b"\n]}\n"

    def start(self) -> None:
        if self.attribution:
            # a foreign member (RFC 7946 section 6.1) ahead of the features
            credit = json.dumps(self.attribution, ensure_ascii=False)
            self.fh.write(
                self.HEAD.replace(
                    b'"features"', b'"attribution": ' + credit.encode() + b', "features"'
                )
            )
        else:
            self.fh.write(self.HEAD)
        self._first = True

    def write(self, t: ScanTables) -> None:
        buf = io.StringIO()
        for feat in _features(t):
            if not self._first:
                buf.write(",\n")
            self._first = False
            buf.write(
                json.dumps(feat, ensure_ascii=False, separators=(",", ":"), default=_json_default)
            )
        self.fh.write(buf.getvalue().encode())

    def finish(self) -> None:
        self.fh.write(self.FOOT)


class GeoJSONSeqWriter(Writer):
    """RFC 8142 GeoJSON text sequence: one RS-prefixed Feature per line."""

    def write(self, t: ScanTables) -> None:
        buf = io.StringIO()
        for feat in _features(t):
            buf.write("\x1e")
            buf.write(
                json.dumps(feat, ensure_ascii=False, separators=(",", ":"), default=_json_default)
            )
            buf.write("\n")
        self.fh.write(buf.getvalue().encode())


class CSVWriter(Writer):
    """One row per flagged read; ``matches`` as ``site_id@distance_m`` joined by ``;``.

    For large outputs the CSV leaves out ``site_name``, ``tier``, ``packs`` and
    ``clauses``: they follow from ``site_id`` and ``category`` through the layers and the
    summary's policy. Values are quoted only in batches where some value needs it (a
    delimiter, quote or line break inside), which RFC 4180 readers take either way.
    """

    DROP = ("site_name", "tier", "packs", "clauses")

    def __init__(self, fh, *, fragment: bool = False, attribution: str | None = None) -> None:
        super().__init__(fh, fragment=fragment, attribution=attribution)
        self._header = True
        self._prefix_of: pa.Array | None = None
        self._prefix: pa.Array | None = None

    def write(self, t: ScanTables) -> None:
        if t.flagged.num_rows == 0 and not self._header:
            return
        matches, nearest = self._matches(t)
        table = t.flagged.drop_columns([c for c in self.DROP if c in t.flagged.column_names])
        names = table.column_names
        if "distance_m" in names:
            table = table.set_column(names.index("distance_m"), "distance_m", nearest)
        table = table.append_column("lon", _number_text(t.lon))
        table = table.append_column("lat", _number_text(t.lat))
        table = table.append_column("matches", matches)
        data = self._arrow_csv(_as_text(table))
        if self._header and self.fragment:
            # our own column names hold no line break: the header is the first line
            cut = data.index(b"\n") + 1
            self.header, data = data[:cut], data[cut:]
        self._header = False
        self.fh.write(data)

    def _arrow_csv(self, table: pa.Table) -> bytes:
        buf = io.BytesIO()
        try:
            # Arrow refuses unquoted values that hold a delimiter, quote or line break
            pacsv.write_csv(
                table,
                buf,
                write_options=pacsv.WriteOptions(include_header=self._header, quoting_style="none"),
            )
        except pa.ArrowInvalid:
            buf = io.BytesIO()
            pacsv.write_csv(
                table,
                buf,
                write_options=pacsv.WriteOptions(
                    include_header=self._header, quoting_style="needed"
                ),
            )
        return buf.getvalue()

    def _matches(self, t: ScanTables) -> tuple[pa.Array, pa.Array]:
        """The ``matches`` text of each flagged read and the text of its nearest distance.

        Distances are whole millimetres (``DISTANCE_DECIMALS``), so one compiled pass
        writes them as integers with the point put in (:func:`geofence._kernels.join_matches`),
        the same text as Arrow's shortest round trip, without hashing or formatting ~8M
        doubles per 1M reads at 100k sites (issue #5). (Arrow writes exponents from
        1e10 m; a fence's distances stay below a few kilometres.)
        """
        n = len(t.match_ptr) - 1
        mm = np.rint(np.asarray(t.match_distance_m, np.float64) * 10**DISTANCE_DECIMALS)
        prefix = self._prefixes(t.site_ids)
        _, p_off, p_data = prefix.buffers()
        m_off, m_data, d_off, d_data = join_matches(
            np.asarray(t.match_ptr, np.int64),
            np.asarray(t.match_site, np.int64),
            mm.astype(np.int64),
            np.frombuffer(p_off, np.int32, len(prefix) + 1, prefix.offset * 4),
            np.frombuffer(p_data, np.uint8) if p_data is not None else np.empty(0, np.uint8),
        )
        return (
            pa.LargeStringArray.from_buffers(n, pa.py_buffer(m_off), pa.py_buffer(m_data)),
            pa.LargeStringArray.from_buffers(n, pa.py_buffer(d_off), pa.py_buffer(d_data)),
        )

    def _prefixes(self, site_ids: pa.Array) -> pa.Array:
        """``site_id@`` of every site, built once per site table."""
        if self._prefix_of is not site_ids:
            self._prefix_of = site_ids
            prefix = pc.binary_join_element_wise(site_ids, "@", "")
            if isinstance(prefix, pa.ChunkedArray):
                prefix = prefix.combine_chunks()
            self._prefix = prefix.cast(pa.string())
        return self._prefix

    def append_fragment(self, header: bytes | None, size: int, chunks) -> None:
        """The first fragment that has a header brings it (a single writer writes it at its
        first batch, with that batch's quoting); the bodies follow one another."""
        if header is not None and self._header:
            self.fh.write(header)
            self._header = False
        for chunk in chunks:
            self.fh.write(chunk)


def _as_text(table: pa.Table) -> pa.Table:
    """Every column as ``string``, the type Arrow's CSV writer casts each column to.

    Casting here, once per column, gives the writer's own bytes for less: the writer
    casts each 1,024-row slice apart, and a 31k-row batch took 11.5 ms to write as it
    came, 4.2 ms (+1.6 ms of casts) as text (issue #5; ~0.2 CPU-s per 10M reads at 10k
    sites). Dictionaries (few labels) format their values, not every row's.
    """
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type):
            continue
        col = table.column(i).combine_chunks()
        if pa.types.is_dictionary(f.type):
            text = col.dictionary.cast(pa.string()).take(col.indices)
        else:
            text = col.cast(pa.string())
        table = table.set_column(i, f.name, text)
    return table


def _number_text(values: np.ndarray) -> pa.Array:
    """Shortest round-trip text of float64 values, each distinct value formatted once.

    Fixed cameras repeat their positions, and formatting a double costs ~15x hashing
    it (issue #5). ``+ 0.0`` makes -0.0 print as
    0, so the text of a value never depends on which sign of zero came first.
    """
    enc = pc.dictionary_encode(pa.array(np.asarray(values, np.float64) + 0.0))
    return pc.cast(enc.dictionary, pa.string()).take(enc.indices)


WRITERS = {"geojson": GeoJSONWriter, "geojsonseq": GeoJSONSeqWriter, "csv": CSVWriter}


@dataclass
class Summary:
    """Counts of a scan or filter run; ``reads_in`` always equals the sum of the outcomes."""

    reads_in: int = 0
    reads_clean: int = 0
    reads_flagged: int = 0
    reads_rejected: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    flagged_by_category: Counter = field(default_factory=Counter)
    flagged_by_site: Counter = field(default_factory=Counter)
    flagged_by_agency: Counter = field(default_factory=Counter)
    flagged_by_camera: Counter = field(default_factory=Counter)
    _pending: dict = field(default_factory=dict, repr=False, compare=False)

    def add(
        self,
        reason: np.ndarray,
        flagged: np.ndarray,
        category=None,
        site_id=None,
        agency=None,
        camera=None,
    ) -> None:
        """Count one batch: ``reason`` codes of all reads, and per flagged read its labels
        (or give the labels with :meth:`add_labels`, in pieces)."""
        n = len(reason)
        rej = reason != 0
        n_rej = int(rej.sum())
        n_flag = int(flagged.sum())
        self.reads_in += n
        self.reads_rejected += n_rej
        self.reads_flagged += n_flag
        self.reads_clean += n - n_rej - n_flag
        codes, counts = np.unique(reason[rej], return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist(), strict=True):
            self.rejected_by_reason[REJECT_REASONS[c]] += k
        self.add_labels(category, site_id, agency, camera)

    def add_labels(self, category, site_id, agency, camera) -> None:
        """Count the labels of flagged reads (already counted by :meth:`add`)."""
        for name, values in (
            ("flagged_by_category", category),
            ("flagged_by_site", site_id),
            ("flagged_by_agency", agency),
            ("flagged_by_camera", camera),
        ):
            if values is None or len(values) == 0:
                continue
            pending = self._pending.setdefault(name, [])
            pending.append(_value_counts(values))
            if sum(t.num_rows for t in pending) > _PENDING_ROWS:
                self._pending[name] = [_sum_counts(pending)]

    def settle(self) -> None:
        """Fold the batches' pending label counts into the counters.

        Counting in Arrow and adding to the Python counters once, not per batch, keeps
        per-label Python work out of the output stage (issue #5).
        """
        for name, pending in self._pending.items():
            t = _sum_counts(pending)
            counter = getattr(self, name)
            for v, k in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True):
                counter[v] += k
        self._pending.clear()

    def __getstate__(self) -> dict:
        self.settle()
        return self.__dict__.copy()

    def merge(self, other: Summary) -> None:
        """Add the counts of ``other`` (a partition of the same scan, issue #13).

        The full counters are added, so top-50 lists cut afterwards are the same as one
        process counting everything would give.
        """
        self.settle()
        other.settle()
        self.reads_in += other.reads_in
        self.reads_clean += other.reads_clean
        self.reads_flagged += other.reads_flagged
        self.reads_rejected += other.reads_rejected
        for name in (
            "rejected_by_reason",
            "flagged_by_category",
            "flagged_by_site",
            "flagged_by_agency",
            "flagged_by_camera",
        ):
            getattr(self, name).update(getattr(other, name))

    def check(self) -> None:
        """Assert the invariant that every read is counted exactly once."""
        total = self.reads_clean + self.reads_flagged + self.reads_rejected
        if total != self.reads_in:  # pragma: no cover - a bug, never an input problem
            raise AssertionError(f"counts do not add up: {total} != {self.reads_in}")

    def counts(self) -> dict:
        """The counts part of the summary JSON."""
        self.settle()
        self.check()

        def top(c: Counter, k: int | None = None) -> dict:
            items = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
            return dict(items[:k] if k else items)

        return {
            "reads_in": self.reads_in,
            "reads_clean": self.reads_clean,
            "reads_flagged": self.reads_flagged,
            "reads_rejected": self.reads_rejected,
            "rejected_by_reason": top(self.rejected_by_reason),
            "flagged_by_category": top(self.flagged_by_category),
            "flagged_by_site_top50": top(self.flagged_by_site, 50),
            "flagged_by_agency": top(self.flagged_by_agency),
            "flagged_by_camera": top(self.flagged_by_camera),
        }


_PENDING_ROWS = 1 << 17
"""Pending label counts summed in Arrow once they pass this many rows: memory stays flat."""


def _value_counts(values) -> pa.Table:
    """Distinct labels of one batch and how often each occurs (nulls as ``(none)``).

    Dictionary columns (site ids and categories from the labeller) are counted on their
    integer codes: no string is hashed or built per read (issue #5).
    """
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values, type=pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if (
        pa.types.is_dictionary(values.type)
        and values.null_count == 0
        and values.dictionary.null_count == 0
    ):
        counts = np.bincount(
            values.indices.to_numpy(zero_copy_only=False), minlength=len(values.dictionary)
        )
        codes = np.flatnonzero(counts)
        names = values.dictionary.take(pa.array(codes)).cast(pa.string())
        return pa.table({"value": names, "count": pa.array(counts[codes], pa.int64())})
    vc = pc.value_counts(pc.fill_null(values.cast(pa.string()), "(none)"))
    return pa.table({"value": vc.field("values"), "count": vc.field("counts")})


def _sum_counts(tables: list[pa.Table]) -> pa.Table:
    """One row per label with the counts of ``tables`` added up."""
    t = pa.concat_tables(tables).group_by("value").aggregate([("count", "sum")])
    return t.select(["value", "count_sum"]).rename_columns(["value", "count"])


def dumps_summary(doc: dict) -> bytes:
    """Serialise a summary or manifest the same way every time (sorted keys, indent 2)."""
    return (json.dumps(doc, indent=2, ensure_ascii=False, default=_json_default) + "\n").encode()
