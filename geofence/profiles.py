"""Format profiles: how one vendor's read log maps onto geofence's reads (issue #8).

A profile is a small TOML file (``layers/profiles/<name>.toml``, reviewable data) that
declares the container (delimited text, JSON documents/array/lines, XML records), the
encoding and byte order mark, null markers, the column or path of each read field, the
timestamp's format, unit and time zone, constants (``position_source``, ``camera_type``)
and the fields never copied out (images). :func:`open_profile_reads` reads a file through
a profile into the same :class:`~geofence.model.ReadBatch` es as :func:`geofence.reads.open_reads`,
so ``scan``, ``filter`` and ``verify`` need no second code path.

How each container is read
--------------------------
- **Delimited text** maps onto the fast reader's own options (``delimiter``, ``columns``,
  ``timezone``): the profile adds no pass over the data. Afterwards each batch gets the
  profile's extra columns and, only where the profile asks for it, vectorised patches
  (extra null markers, a time format the reader does not know, 0/0 as "no position").
- **JSON** is streamed: JSON lines line by line, arrays element by element and a file of
  one or more top-level documents document by document, with ``json.JSONDecoder.raw_decode``
  over a sliding text buffer (no ``ijson``). One document (a line, an array element or a
  top-level value) must fit in :data:`MAX_DOCUMENT_BYTES` (or ``max_line_bytes`` if larger):
  OpenALPR posts one group per document, a few kB plus images. A ``records`` path turns
  one document into several reads (OpenALPR ``results``); ``$.`` paths read the document.
- **XML** is streamed with ``xml.etree.ElementTree.iterparse``; each record element is
  removed from its parent once read, so memory stays flat. Expat refuses external
  entities and (from expat 2.4) entity-expansion bombs.

Values from JSON and XML become an Arrow table that goes through
:func:`geofence.reads.batches_from_table`, so positions, times and reject reasons follow
exactly the reader's rules. Every record is one row: a JSON line that does not parse, or
a record that is not an object, is ``malformed_row``; a bad value rejects its row with the
reader's reason, so ``reads_in = clean + flagged + rejected`` as in ``scan``.

Columns
-------
Batches read through a profile have the reader's normalised columns
(:data:`geofence.reads.NORMALISED_COLUMNS`), then :data:`EXTRA_COLUMNS`
(``plate_region``, ``camera_name``, ``agent``, ``direction``, ``confidence``, ``preview``,
``position_source``, ``camera_type``), then the input's own columns (for JSON and XML: the
paths the profile reads), less the profile's ``drop`` list.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as _dt
import fnmatch
import functools
import hashlib
import io
import json
import re
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geofence import reads as _reads
from geofence._resources import layers_dir
from geofence.errors import ReadFormatError, ResourceLimitError, UsageError
from geofence.model import NO_TIME, REASON_CODE, ReadBatch

__all__ = [
    "CONTAINERS",
    "EXTRA_COLUMNS",
    "FIELDS",
    "MAX_DOCUMENT_BYTES",
    "CameraTable",
    "Profile",
    "Sniffed",
    "camera_table",
    "list_profiles",
    "load_profile",
    "open_profile_reads",
    "parse_openalpr",
    "parse_openalpr_heartbeat",
    "profile_text",
    "resolve",
    "sniff",
    "write_camera_table",
    "write_sniffed",
]

READER_FIELDS = ("read_id", "plate", "timestamp", "lat", "lon", "camera_id", "agency")
"""Fields the delimited reader maps itself (``geofence.reads`` ``columns``)."""

EXTRA_FIELDS = ("plate_region", "camera_name", "agent", "direction", "confidence", "preview")
"""Fields a profile adds as columns of their own (strings, as written)."""

FIELDS = (*READER_FIELDS[:3], "plate_region", *READER_FIELDS[3:], *EXTRA_FIELDS[1:])
"""Every field a profile may map, in the issue's order (plus ``agency``, ``camera_name``, ``preview``)."""

CONSTANTS = ("position_source", "camera_type")
"""Constants a profile may declare; each becomes a column."""

EXTRA_COLUMNS = EXTRA_FIELDS + CONSTANTS
"""Columns batches read through a profile carry after the reader's normalised ones."""

CONTAINERS = ("delimited", "json", "xml")
JSON_LAYOUTS = ("auto", "lines", "array", "documents")
BOM_RULES = ("optional", "required", "forbidden")

MAX_DOCUMENT_BYTES = 16 << 20
"""Largest JSON document (line, array element or top-level value) held in memory at once.

An OpenALPR group with its base64 vehicle and plate crops is tens of kilobytes; 16 MiB
leaves room for many crops while bounding memory. ``max_line_bytes`` raises it.
"""

# Time forms the delimited reader parses itself (geofence.reads _TIME_RES); a profile that
# names one of these costs nothing extra. Any other format must be a strptime pattern.
_READER_TIME_FORMATS = {
    "auto": None,
    "iso8601": "iso",
    "MM/DD/YYYY - HH:MM:SS": "us_dash",
    "MM/DD/YYYY HH:MM:SS": "us_space",
}
_EPOCH_SCALE_US = {"s": 1_000_000, "ms": 1_000, "us": 1}
# |t| below 1e17 us (the reader's EPOCH_MAX of 1e14 ms, the year 5138): else bad_timestamp.
_EPOCH_MAX_US = 1e17

# The reader's own no-value tokens for positions and times (geofence.reads _NULL_TOKENS).
_READER_NULLS = {"", "na", "n/a", "nan", "null", "none"}

_MALFORMED = REASON_CODE["malformed_row"]
_MISSING_POSITION = REASON_CODE["missing_position"]
_BAD_POSITION = REASON_CODE["bad_position"]
_NULL_ISLAND = REASON_CODE["null_island"]
_MISSING_TIME = REASON_CODE["missing_timestamp"]
_BAD_TIME = REASON_CODE["bad_timestamp"]

# Helper columns of JSON/XML tables; dropped before batches leave this module.
_H = "geofence:"
_H_MALFORMED, _H_TIME, _H_TIME_BAD, _H_LAT, _H_LON = (
    _H + "malformed",
    _H + "time",
    _H + "time_bad",
    _H + "lat",
    _H + "lon",
)

_TOP_KEYS = {
    "name",
    "title",
    "kind",
    "description",
    "documentation",
    "sample",
    "detect",
    "optional",
    "drop",
    "container",
    "fields",
    "timestamp",
    "position",
    "constants",
}
_CONTAINER_KEYS = {
    "type",
    "delimiter",
    "encoding",
    "bom",
    "null_markers",
    "layout",
    "records",
    "where",
}


# --------------------------------------------------------------------------------------
# The profile


@dataclass(frozen=True)
class TimeSpec:
    """How a profile's timestamp is written.

    ``format`` is ``auto`` (the reader's detection), ``iso8601``, ``epoch`` (with ``unit``
    ``s``, ``ms`` or ``us``; without a unit seconds or milliseconds by magnitude, as the
    reader decides), one of the reader's US forms (``MM/DD/YYYY - HH:MM:SS``,
    ``MM/DD/YYYY HH:MM:SS``), or a ``strptime`` pattern such as ``%Y:%m:%d %H:%M:%S``.
    """

    format: str = "auto"
    unit: str | None = None
    timezone: str | None = None

    @property
    def custom(self) -> bool:
        """Whether this module parses the times (the reader does not know the form)."""
        return "%" in self.format

    @property
    def typed_epoch(self) -> bool:
        return self.format == "epoch" and self.unit is not None

    def describe(self) -> str:
        if self.format == "epoch":
            unit = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}.get(
                self.unit or "", "seconds or milliseconds"
            )
            return f"epoch {unit} (UTC)"
        return self.format


@dataclass(frozen=True)
class Profile:
    """A loaded format profile (see the module docstring and ``layers/profiles/``).

    Attributes
    ----------
    name, title : str
    kind : str
        ``reads`` or ``cameras`` (a camera table, e.g. OpenALPR heartbeats).
    container : str
        ``delimited``, ``json`` or ``xml``.
    fields : dict of str to str or tuple of str
        Field -> column (delimited), JSON path or XML path. A tuple of paths is joined
        with ``:`` (OpenALPR identifies a plate read by frame uuid and plate index).
    optional : tuple of str
        Fields that may be absent from a file or record without an error.
    drop : tuple of str
        Columns or paths (shell patterns) never copied out.
    """

    name: str
    title: str
    path: Path | None
    sha256: str
    kind: str = "reads"
    container: str = "delimited"
    delimiter: str | None = None
    encoding: str | None = None
    bom: str = "optional"
    null_markers: tuple[str, ...] = ()
    layout: str = "auto"
    records: str | None = None
    where: tuple[tuple[str, object], ...] = ()
    fields: dict = field(default_factory=dict)
    optional: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    detect: bool = False
    time: TimeSpec = TimeSpec()
    zero_is_missing: bool = False
    position: str = "record"
    constants: dict = field(default_factory=dict)
    documentation: str = ""
    sample: str = ""

    def describe(self) -> dict:
        """JSON-able facts for summaries and manifests."""
        return {
            "name": self.name,
            "file": self.path.name if self.path else None,
            "sha256": self.sha256,
            "container": self.container,
            "constants": dict(self.constants),
        }

    def dropped(self, name: str) -> bool:
        """Whether a column or path is on the profile's ``drop`` list."""
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.drop)


def profiles_dir() -> Path:
    """The directory of the shipped profiles (``layers/profiles``)."""
    return layers_dir() / "profiles"


def list_profiles() -> list[Profile]:
    """Every shipped profile, by name."""
    d = profiles_dir()
    return [load_profile(p) for p in sorted(d.glob("*.toml"))] if d.is_dir() else []


def profile_text(profile: str | Path) -> str:
    """The TOML text of a shipped profile (by name) or a profile file, as written."""
    return _profile_path(profile).read_text(encoding="utf-8")


def _profile_path(profile: str | Path) -> Path:
    p = Path(profile)
    if p.suffix == ".toml" or p.parent != Path(".") or p.is_file():
        if not p.is_file():
            raise UsageError(f"--profile {profile}: no such profile file")
        return p
    shipped = profiles_dir() / f"{profile}.toml"
    if not shipped.is_file():
        names = ", ".join(sorted(q.stem for q in profiles_dir().glob("*.toml"))) or "none"
        raise UsageError(
            f"--profile {profile}: no such profile; shipped profiles: {names} "
            "(or pass a .toml file; `geofence reads sniff FILE` proposes one)"
        )
    return shipped


def load_profile(profile: str | Path | Profile) -> Profile:
    """Load a profile by shipped name (``uwchr-spd``) or from a TOML file.

    Raises
    ------
    UsageError
        Unknown name, unreadable file, or a profile that breaks the schema (the message
        names the file and the key).
    """
    if isinstance(profile, Profile):
        return profile
    path = _profile_path(profile)
    st = path.stat()
    # Profiles are frozen: the relay parses one per post (issue #12), so a loaded file
    # is reused until it changes on disk.
    return _load_path(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _load_path(path_text: str, _mtime_ns: int, _size: int) -> Profile:
    path = Path(path_text)
    data = path.read_bytes()
    where = f"profile {path.name}"
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{where}: not valid TOML ({exc}); fix the file") from None
    return _build_profile(doc, path, hashlib.sha256(data).hexdigest())


def _build_profile(doc: dict, path: Path | None, sha256: str) -> Profile:
    where = f"profile {path.name if path else doc.get('name', '?')}"

    def bad(msg: str) -> UsageError:
        return UsageError(f"{where}: {msg}")

    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise bad(
            f"unknown key(s) {', '.join(sorted(unknown))}; keys: {', '.join(sorted(_TOP_KEYS))}"
        )
    name = doc.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise bad("needs name = \"lower-case-name\" (letters, digits, '.', '_', '-')")
    kind = doc.get("kind", "reads")
    if kind not in ("reads", "cameras"):
        raise bad(f"kind must be 'reads' or 'cameras', not {kind!r}")
    cont = doc.get("container", {})
    if not isinstance(cont, dict):
        raise bad("[container] must be a table")
    unknown = set(cont) - _CONTAINER_KEYS
    if unknown:
        raise bad(f"unknown [container] key(s) {', '.join(sorted(unknown))}")
    ctype = cont.get("type", "delimited")
    if ctype not in CONTAINERS:
        raise bad(f"[container] type must be one of {', '.join(CONTAINERS)}, not {ctype!r}")
    delim = cont.get("delimiter")
    if delim is not None:
        if ctype != "delimited":
            raise bad("[container] delimiter is only for type = 'delimited'")
        if delim == "\\t":
            delim = "\t"
        if not isinstance(delim, str) or len(delim) != 1 or delim in '"\r\n':
            raise bad(f"[container] delimiter must be one character, not {delim!r}")
    encoding = cont.get("encoding")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise bad(f"[container] encoding {encoding!r} is not a known encoding") from None
        if (
            codecs.lookup(encoding).name.startswith("utf-16")
            or "32" in codecs.lookup(encoding).name
        ):
            raise bad(
                "UTF-16/32 files are not read; convert them to UTF-8 (iconv -f UTF-16 -t UTF-8)"
            )
    bom = cont.get("bom", "optional")
    if bom not in BOM_RULES:
        raise bad(f"[container] bom must be one of {', '.join(BOM_RULES)}, not {bom!r}")
    markers = cont.get("null_markers", [])
    if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
        raise bad("[container] null_markers must be a list of strings")
    layout = cont.get("layout", "auto")
    if layout not in JSON_LAYOUTS:
        raise bad(f"[container] layout must be one of {', '.join(JSON_LAYOUTS)}, not {layout!r}")
    if layout != "auto" and ctype != "json":
        raise bad("[container] layout is only for type = 'json'")
    records = cont.get("records")
    if records is not None and not isinstance(records, str):
        raise bad("[container] records must be a path string")
    if ctype == "xml" and not records:
        raise bad(
            'an xml profile needs [container] records = "ElementName" (the element of one read)'
        )
    if ctype == "delimited" and records:
        raise bad("[container] records is only for json and xml")
    where_tbl = cont.get("where", {})
    if not isinstance(where_tbl, dict) or (where_tbl and ctype != "json"):
        raise bad("[container] where must be a table of path = value, for json only")

    fields_tbl = doc.get("fields", {})
    if not isinstance(fields_tbl, dict):
        raise bad("[fields] must be a table of field = column")
    fields: dict = {}
    for key, val in fields_tbl.items():
        if key not in FIELDS:
            raise bad(f"[fields] unknown field {key!r}; fields: {', '.join(FIELDS)}")
        if isinstance(val, list) and val and all(isinstance(v, str) and v for v in val):
            if ctype == "delimited":
                raise bad(f"[fields] {key}: a list of paths is only for json and xml")
            fields[key] = tuple(val)
        elif isinstance(val, str) and val:
            fields[key] = val
        else:
            raise bad(f"[fields] {key} must be a column name or path (a non-empty string)")
    for key, val in fields.items():
        for p in val if isinstance(val, tuple) else (val,):
            if ctype == "xml" and p.startswith("$"):
                raise bad(f"[fields] {key}: '$.' document paths are for json only")
    optional = tuple(doc.get("optional", ()))
    for f in optional:
        if f not in FIELDS:
            raise bad(f"optional: unknown field {f!r}")
    drop = tuple(doc.get("drop", ()))
    if not all(isinstance(d, str) and d for d in drop):
        raise bad("drop must be a list of column names or paths (shell patterns allowed)")
    detect = doc.get("detect", False)
    if not isinstance(detect, bool) or (detect and ctype != "delimited"):
        raise bad("detect = true (find columns by common names) is only for delimited text")

    ts = doc.get("timestamp", {})
    if not isinstance(ts, dict) or set(ts) - {"format", "unit", "timezone"}:
        raise bad("[timestamp] takes format, unit and timezone")
    fmt = ts.get("format", "auto")
    unit = ts.get("unit")
    if not isinstance(fmt, str) or (
        fmt not in _READER_TIME_FORMATS and fmt != "epoch" and "%" not in fmt
    ):
        raise bad(
            f"[timestamp] format {fmt!r}: use auto, iso8601, epoch, 'MM/DD/YYYY - HH:MM:SS', "
            "'MM/DD/YYYY HH:MM:SS' or a strptime pattern such as '%Y:%m:%d %H:%M:%S'"
        )
    if unit is not None and (fmt != "epoch" or unit not in _EPOCH_SCALE_US):
        raise bad("[timestamp] unit (s, ms or us) goes with format = 'epoch'")
    tz = ts.get("timezone")
    if tz is not None:
        try:
            _reads._check_timezone(tz)
        except UsageError as exc:
            raise bad(f"[timestamp] {exc}") from None

    pos = doc.get("position", {})
    if not isinstance(pos, dict) or set(pos) - {"zero_is_missing", "source"}:
        raise bad("[position] takes zero_is_missing and source")
    psource = pos.get("source", "record")
    if psource not in ("record", "camera"):
        raise bad("[position] source must be 'record' or 'camera'")
    if psource == "record" and not detect and not {"lat", "lon"} <= set(fields):
        raise bad(
            "[fields] needs lat and lon (or [position] source = 'camera' for logs without positions)"
        )
    if psource == "camera" and ({"lat", "lon"} & set(fields)):
        raise bad("[position] source = 'camera' means the records carry no lat/lon fields")
    if psource == "camera" and ctype == "delimited":
        raise bad(
            "[position] source = 'camera' is for json and xml profiles (the delimited reader needs lat/lon)"
        )
    consts = doc.get("constants", {})
    if not isinstance(consts, dict) or set(consts) - set(CONSTANTS):
        raise bad(f"[constants] takes {', '.join(CONSTANTS)}")
    for key, val in fields.items():
        for p in val if isinstance(val, tuple) else (val,):
            pat = next((d for d in drop if fnmatch.fnmatchcase(p, d)), None)
            if pat is not None:
                raise bad(
                    f"[fields] {key} = {p!r} is on the drop list ({pat!r}): it is never copied out"
                )
    return Profile(
        name=name,
        title=str(doc.get("title", name)),
        path=path,
        sha256=sha256,
        kind=kind,
        container=ctype,
        delimiter=delim,
        encoding=encoding,
        bom=bom,
        null_markers=tuple(markers),
        layout=layout,
        records=records,
        where=tuple(where_tbl.items()),
        fields=fields,
        optional=optional,
        drop=drop,
        detect=detect,
        time=TimeSpec(fmt, unit, tz),
        zero_is_missing=bool(pos.get("zero_is_missing", False)),
        position=psource,
        constants={k: str(v) for k, v in consts.items()},
        documentation=str(doc.get("documentation", "")),
        sample=str(doc.get("sample", "")),
    )


def resolve(profile, timezone: str | None) -> tuple[Profile | None, str]:
    """The loaded profile (or ``None``) and the effective time zone.

    An explicit ``timezone`` wins; otherwise the profile's; otherwise UTC.
    """
    prof = load_profile(profile) if profile is not None else None
    tz = timezone or (prof.time.timezone if prof else None) or "UTC"
    return prof, tz


# --------------------------------------------------------------------------------------
# Opening a read log through a profile


def open_profile_reads(
    source,
    profile,
    *,
    columns: Mapping[str, str] | None = None,
    timezone: str | None = None,
    batch_size: int = _reads._DEFAULT_BATCH,
    max_line_bytes: int = 1 << 20,
    keep_raw: bool = True,
    _cameras: bool = False,
):
    """Open a read log through a format profile; iterate the result for batches.

    Parameters
    ----------
    source : str, os.PathLike or binary file object
        A path, ``"-"`` for standard input or a binary file; gzip, bz2 and zstd by magic.
    profile : str, path or Profile
        A shipped profile name (``uwchr-spd``) or a profile file.
    columns : mapping of str to str, optional
        Overrides of the profile's fields (``--columns``): a column for delimited
        text, a path for JSON and XML.
    timezone : str, optional
        Zone of times written without an offset; default the profile's, else UTC.
    batch_size, max_line_bytes, keep_raw
        As for :func:`geofence.reads.open_reads`. ``keep_raw`` (the sharing filter and
        ``--rejects``) needs delimited UTF-8 text: JSON and XML records have no row bytes.

    Returns
    -------
    ReadStream-like
        A context manager and iterator of :class:`~geofence.model.ReadBatch` with the
        reader's attributes (``header``, ``delimiter``, ``sha256``, ``rows``, ``notes``...)
        and ``profile`` (name, file, SHA-256).

    Raises
    ------
    ReadFormatError
        The file lacks a field the profile names (the message names the profile, the
        field and the columns or keys found), or cannot be read at all.
    UsageError
        Bad profile, bad override, or a profile that cannot serve the caller.

    Examples
    --------
    >>> with open_profile_reads("spd.csv.gz", "uwchr-spd", keep_raw=False) as reads:
    ...     for batch in reads:
    ...         usable = batch.reason == 0
    """
    prof, tz = resolve(profile, timezone)
    if prof.kind == "cameras" and not _cameras:
        raise UsageError(
            f"profile {prof.name} describes cameras, not reads: make a camera table with "
            f"`geofence reads cameras FILE --profile {prof.name} -o cameras.csv`"
        )
    fields = _merge_overrides(prof, columns)
    if prof.container == "delimited":
        return _DelimitedProfileStream(
            source,
            prof,
            fields,
            tz,
            batch_size=batch_size,
            max_line_bytes=max_line_bytes,
            keep_raw=keep_raw,
        )
    if keep_raw:
        raise UsageError(
            f"profile {prof.name} reads {prof.container.upper()} records, which have no rows to copy "
            "byte for byte: the sharing filter and scan --rejects need delimited text "
            "(scan without --rejects reads it)"
        )
    return _RecordStream(
        source, prof, fields, tz, batch_size=batch_size, max_line_bytes=max_line_bytes
    )


def _merge_overrides(prof: Profile, columns: Mapping[str, str] | None) -> dict:
    """The profile's fields with ``--columns`` overrides applied (``""`` removes a field)."""
    fields = dict(prof.fields)
    for key, col in (columns or {}).items():
        f = _field_key(key)
        if f is None:
            raise UsageError(f"--columns: unknown field {key!r}; fields: {', '.join(FIELDS)}")
        if col is None or col == "":
            fields.pop(f, None)
            continue
        if prof.dropped(str(col)):
            raise UsageError(
                f"--columns {key}={col}: profile {prof.name} never copies {col!r} out (its drop list)"
            )
        fields[f] = str(col)
    return fields


def _field_key(key: str) -> str | None:
    n = _reads._norm_name(key)
    for f in FIELDS:
        if n == _reads._norm_name(f):
            return f
    return _reads._field_of_key(key)


def _out_name(col: str) -> str:
    """Name of an input column in a batch's ``columns`` table (clashes get ``input:``)."""
    return f"input:{col}" if col in _reads.NORMALISED_COLUMNS or col in EXTRA_COLUMNS else col


def _reader_out_name(col: str) -> str:
    """The name the reader itself gives an input column."""
    return f"input:{col}" if col in _reads.NORMALISED_COLUMNS else col


# --------------------------------------------------------------------------------------
# Delimited text: the reader itself, told the profile's columns


class _DelimitedProfileStream(_reads.ReadStream):
    """A :class:`geofence.reads.ReadStream` whose columns come from a profile."""

    def __init__(self, source, prof: Profile, fields: dict, tz: str, **kw) -> None:
        self._prof = prof
        self._wanted = fields
        self.profile = prof.describe()
        keep_raw = kw.get("keep_raw", True)
        self._outer = None
        enc = codecs.lookup(prof.encoding).name if prof.encoding else "utf-8"
        if enc not in ("utf-8", "utf-8-sig"):
            if keep_raw:
                raise UsageError(
                    f"profile {prof.name} reads {prof.encoding} text: the sharing filter and --rejects "
                    "copy rows byte for byte and need UTF-8; convert the file (iconv -t UTF-8)"
                )
            self._outer = _reads._Source(source)
            source = _Transcoder(self._outer, prof.encoding)
        columns: dict[str, str] = {}
        for f in READER_FIELDS:
            if f in fields:
                columns[f] = fields[f]
            elif not prof.detect and f not in ("lat", "lon"):
                columns[f] = ""  # the profile is the whole declaration: no guessing
        if prof.time.custom or (prof.time.format == "epoch" and prof.time.unit == "us"):
            self._time_column = columns.get("timestamp") or None
            columns["timestamp"] = ""  # parsed here, in a form the reader does not know
        else:
            self._time_column = None
        self._keep_raw = keep_raw
        # The reader maps these after _read_header (below) has checked them; that check
        # blanks the optional fields the file lacks, in this same dict.
        self._reader_columns = columns
        try:
            super().__init__(source, columns=columns, timezone=tz, delimiter=prof.delimiter, **kw)
        except BaseException:
            if self._outer is not None:
                self._outer.close()
            raise
        if keep_raw and self._prof.drop and any(self._prof.dropped(c) for c in self.fields):
            self.close()
            raise UsageError(
                f"profile {prof.name} never copies some of {self.path_label}'s columns out (drop), "
                "but the sharing filter and --rejects copy whole rows; remove them from the file first"
            )
        mapping = dict(self.mapping)
        if self._time_column:
            mapping["timestamp"] = self._time_column
        self.mapping = mapping
        self._finish_batch = _Finisher(
            prof,
            label=self.path_label,
            notes=self.notes,
            extra_sources={
                f: _reader_out_name(self._resolve(fields[f])) for f in EXTRA_FIELDS if f in fields
            },
            lat_col=_reader_out_name(self.mapping["lat"]),
            lon_col=_reader_out_name(self.mapping["lon"]),
            time_col=_reader_out_name(self._time_column or self.mapping.get("timestamp", ""))
            if "timestamp" in self.mapping
            else None,
            custom_time=prof.time if self._time_column else None,
            tz=tz,
            input_names=[_reader_out_name(c) for c in self.fields],
            helpers=False,
        )
        self._check_time_form()

    # The header is checked against the profile before the reader maps it, so a missing
    # column is one error naming the profile, the field and the columns found.
    def _read_header(self, delimiter):
        super()._read_header(delimiter)
        _check_bom(self._prof, self.bom, self.path_label)
        missing = [
            (f, col)
            for f, col in self._wanted.items()
            if f not in self._prof.optional and self._find(col) is None
        ]
        if missing:
            f, col = missing[0]
            found = {c for _, c in self._wanted.items()} & set(self.fields)
            # The first row is only listed when it is a header: when it holds one of the
            # profile's other columns. A headerless file's first row is data (plates).
            listing = (
                f"its columns are: {', '.join(self.fields)}"
                if found
                else f"none of the profile's columns is in its first row ({len(self.fields)} cells; "
                "is the header missing, or is it another format?)"
            )
            raise ReadFormatError(
                f"profile {self._prof.name}: field {f} is column {col!r}, which {self.path_label} "
                f"does not have; {listing}"
            )
        for f in [f for f, col in self._wanted.items() if self._find(col) is None]:
            del self._wanted[f]  # optional fields the file lacks
            if f in self._reader_columns:
                self._reader_columns[f] = ""
            if f == "timestamp":
                self._time_column = None

    def _find(self, col: str) -> str | None:
        if col in self.fields:
            return col
        folded = [c for c in self.fields if c.lower() == col.lower()]
        return folded[0] if len(folded) == 1 else None

    def _resolve(self, col: str) -> str:
        return self._find(col) or col

    def _check_time_form(self) -> None:
        want = _READER_TIME_FORMATS.get(self._prof.time.format)
        got = self._norm.time_kind
        if want and got and not (got.startswith(want) if want == "iso" else got == want):
            self.notes.append(
                f"profile {self._prof.name} declares times as {self._prof.time.format!r}, but "
                f"{self.path_label}'s first rows look like {self.time_format}"
            )

    @property
    def time_format(self) -> str | None:
        if self._time_column:
            return f"{self._prof.time.describe()} ({self.timezone})"
        return super().time_format

    def __next__(self) -> ReadBatch:
        return self._finish_batch(super().__next__())

    def _finish(self) -> None:
        super()._finish()
        if self._outer is not None:
            self.sha256 = self._outer.finish()  # of the stored bytes, not the transcoded ones
            self._outer.close()

    def close(self) -> None:
        super().close()
        if getattr(self, "_outer", None) is not None:
            self._outer.close()


class _Transcoder:
    """Decompressed text in another encoding, read as UTF-8 bytes (for the reader)."""

    def __init__(self, src, encoding: str) -> None:
        self._src = src
        self._dec = codecs.getincrementaldecoder(encoding)(errors="replace")
        self.name = src.label

    def read(self, n: int = -1) -> bytes:
        while True:
            try:
                data = self._src.read(max(n, 1 << 16) if n and n > 0 else 1 << 20)
            except _reads._CorruptData as exc:
                raise ValueError(str(exc)) from None  # the reader reports it as corrupt data
            text = self._dec.decode(data, final=not data)
            if text or not data:
                return text.encode("utf-8")


def _check_bom(prof: Profile, bom: bool, label: str) -> None:
    if prof.bom == "required" and not bom:
        raise ReadFormatError(
            f"profile {prof.name}: {label} has no UTF-8 byte order mark, which the profile requires; "
            "is it the right export? (set bom = 'optional' to accept both)"
        )
    if prof.bom == "forbidden" and bom:
        raise ReadFormatError(
            f"profile {prof.name}: {label} starts with a byte order mark, which the profile forbids; "
            "is it the right export? (set bom = 'optional' to accept both)"
        )


# --------------------------------------------------------------------------------------
# Finishing batches: extra columns and the few patches a profile asks for (vectorised)


class _Finisher:
    """Adds the profile's columns to a reader batch and applies its value rules."""

    def __init__(
        self,
        prof: Profile,
        *,
        label: str,
        notes: list[str],
        extra_sources: dict[str, str],
        lat_col: str | None,
        lon_col: str | None,
        time_col: str | None,
        custom_time: TimeSpec | None,
        tz: str,
        input_names: list[str],
        helpers: bool,
    ) -> None:
        self.prof = prof
        self.extra_sources = extra_sources
        self.lat_col, self.lon_col, self.time_col = lat_col, lon_col, time_col
        self.custom_time = custom_time
        self.helpers = helpers
        self.tz = tz
        self.notes = notes
        # Markers beyond the reader's own tokens change reasons; all of them null text.
        self.markers = tuple(dict.fromkeys(m.strip().lower() for m in prof.null_markers))
        self.extra_markers = tuple(m for m in self.markers if m not in _READER_NULLS)
        # Text fields compare cells with the markers exactly as the profile writes them
        # (positions and times, like the reader, ignore case and spaces around).
        self.exact_markers = pa.array([m for m in prof.null_markers if m], pa.string())
        self._norm = _reads._Normaliser([], {}, tz, label, notes) if custom_time else None
        self.previews = 0
        self._constants: dict[tuple, pa.Array] = {}
        # Input columns kept, under their final names (clashes with EXTRA_COLUMNS renamed).
        self.inputs: list[tuple[str, str]] = []
        for name in input_names:
            if name.startswith(_H):
                continue
            plain = name[len("input:") :] if name.startswith("input:") else name
            if prof.dropped(plain):
                continue
            self.inputs.append((name, _out_name(plain)))

    def __call__(self, b: ReadBatch) -> ReadBatch:
        cols = b.columns
        reason, lon, lat, time_us = b.reason, b.lon, b.lat, b.time_us
        ts = cols.column("timestamp")
        changed = False

        def merge(mask: np.ndarray, code: int) -> None:
            # REJECT_REASONS is in priority order: the lowest non-zero code wins.
            nonlocal reason, changed
            if mask.any():
                if not changed:
                    reason, changed = reason.copy(), True
                reason[mask & ((reason == 0) | (reason > code))] = code

        malformed = None
        if self.helpers:
            malformed = _bool_column(cols, _H_MALFORMED)
            if malformed.any():
                reason, changed = np.where(malformed, _MALFORMED, reason).astype(np.int8), True
            # The reader saw a null where the profile's time parser refused a value:
            # that is a bad time, not a missing one.
            tbad = _bool_column(cols, _H_TIME_BAD) & (reason == _MISSING_TIME)
            if tbad.any():
                reason, changed = np.where(tbad, _BAD_TIME, reason).astype(np.int8), True
        if self.custom_time is not None and self.time_col:
            typed, bad = _typed_times(cols.column(self.time_col), self.custom_time, self.markers)
            us, missing, nonexistent, ts = self._norm._temporal(typed)
            time_us = us
            merge(missing & ~bad, _MISSING_TIME)
            merge(bad | nonexistent, _BAD_TIME)
        if self.extra_markers:
            # Only the rows the reader called bad can hold a marker it does not know.
            idx = np.flatnonzero(reason == _BAD_POSITION)
            if idx.size:
                hit = self._is_marker(cols, self.lat_col, idx) | self._is_marker(
                    cols, self.lon_col, idx
                )
                if hit.any():
                    reason = reason.copy() if not changed else reason
                    reason[idx[hit]], changed = _MISSING_POSITION, True
            idx = np.flatnonzero(reason == _BAD_TIME)
            if idx.size and self.custom_time is None and self.time_col:
                hit = self._is_marker(cols, self.time_col, idx)
                if hit.any():
                    reason = reason.copy() if not changed else reason
                    reason[idx[hit]], changed = _MISSING_TIME, True
        if self.prof.zero_is_missing:
            # OpenALPR writes 0/0 when the agent has no GPS fix: no position, not Null Island.
            fix = reason == _NULL_ISLAND
            if fix.any():
                reason = np.where(fix, _MISSING_POSITION, reason).astype(np.int8)
                changed = True
        no_pos = (reason >= _MALFORMED) & (reason <= _NULL_ISLAND)
        if changed:
            lon = np.where(no_pos, np.nan, lon)
            lat = np.where(no_pos, np.nan, lat)
            no_time = (reason == _MALFORMED) | (reason == _MISSING_TIME) | (reason == _BAD_TIME)
            time_us = np.where(no_time, NO_TIME, time_us)
            if no_time.any():
                ts = pc.if_else(pa.array(no_time), pa.scalar(None, pa.string()), ts)
        n = len(b)
        arrays, names = [], []
        for name in _reads.NORMALISED_COLUMNS:
            if name == "timestamp":
                arrays.append(ts)
            elif len(self.exact_markers):
                arrays.append(self._text(cols.column(name)))
            else:
                arrays.append(cols.column(name))
            names.append(name)
        for f in EXTRA_FIELDS:
            src = self.extra_sources.get(f)
            if src is None or src not in cols.column_names:
                arr = self._constant(None, n)
            else:
                arr = self._text(cols.column(src))
                if f == "preview":
                    arr = _truthy(arr)
                    self.previews += int(pc.sum(pc.equal(arr, "true")).as_py() or 0)
            arrays.append(arr)
            names.append(f)
        for c in CONSTANTS:
            val = self.prof.constants.get(c)
            if val is None:
                arr = self._constant(None, n)
            else:
                arr = self._constant(val, n)
                if c == "position_source" and no_pos.any():
                    arr = pc.if_else(pa.array(no_pos), pa.scalar(None, pa.string()), arr)
            arrays.append(arr)
            names.append(c)
        for src, out in self.inputs:
            arrays.append(cols.column(src))
            names.append(out)
        if malformed is not None and malformed.any():
            m = pa.array(malformed)
            for i in range(len(_reads.NORMALISED_COLUMNS) + len(EXTRA_COLUMNS)):
                arrays[i] = pc.if_else(m, pa.scalar(None, pa.string()), arrays[i])
        table = pa.Table.from_arrays(arrays, names=names)
        return ReadBatch(b.row, lon, lat, time_us, reason, table, raw=b.raw, offsets=b.offsets)

    def _constant(self, value: str | None, n: int) -> pa.Array:
        """A column of one value (or nulls), shared by every batch of that length.

        Arrow arrays are immutable, so the batches can share it; building it once saves
        allocating (and faulting in) megabytes per batch.
        """
        key = (value, n)
        arr = self._constants.get(key)
        if arr is None:
            arr = pa.nulls(n, pa.string()) if value is None else _constant_strings(value, n)
            if len(self._constants) > 8:
                self._constants.clear()
            self._constants[key] = arr
        return arr

    def _is_marker(self, cols: pa.Table, name: str | None, idx: np.ndarray) -> np.ndarray:
        """Which of the rows ``idx`` hold one of the profile's extra null markers in ``name``."""
        if not name or name not in cols.column_names:
            return np.zeros(len(idx), dtype=bool)
        cells = _reads._as_strings(_single(cols.column(name)).take(pa.array(idx)))
        s = pc.utf8_lower(pc.utf8_trim_whitespace(cells))
        hit = pc.fill_null(pc.is_in(s, value_set=pa.array(self.extra_markers)), False)
        return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)

    def _text(self, col):
        """A text field: empty cells and the profile's null markers become null."""
        s = _reads._nonempty_strings(col)
        if not len(self.exact_markers) or len(s) == 0 or not pa.types.is_string(s.type):
            return s
        # Compare cells with a marker only when some cell has the marker's length (one
        # pass over the lengths; usually no column qualifies, e.g. plates for "NA").
        lengths = pc.fill_null(pc.binary_length(s), -1).to_numpy(zero_copy_only=False)
        hit = None
        for m in self.exact_markers.to_pylist():
            if (lengths == len(m.encode("utf-8"))).any():
                eq = pc.equal(s, m)
                hit = eq if hit is None else pc.or_(hit, eq)
        if hit is None or not pc.any(hit).as_py():
            return s
        return pc.if_else(pc.fill_null(hit, False), pa.scalar(None, pa.string()), s)


def _constant_strings(value: str, n: int) -> pa.Array:
    """``n`` copies of ``value`` as a string array, built from buffers (``pa.repeat`` is ~10x slower)."""
    data = value.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def _single(arr) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    return arr


def _bool_column(cols: pa.Table, name: str) -> np.ndarray:
    if name not in cols.column_names:
        return np.zeros(cols.num_rows, dtype=bool)
    return np.asarray(
        pc.fill_null(pc.equal(_single(cols.column(name)), "true"), False).to_numpy(
            zero_copy_only=False
        ),
        dtype=bool,
    )


def _truthy(s: pa.Array) -> pa.Array:
    """``true``/``false`` for the usual spellings (``true``, ``1``, ``yes``...), else null."""
    low = pc.utf8_lower(pc.utf8_trim_whitespace(s))
    yes = pc.is_in(low, value_set=pa.array(["true", "1", "yes", "y", "t"]))
    no = pc.is_in(low, value_set=pa.array(["false", "0", "no", "n", "f"]))
    out = pc.if_else(yes, pa.scalar("true"), pa.scalar(None, pa.string()))
    return pc.if_else(no, pa.scalar("false"), out)


# --------------------------------------------------------------------------------------
# Times a profile declares and the reader does not parse itself


def _typed_times(col, spec: TimeSpec, markers: Sequence[str] = ()) -> tuple[pa.Array, np.ndarray]:
    """A time column as Arrow timestamps (naive = local, or UTC) and the mask of bad cells.

    Null, empty and null-marker cells are null and not bad (``missing_timestamp``);
    cells that are present but not in the declared form are null and bad.
    """
    col = _single(col)
    if spec.format == "epoch":
        if pa.types.is_integer(col.type) and spec.unit:
            v = pc.fill_null(col, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            present = ~_reads._nulls(col)
            big = np.abs(v) >= _EPOCH_MAX_US / _EPOCH_SCALE_US[spec.unit]
            us = np.where(big, 0, v) * _EPOCH_SCALE_US[spec.unit]
            ok = present & ~big
        else:
            if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
                v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
                present = ~np.isnan(v)
            else:
                s = pc.utf8_trim_whitespace(_reads._as_strings(col))
                present = ~_missing(s, markers)
                num = pc.fill_null(pc.match_substring_regex(s, _reads._NUMBER_RE), False)
                v = pc.cast(pc.if_else(num, s, pa.scalar(None, pa.string())), pa.float64())
                v = v.to_numpy(zero_copy_only=False)
            if spec.unit is None:  # by magnitude, exactly as the reader decides
                us, ok = _reads._epoch_us(v)
                ok = ok & present
            else:
                with np.errstate(invalid="ignore"):
                    f = v * _EPOCH_SCALE_US[spec.unit]
                    ok = present & np.isfinite(f) & (np.abs(f) < _EPOCH_MAX_US)
                    us = np.where(ok, np.rint(np.where(ok, f, 0)), 0).astype(np.int64)
        typed = pa.array(us, type=pa.timestamp("us", "UTC"), mask=~ok)
        return typed, present & ~ok
    # strptime pattern
    s = pc.utf8_trim_whitespace(_reads._as_strings(col))
    present = ~_missing(s, markers)
    aware = "%z" in spec.format or spec.format.endswith("Z")
    ts = pc.strptime(s, format=spec.format, unit="us", error_is_null=True)
    # Arrow's strptime rolls 02/30 over to 03/02: a value is trusted only when it prints
    # back as written; the few that do not (and the ones Arrow refused) get Python's
    # strptime, which is strict.
    back = pc.strftime(pc.cast(ts, pa.timestamp("s", ts.type.tz), safe=False), format=spec.format)
    same = pc.fill_null(pc.equal(back, s), False).to_numpy(zero_copy_only=False)
    redo = np.flatnonzero(present & ~np.asarray(same, dtype=bool))
    us = pc.fill_null(pc.cast(ts, pa.int64()), NO_TIME).to_numpy(zero_copy_only=False).copy()
    ok = present & np.asarray(same, dtype=bool)
    if redo.size:
        texts = s.take(pa.array(redo)).to_pylist()
        cache: dict[str, int | None] = {}
        for i, t in zip(redo.tolist(), texts, strict=True):
            if t not in cache:
                cache[t] = _py_strptime(t, spec.format)
            if cache[t] is not None:
                us[i], ok[i] = cache[t], True
    typed = pa.array(
        np.where(ok, us, 0), type=pa.timestamp("us", "UTC" if aware else None), mask=~ok
    )
    return typed, present & ~ok


def _py_strptime(text: str, fmt: str) -> int | None:
    try:
        t = _dt.datetime.strptime(text, fmt)
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(_dt.UTC).replace(tzinfo=None)
    return (t - _dt.datetime(1970, 1, 1)) // _dt.timedelta(microseconds=1)


def _missing(s: pa.Array, markers: Sequence[str]) -> np.ndarray:
    tokens = pa.array(sorted(_READER_NULLS | {m.strip().lower() for m in markers}))
    hit = pc.is_in(pc.utf8_lower(s), value_set=tokens)
    return np.asarray(pc.fill_null(hit, True).to_numpy(zero_copy_only=False), dtype=bool)


# --------------------------------------------------------------------------------------
# JSON and XML records -> Arrow tables -> the reader's batches


_MISSING = object()
_BAD = object()  # a record that is not an object, or a JSON line that did not parse
_CHUNK_RECORDS = 16_384


class _Paths:
    """The compiled field paths of a JSON or XML profile."""

    def __init__(self, prof: Profile, fields: dict) -> None:
        self.prof = prof
        self.fields = fields
        # Source columns: one per distinct path (or joined path list), in field order.
        self.columns: list[str] = []
        self.getters: list[Callable] = []
        self.field_column: dict[str, str] = {}
        for f in FIELDS:
            if f not in fields:
                continue
            spec = fields[f]
            name = " + ".join(spec) if isinstance(spec, tuple) else spec
            self.field_column[f] = name
            if name in self.columns:
                continue
            self.columns.append(name)
            parts = spec if isinstance(spec, tuple) else (spec,)
            compiled = [_compile(p, prof.container) for p in parts]
            self.getters.append(_joined(compiled) if len(compiled) > 1 else compiled[0])

    def check(self, rec, doc, label: str, what: str) -> None:
        """Raise the profile's missing-field error if ``rec`` lacks a required field."""
        for f, spec in self.fields.items():
            if f in self.prof.optional:
                continue
            for p in spec if isinstance(spec, tuple) else (spec,):
                get = _compile(p, self.prof.container)
                if get(rec, doc) is _MISSING:
                    keys = _keys_near(p, rec, doc, self.prof.container)
                    raise ReadFormatError(
                        f"profile {self.prof.name}: field {f} is {p!r}, which the first {what} of "
                        f"{label} does not have; {what} keys found: {', '.join(keys) or 'none'}"
                    )


def _steps(path: str) -> tuple[bool, list]:
    root = path.startswith("$")
    body = path[1:].lstrip(".") if root else path
    steps: list = []
    for part in body.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if m is None:
            raise UsageError(
                f"path {path!r}: use dotted keys with [N] indexes, e.g. best_plate.coordinates[0].x"
            )
        if m.group(1):
            steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return root, steps


def _compile(path: str, container: str) -> Callable:
    if container == "xml":
        return _xml_getter(path)
    root, steps = _steps(path)
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]
        if root:
            return lambda rec, doc: doc.get(key, _MISSING) if isinstance(doc, dict) else _MISSING
        return lambda rec, doc: rec.get(key, _MISSING)

    def get(rec, doc):
        v = doc if root else rec
        for s in steps:
            try:
                v = v[s]
            except (KeyError, IndexError, TypeError):
                return _MISSING
        return v

    return get


def _joined(getters: list[Callable]) -> Callable:
    def get(rec, doc):
        parts = [g(rec, doc) for g in getters]
        if any(p is _MISSING or p is None for p in parts):
            return _MISSING
        return ":".join(p if isinstance(p, str) else json.dumps(p) for p in parts)

    return get


def _xml_getter(path: str) -> Callable:
    parts = [p for p in path.split("/") if p]
    attr = parts.pop()[1:] if parts and parts[-1].startswith("@") else None

    def get(rec, doc):
        el = rec
        for name in parts:
            el = next((c for c in el if _local(c.tag) == name), None)
            if el is None:
                return _MISSING
        if attr is not None:
            v = next((v for k, v in el.attrib.items() if _local(k) == attr), _MISSING)
            return v
        text = (el.text or "").strip()
        return text or None

    return get


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _keys_near(path: str, rec, doc, container: str) -> list[str]:
    """The keys (or child element names) where ``path`` stops resolving."""
    if container == "xml":
        return sorted({_local(c.tag) for c in rec} | {"@" + _local(k) for k in rec.attrib})
    root, steps = _steps(path)
    v = doc if root else rec
    for s in steps:
        try:
            nxt = v[s]
        except (KeyError, IndexError, TypeError):
            break
        v = nxt
    return sorted(v) if isinstance(v, dict) else []


def _arrow_values(values: list) -> pa.Array:
    """Python values of one column -> numbers, strings or nulls (never nested types)."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        arr = None
    if arr is not None and pa.types.is_boolean(arr.type):
        return pc.cast(arr, pa.string())  # "true" / "false", as JSON writes them
    if arr is not None and (
        pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_string(arr.type)
        or pa.types.is_null(arr.type)
    ):
        return arr
    return pa.array(
        [
            v if v is None or isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for v in values
        ],
        type=pa.string(),
    )


class _TableMaker:
    """Records (or ``_BAD``) -> Arrow record batches with a fixed set of column names."""

    def __init__(self, prof: Profile, paths: _Paths, counter: list[int]) -> None:
        self.prof = prof
        self.paths = paths
        self.counter = counter  # [records so far]
        self.time_name = paths.field_column.get("timestamp")
        spec = prof.time
        # Times the reader parses from strings stay strings; declared epochs and strptime
        # patterns are typed here, with their own bad mask.
        self.typed_time = self.time_name is not None and (spec.typed_epoch or spec.custom)
        self.names = [*paths.columns, _H_MALFORMED, _H_TIME, _H_TIME_BAD]
        if prof.position == "camera":
            self.names += [_H_LAT, _H_LON]

    def reader_columns(self) -> dict[str, str]:
        cols = {f: self.paths.field_column.get(f, "") for f in READER_FIELDS}
        cols["timestamp"] = _H_TIME if self.time_name else ""
        if self.prof.position == "camera":
            cols["lat"], cols["lon"] = _H_LAT, _H_LON
        return cols

    def batches(self, records: Iterator) -> Iterator[pa.RecordBatch]:
        getters = self.paths.getters
        k = len(getters)
        buf: list[list] = [[] for _ in range(k)]
        bad: list[bool] = []
        for item in records:
            if item is _BAD:
                for j in range(k):
                    buf[j].append(None)
                bad.append(True)
            else:
                rec, doc = item
                for j, g in enumerate(getters):
                    v = g(rec, doc)
                    buf[j].append(None if v is _MISSING else v)
                bad.append(False)
            if len(bad) >= _CHUNK_RECORDS:
                yield self._batch(buf, bad)
                buf, bad = [[] for _ in range(k)], []
        if bad:
            yield self._batch(buf, bad)

    def _batch(self, buf: list[list], bad: list[bool]) -> pa.RecordBatch:
        n = len(bad)
        self.counter[0] += n
        arrays = [_arrow_values(v) for v in buf]
        if self.time_name is None:
            t, tbad = pa.nulls(n, pa.string()), np.zeros(n, dtype=bool)
        else:
            raw = arrays[self.paths.columns.index(self.time_name)]
            if self.typed_time:
                t, tbad = _typed_times(raw, self.prof.time, self.prof.null_markers)
            else:
                t, tbad = _reads._as_strings(raw), np.zeros(n, dtype=bool)
        arrays += [
            pa.array(np.where(bad, "true", "false")),
            t,
            pa.array(np.where(tbad, "true", "false")),
        ]
        if self.prof.position == "camera":
            arrays += [pa.nulls(n, pa.float64()), pa.nulls(n, pa.float64())]
        return pa.RecordBatch.from_arrays(arrays, names=self.names)


class _RecordStream:
    """JSON or XML records through a profile, with the attributes of a ReadStream."""

    def __init__(
        self,
        source,
        prof: Profile,
        fields: dict,
        tz: str,
        *,
        batch_size: int = _reads._DEFAULT_BATCH,
        max_line_bytes: int = 1 << 20,
    ) -> None:
        _reads._check_batch_size(batch_size)
        self._prof = prof
        self.profile = prof.describe()
        self.timezone = tz
        self.notes: list[str] = []
        self.rows = 0
        self.sha256: str | None = None
        self.header = b""
        self.delimiter = None
        self.line_terminator = b"\n"
        self._limit = max(int(max_line_bytes), MAX_DOCUMENT_BYTES)
        self._counter = [0]
        self._empty = False
        self.bom = False
        self._skipped: Counter = Counter()
        self._src = _reads._Source(source)
        self.path_label = self._src.label
        self.compression = self._src.compression
        try:
            self._paths = _Paths(prof, fields)
            self.mapping = dict(self._paths.field_column)
            self.fields = list(self._paths.columns)
            self._maker = _TableMaker(prof, self._paths, self._counter)
            records = self._records()
            first = next(records, None)
            if first is None and self._empty:
                raise ReadFormatError(
                    f"{self.path_label} is empty; profile {prof.name} expects {prof.container.upper()}"
                )
            if first is not None and first is not _BAD:
                what = "element" if prof.container == "xml" else "record"
                self._paths.check(first[0], first[1], self.path_label, what)
            records = _chain_first(first, records) if first is not None else iter(())
        except BaseException:
            self._src.close()
            raise
        self._finish_batch = _Finisher(
            prof,
            label=self.path_label,
            notes=self.notes,
            extra_sources={
                f: _reader_out_name(self._paths.field_column[f])
                for f in EXTRA_FIELDS
                if f in self._paths.field_column
            },
            lat_col=_reader_out_name(self._paths.field_column["lat"])
            if "lat" in self._paths.field_column
            else None,
            lon_col=_reader_out_name(self._paths.field_column["lon"])
            if "lon" in self._paths.field_column
            else None,
            time_col=None,
            custom_time=None,
            tz=tz,
            input_names=[_reader_out_name(c) for c in self._maker.names],
            helpers=True,
        )
        self._gen = _reads.batches_from_table(
            self._maker.batches(records),
            columns=self._maker.reader_columns(),
            timezone=tz,
            batch_size=batch_size,
        )
        self._done = False

    # -- reading ----------------------------------------------------------------------

    def _records(self) -> Iterator:
        if self._prof.container == "xml":
            yield from self._xml_records()
            return
        where = [(_compile(p, "json"), v) for p, v in self._prof.where]
        where_key = self._prof.where[0][0] if where else None
        records = _compile(self._prof.records, "json") if self._prof.records else None
        skipped = self._skipped
        for doc in self._json_documents():
            if doc is _BAD or not isinstance(doc, dict):
                yield _BAD  # a line that did not parse, or a document that is not an object
                continue
            if where and not all(get(doc, doc) == v for get, v in where):
                skipped[str(doc.get(where_key))] += 1
                continue
            if records is None:
                yield (doc, doc)
                continue
            recs = records(doc, doc)
            if recs is _MISSING or recs is None:
                skipped[f"without {self._prof.records}"] += 1
                continue
            for rec in recs if isinstance(recs, list) else [recs]:
                yield (rec, doc) if isinstance(rec, dict) else _BAD

    def _head(self) -> bytes:
        """The first bytes (BOM handled by the caller)."""
        return self._src.read(1 << 16)

    def _byte_chunks(self) -> Iterator[bytes]:
        first = self._head()
        self.bom = first.startswith(_reads._BOM)
        _check_bom(self._prof, self.bom, self.path_label)
        if self.bom:
            first = first[len(_reads._BOM) :]
        if first:
            yield first
        while True:
            try:
                data = self._src.read(1 << 20)
            except _reads._CorruptData as exc:
                raise ReadFormatError(self._src.corrupt_message(exc, self._counter[0])) from None
            if not data:
                return
            yield data

    def _json_documents(self) -> Iterator:
        chunks = self._byte_chunks()
        head = b""
        for c in chunks:
            head += c
            if head.strip() or len(head) > self._limit:
                break
        if not head.strip():
            self._empty = True
            return
        chunks = _chain_first(head, chunks)
        text0 = head.lstrip()
        layout = self._prof.layout
        if text0[:1] == b"<":
            raise ReadFormatError(
                f"{self.path_label} looks like XML, but profile {self._prof.name} reads JSON"
            )
        if layout == "auto":
            layout = "array" if text0[:1] == b"[" else _lines_or_documents(text0)
        self.layout = layout
        enc = self._prof.encoding or "utf-8"
        if layout == "lines":
            yield from _json_lines(chunks, enc, self._limit, self.path_label)
        else:
            yield from _json_values(
                chunks, enc, self._limit, self.path_label, array=layout == "array"
            )

    def _xml_records(self) -> Iterator:
        tag = self._prof.records
        chunks = self._byte_chunks()
        parser = ET.XMLParser(encoding=self._prof.encoding) if self._prof.encoding else None
        stack: list = []
        seen = False
        try:
            for event, el in ET.iterparse(
                _ChunkFile(chunks), events=("start", "end"), parser=parser
            ):
                if event == "start":
                    stack.append(el)
                    seen = True
                    continue
                stack.pop()
                if _local(el.tag) == tag:
                    yield (el, None)
                    if stack:
                        stack[-1].remove(el)  # keeps memory flat: read records are let go
                    el.clear()
        except ET.ParseError as exc:
            if not seen:
                self._empty = True
                return
            raise ReadFormatError(
                f"{self.path_label}: not well-formed XML ({exc}); re-export the file"
            ) from None

    # -- ReadStream protocol ----------------------------------------------------------

    @property
    def time_format(self) -> str | None:
        return self._prof.time.describe() if "timestamp" in self.mapping else None

    @property
    def format(self) -> dict:
        return {
            "container": self._prof.container,
            "layout": getattr(self, "layout", None),
            "compression": self.compression,
            "encoding": self._prof.encoding or "utf-8",
            "bom": getattr(self, "bom", False),
            "time_format": self.time_format,
            "timezone": self.timezone,
        }

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        return self

    def __next__(self) -> ReadBatch:
        try:
            batch = next(self._gen)
        except StopIteration:
            self._finish()
            raise
        self.rows = self._counter[0]
        return self._finish_batch(batch)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self.rows = self._counter[0]
        self.sha256 = self._src.finish()
        self._src.close()
        if self._skipped:
            what = ", ".join(f"{k} {v:,}" for k, v in sorted(self._skipped.items()))
            self.notes.append(
                f"{sum(self._skipped.values()):,} document(s) of {self.path_label} are not "
                f"{self._prof.name} records and were skipped ({what})"
            )
        if self._finish_batch.previews:
            self.notes.append(
                f"{self._finish_batch.previews:,} record(s) are previews (preview = true): the agent "
                "sends the final record of the same vehicle later; both are counted as reads"
            )
        if self._prof.position == "camera":
            self.notes.append(
                f"profile {self._prof.name} carries no positions: its reads are missing_position "
                "unless positioned from a camera table by camera_id"
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._gen.close()
        self._src.close()

    def __repr__(self) -> str:
        return f"<profile stream {self._prof.name} {self.path_label!r} rows={self.rows}>"


def _chain_first(first, rest):
    yield first
    yield from rest


def _lines_or_documents(head: bytes) -> str:
    """``lines`` when the first line is one whole JSON value, else ``documents``."""
    line = head.split(b"\n", 1)[0].strip()
    try:
        json.loads(line)
    except ValueError:
        return "documents"
    return "lines"


def _json_lines(chunks: Iterator[bytes], encoding: str, limit: int, label: str) -> Iterator:
    """One document per line; a line that does not parse is ``_BAD``; blank lines skipped."""
    carry = b""
    line_no = 0
    for chunk in _chain_first(b"", chunks):
        data = carry + chunk if carry else chunk
        lines = data.split(b"\n")
        carry = lines.pop()
        if len(carry) > limit:
            raise ResourceLimitError(
                f"{label}: line {line_no + len(lines) + 1:,} is longer than {limit:,} bytes; "
                "raise --max-line-bytes if it is right"
            )
        for line in lines:
            line_no += 1
            yield from _json_line(line, encoding, limit, label, line_no)
    if carry:
        yield from _json_line(carry, encoding, limit, label, line_no + 1)


def _json_line(line: bytes, encoding: str, limit: int, label: str, line_no: int) -> Iterator:
    if not line.strip():
        return
    if len(line) > limit:
        raise ResourceLimitError(
            f"{label}: line {line_no:,} is longer than {limit:,} bytes; raise --max-line-bytes if it is right"
        )
    try:
        yield json.loads(line.decode(encoding))
    except (UnicodeDecodeError, ValueError, RecursionError):
        yield _BAD


_WS = re.compile(r"[ \t\n\r]*")


def _json_values(
    chunks: Iterator[bytes], encoding: str, limit: int, label: str, *, array: bool
) -> Iterator:
    """Top-level JSON values (or the elements of one top-level array), one at a time.

    A value is decoded once the buffer holds all of it: ``raw_decode`` either succeeds
    on a value that ends before the buffer does, or more text is read. A syntax error
    cannot be skipped (the next value's start is unknown): it stops the file.
    """
    decoder = json.JSONDecoder()
    dec = codecs.getincrementaldecoder(encoding)(errors="strict")
    buf, pos, eof, line = "", 0, False, 1

    def more() -> bool:
        nonlocal buf, pos, eof, line
        if eof:
            return False
        data = next(chunks, None)
        try:
            text = dec.decode(data or b"", final=data is None)
        except UnicodeDecodeError as exc:
            raise ReadFormatError(
                f"{label}: not valid {encoding} near line {line:,} ({exc.reason}); "
                "set [container] encoding in the profile"
            ) from None
        line += buf.count("\n", 0, pos)
        buf = buf[pos:] + text
        pos = 0
        eof = data is None
        return True

    def skip_ws() -> bool:
        """Advance past white space; False at the end of the input."""
        nonlocal pos
        while True:
            pos = _WS.match(buf, pos).end()
            if pos < len(buf):
                return True
            if not more():
                return False

    def fail(what: str):
        at = line + buf.count("\n", 0, pos)
        raise ReadFormatError(
            f"{label}: not valid JSON near line {at:,}: {what}; re-export the file"
        )

    more()
    if array:
        skip_ws()
        pos += 1  # the '['
        if not skip_ws():
            fail("the array is not closed")
        if buf[pos] == "]":
            pos += 1
            if skip_ws():
                fail("text after the array")
            return
    while True:
        if not skip_ws():
            if array:
                fail("the array is not closed")
            return
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                if end < len(buf) or eof:
                    break
            except json.JSONDecodeError as exc:
                if eof:
                    fail(exc.msg)
            except RecursionError:
                fail("nested too deeply")
            if len(buf) - pos > limit:
                raise ResourceLimitError(
                    f"{label}: a JSON document near line {line + buf.count(chr(10), 0, pos):,} is longer "
                    f"than {limit:,} bytes (or is not valid JSON); raise --max-line-bytes if it is right"
                )
            more()
        if end - pos > limit:
            raise ResourceLimitError(
                f"{label}: a JSON document near line {line + buf.count(chr(10), 0, pos):,} is "
                f"{end - pos:,} characters, over the limit of {limit:,}; raise --max-line-bytes if it is right"
            )
        pos = end
        yield value
        if array:
            if not skip_ws():
                fail("the array is not closed")
            if buf[pos] == ",":
                pos += 1
            elif buf[pos] == "]":
                pos += 1
                if skip_ws():
                    fail("text after the array")
                return
            else:
                fail(f"expected ',' or ']' after an element, found {buf[pos]!r}")


class _ChunkFile(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for ``iterparse``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return b""
            self._buf = nxt
        if n is None or n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


# --------------------------------------------------------------------------------------
# OpenALPR bodies, one at a time (for the live relay, issue #12)

_OPENALPR_READS = {"alpr_group": "openalpr-group", "alpr_results": "openalpr-results"}


def _body(body) -> object:
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body)
        if body.startswith(_reads._BOM):
            body = body[len(_reads._BOM) :]
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ReadFormatError(f"OpenALPR body: not valid UTF-8 JSON ({exc})") from None
    if isinstance(body, str):
        try:
            return json.loads(body.lstrip("\ufeff"))
        except ValueError as exc:
            raise ReadFormatError(f"OpenALPR body: not valid JSON ({exc})") from None
    return body


def _documents_batch(docs: Iterable, prof: Profile, tz: str = "UTC") -> ReadBatch:
    """All records of in-memory documents as one :class:`ReadBatch` (rows from 1)."""
    paths = _Paths(prof, dict(prof.fields))
    counter = [0]
    maker = _TableMaker(prof, paths, counter)
    notes: list[str] = []

    def records():
        for doc in docs:
            recs = _compile(prof.records, "json")(doc, doc) if prof.records else doc
            if recs is _MISSING or recs is None:
                continue
            for rec in recs if isinstance(recs, list) else [recs]:
                yield (rec, doc) if isinstance(rec, dict) else _BAD

    finisher = _Finisher(
        prof,
        label="<body>",
        notes=notes,
        extra_sources={
            f: _reader_out_name(paths.field_column[f])
            for f in EXTRA_FIELDS
            if f in paths.field_column
        },
        lat_col=None,
        lon_col=None,
        time_col=None,
        custom_time=None,
        tz=tz,
        input_names=[_reader_out_name(c) for c in maker.names],
        helpers=True,
    )
    batches = [
        finisher(b)
        for b in _reads.batches_from_table(
            maker.batches(records()),
            columns=maker.reader_columns(),
            timezone=tz,
            batch_size=1 << 30,
        )
    ]
    if batches:
        return batches[0]
    names = [*_reads.NORMALISED_COLUMNS, *EXTRA_COLUMNS] + [out for _, out in finisher.inputs]
    empty = pa.table({n: pa.array([], pa.string()) for n in names})
    f64, i64 = np.zeros(0), np.zeros(0, dtype=np.int64)
    return ReadBatch(i64, f64, f64.copy(), i64.copy(), np.zeros(0, dtype=np.int8), empty)


def parse_openalpr(body) -> ReadBatch:
    """Reads of one OpenALPR agent POST body (``alpr_group`` or ``alpr_results``).

    Parameters
    ----------
    body : bytes, str or dict
        The JSON body (a UTF-8 byte order mark is allowed) or the parsed object.

    Returns
    -------
    ReadBatch
        One row per group (``openalpr-group``) or per plate of a frame
        (``openalpr-results``, without positions: ``missing_position`` until positioned
        by camera), with the rules of the shipped profiles: epoch milliseconds UTC,
        0/0 as no position, ``preview`` kept in its own column, image crops never copied.

    Raises
    ------
    ReadFormatError
        Not JSON, or a ``data_type`` that is not a read (heartbeats: use
        :func:`parse_openalpr_heartbeat`).

    Examples
    --------
    >>> batch = parse_openalpr(request_body)  # doctest: +SKIP
    >>> shareable = batch.reason == 0
    """
    doc = _body(body)
    dtype = doc.get("data_type") if isinstance(doc, dict) else None
    name = _OPENALPR_READS.get(dtype)
    if name is None:
        raise ReadFormatError(
            f"OpenALPR body: data_type {dtype!r} is not a read (alpr_group or alpr_results); "
            "heartbeats go to parse_openalpr_heartbeat"
        )
    return _documents_batch([doc], load_profile(name))


def parse_openalpr_heartbeat(body) -> pa.Table:
    """The cameras of one OpenALPR heartbeat body (``data_type = heartbeat``).

    Returns
    -------
    pyarrow.Table
        One row per video stream: ``camera_id``, ``lon``, ``lat`` (null without a GPS
        fix, 0/0 included), ``camera_name``, ``agent``, ``seen_at`` (heartbeat time, UTC
        ISO 8601) and ``reason`` (empty, or why the position is unusable).
    """
    doc = _body(body)
    if not isinstance(doc, dict) or doc.get("data_type") != "heartbeat":
        got = doc.get("data_type") if isinstance(doc, dict) else type(doc).__name__
        raise ReadFormatError(f"OpenALPR body: data_type {got!r} is not a heartbeat")
    return _camera_rows(_documents_batch([doc], load_profile("openalpr-heartbeat")))


def _camera_rows(b: ReadBatch) -> pa.Table:
    from geofence.model import REJECT_REASONS

    ok = b.reason == 0
    return pa.table(
        {
            "camera_id": b.columns.column("camera_id"),
            "lon": pa.array(b.lon, mask=~ok),
            "lat": pa.array(b.lat, mask=~ok),
            "camera_name": b.columns.column("camera_name"),
            "agent": b.columns.column("agent"),
            "seen_at": b.columns.column("timestamp"),
            "reason": pa.array([REJECT_REASONS[c] for c in b.reason.tolist()], pa.string()),
            "time_us": pa.array(b.time_us),
        }
    )


# --------------------------------------------------------------------------------------
# Camera tables from heartbeats (`geofence reads cameras`)

CAMERA_COLUMNS = ("camera_id", "lon", "lat", "camera_name", "agent", "last_seen", "heartbeats")
"""Columns of the camera table: ``camera_id, lon, lat`` first, as ``geofence cameras`` reads."""


@dataclass
class CameraTable:
    """Cameras and their latest known position.

    Attributes
    ----------
    table : pyarrow.Table
        :data:`CAMERA_COLUMNS`, one row per camera with a position, sorted by camera_id.
    heartbeats : int
        Records read (one per camera per heartbeat).
    without_position : dict of str to str
        Cameras never seen with a usable position -> the reason (e.g. ``missing_position``).
    moved : list of str
        Cameras reported at more than one position (the latest is kept).
    notes : list of str
    inputs : list of dict
        File, SHA-256 and records of each input.
    """

    table: pa.Table
    heartbeats: int
    without_position: dict[str, str]
    moved: list[str]
    notes: list[str]
    inputs: list[dict]


def camera_table(
    sources: Sequence, *, profile="openalpr-heartbeat", columns: Mapping[str, str] | None = None
) -> CameraTable:
    """Build the camera table (latest position per camera) from heartbeat files.

    Parameters
    ----------
    sources : sequence of paths, ``"-"`` or binary files
        Heartbeat documents: one per file, JSON lines, or arrays.
    profile : str, path or Profile, default "openalpr-heartbeat"
        A ``kind = "cameras"`` profile.
    columns : mapping, optional
        Path overrides, as ``--columns``.
    """
    prof = load_profile(profile)
    if prof.kind != "cameras":
        raise UsageError(
            f"profile {prof.name} describes reads, not cameras; use a camera profile such as openalpr-heartbeat"
        )
    parts, notes, inputs = [], [], []
    for src in sources:
        with open_profile_reads(
            src, prof, columns=columns, keep_raw=False, _cameras=True
        ) as stream:
            parts.extend(_camera_rows(b) for b in stream)
            notes.extend(stream.notes)
            inputs.append(
                {"file": stream.path_label, "sha256": stream.sha256, "records": stream.rows}
            )
    t = pa.concat_tables(parts) if parts else _camera_rows(_documents_batch([], prof))
    t = t.filter(pc.invert(pc.is_null(t.column("camera_id"))))
    n = t.num_rows
    # Cameras are few (one record per camera per heartbeat): plain NumPy over the ids.
    uniq, inv = np.unique(
        np.array(t.column("camera_id").to_pylist(), dtype=str), return_inverse=True
    )
    inv = inv.reshape(-1)
    beats = np.bincount(inv, minlength=len(uniq))
    reason = np.array(t.column("reason").to_pylist(), dtype=object)
    good = np.flatnonzero(reason == "")
    lon = t.column("lon").to_numpy(zero_copy_only=False)
    lat = t.column("lat").to_numpy(zero_copy_only=False)
    t_us = t.column("time_us").to_numpy(zero_copy_only=False)
    # The latest usable record per camera: sort by (camera, time, input order), take the last.
    order = good[np.lexsort((good, t_us[good], inv[good]))]
    last = order[np.flatnonzero(np.r_[np.diff(inv[order]) != 0, True])] if len(order) else order
    positions = np.unique(np.stack([inv[good], lon[good], lat[good]], axis=1), axis=0)
    moved = [
        str(c) for c in uniq[np.bincount(positions[:, 0].astype(int), minlength=len(uniq)) > 1]
    ]
    without = {
        cam: Counter(reason[inv == i].tolist()).most_common(1)[0][0]
        for i, cam in enumerate(uniq.tolist())
        if i not in set(inv[good].tolist())
    }
    take = pa.array(last, pa.int64())
    rows = pa.table(
        {
            "camera_id": pa.array(uniq[inv[last]].tolist(), pa.string()),
            "lon": pa.array(lon[last], pa.float64()),
            "lat": pa.array(lat[last], pa.float64()),
            "camera_name": t.column("camera_name").take(take),
            "agent": t.column("agent").take(take),
            "last_seen": t.column("seen_at").take(take),
            "heartbeats": pa.array(beats[inv[last]], pa.int64()),
        }
    )
    if without:
        notes.append(
            f"{len(without):,} camera(s) without a usable position left out: "
            + ", ".join(f"{c} ({r})" for c, r in sorted(without.items())[:20])
        )
    if moved:
        notes.append(
            f"{len(moved):,} camera(s) reported more than one position (the latest is kept): "
            + ", ".join(moved[:20])
        )
    return CameraTable(rows, n, without, moved, notes, inputs)


def write_camera_table(
    sources: Sequence,
    out,
    *,
    profile="openalpr-heartbeat",
    columns: Mapping[str, str] | None = None,
) -> CameraTable:
    """Write :func:`camera_table` as CSV (``camera_id,lon,lat,...``), atomically.

    The table feeds ``geofence scan --cameras`` (issue #10) and ``geofence cameras``.
    """
    import csv

    from geofence.atomic import atomic_output

    cams = camera_table(sources, profile=profile, columns=columns)
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(CAMERA_COLUMNS)
    for row in cams.table.to_pylist():
        w.writerow(
            [
                "" if row[c] is None else (repr(row[c]) if isinstance(row[c], float) else row[c])
                for c in CAMERA_COLUMNS
            ]
        )
    with atomic_output(out) as fh:
        fh.write(text.getvalue().encode("utf-8"))
    return cams


# --------------------------------------------------------------------------------------
# Sniffing: propose a profile for an unknown file

_EXTRA_ALIASES = {
    # names vendors give times that the reader's own detection does not know
    "timestamp": (
        "epochtime",
        "epochms",
        "timems",
        "utcdate",
        "datetimeutc",
        "readdate",
        "timestamputc",
    ),
    "plate_region": ("plateregion", "region", "bestregion", "state", "platestate", "jurisdiction"),
    "camera_name": (),
    "agent": ("agent", "agentuid", "agentid"),
    "direction": ("direction", "heading", "traveldirection", "bearing"),
    "confidence": ("confidence", "bestconfidence", "plateconfidence", "score"),
    "preview": ("ispreview", "preview"),
}
_SNIFF_BYTES = 1 << 20


@dataclass
class Sniffed:
    """What :func:`sniff` found.

    Attributes
    ----------
    toml : str
        A proposed profile; every guess is marked ``# guessed`` and must be checked.
    matches : list of str
        Shipped profiles the file fits (their declared columns or record type are present).
    container : str
    """

    toml: str
    matches: list[str]
    container: str


def sniff(source, *, name: str | None = None) -> Sniffed:
    """Look at the start of a read log and propose a profile for it.

    Only names and forms are reported, never cell values (which may be plates). A
    delimited file whose first row names no latitude or longitude column is not
    described at all: its first row may be data.

    Parameters
    ----------
    source : path, ``"-"`` or binary file
    name : str, optional
        The proposed profile's name (default from the file name).
    """
    src = _reads._Source(source)
    try:
        head = src.read(_SNIFF_BYTES)
        while len(head) < _SNIFF_BYTES and not src.eof:
            more = src.read(_SNIFF_BYTES - len(head))
            if not more:
                break
            head += more
        eof = src.eof
    except _reads._CorruptData as exc:
        raise ReadFormatError(src.corrupt_message(exc, 0)) from None
    finally:
        src.close()
    label = src.label
    bom = head.startswith(_reads._BOM)
    body = head[len(_reads._BOM) :] if bom else head
    stripped = body.lstrip()
    if not stripped:
        raise ReadFormatError(f"{label} is empty; nothing to sniff")
    try:
        body.decode("utf-8") if eof else body[: max(0, len(body) - 4)].decode("utf-8")
        encoding = None
    except UnicodeDecodeError:
        encoding = "cp1252"
    stem = (
        re.sub(r"[^a-z0-9._-]+", "-", (name or Path(label).name.split(".")[0]).lower()).strip("-")
        or "my-profile"
    )
    if stripped[:1] in (b"{", b"["):
        return _sniff_json(body, eof, label, stem, bom, encoding)
    if stripped[:1] == b"<":
        return _sniff_xml(body, label, stem, bom, encoding)
    return _sniff_delimited(body, eof, label, stem, bom, encoding)


def write_sniffed(source, out=None, *, name: str | None = None) -> Sniffed:
    """:func:`sniff` ``source`` and write the proposed profile to ``out`` (default stdout)."""
    from geofence.atomic import atomic_output

    found = sniff(source, name=name)
    with atomic_output(out if out is not None else "-") as fh:
        fh.write(found.toml.encode("utf-8"))
    return found


def _extra_field_of(name: str) -> str | None:
    n = _reads._norm_name(name)
    for f, aliases in _EXTRA_ALIASES.items():
        if n in aliases or n == _reads._norm_name(f):
            return f
    return None


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _render(
    stem: str,
    label: str,
    container_lines: list[str],
    fields: dict,
    time_lines: list[str],
    matches: list[str],
    extra: list[str] = (),
) -> str:
    out = [
        f"# Proposed by `geofence reads sniff` from {label}. Every line marked `guessed` must be",
        "# checked against the export's documentation before the profile is used.",
    ]
    if matches:
        out.append(f"# This file also fits the shipped profile(s): {', '.join(matches)}")
    out += [
        f"name = {_toml_str(stem)}",
        f"title = {_toml_str('Read log like ' + label)}",
        *extra,
        "",
        "[container]",
        *container_lines,
        "",
        "[fields]",
    ]
    for f in FIELDS:
        if f in fields:
            val = fields[f]
            out.append(f"{f} = {_toml_str(val)}  # guessed from the name")
        else:
            out.append(f'# {f} = "..."  # not found')
    out += [
        "",
        "[timestamp]",
        *time_lines,
        "",
        "[constants]",
        '# position_source = "gps"  # gps, geocoded or camera: how positions were made',
        '# camera_type = "fixed"    # fixed or mobile',
        "",
    ]
    return "\n".join(out)


def _sniff_delimited(body: bytes, eof: bool, label: str, stem: str, bom: bool, encoding) -> Sniffed:
    cut = body if eof else body[: body.rfind(b"\n") + 1]
    data = cut if encoding is None else cut.decode(encoding).encode("utf-8")
    try:
        stream = _reads.open_reads(io.BytesIO(data), keep_raw=False)
    except ReadFormatError as exc:
        raise ReadFormatError(
            f"{label}: no header row naming a latitude and a longitude column was found, so the "
            "file is not described (its first row may be data); write the profile by hand "
            f"(see `geofence reads profiles show generic-csv`) [{str(exc).split(':', 1)[0]}]"
        ) from None
    with stream:
        for _ in stream:
            pass
        fields = dict(stream.mapping)
        for c in stream.fields:
            f = _extra_field_of(c)
            if f and f not in fields and c not in fields.values():
                fields[f] = c
        kind, epoch_ms = stream._norm.time_kind, stream._norm.epoch_ms
        nulls = _null_tokens_seen(stream, data)
    delim = {"\t": "\\t"}.get(stream.delimiter, stream.delimiter)
    cont = [
        'type = "delimited"',
        f"delimiter = {_toml_str(delim)}",
        f"encoding = {_toml_str(encoding or 'utf-8')}"
        + ("  # guessed: not valid UTF-8" if encoding else ""),
        'bom = "optional"' + ("  # the file has one" if bom else ""),
    ]
    if nulls:
        cont.append(f"null_markers = {json.dumps(nulls)}")
    time_lines = _time_lines(kind, epoch_ms)
    matches = [
        p.name
        for p in list_profiles()
        if p.kind == "reads"
        and p.container == "delimited"
        and (p.delimiter in (None, stream.delimiter))
        and p.fields
        and all(v in stream.fields for f, v in p.fields.items() if f not in p.optional)
    ]
    return Sniffed(_render(stem, label, cont, fields, time_lines, matches), matches, "delimited")


def _null_tokens_seen(stream, data: bytes) -> list[str]:
    """Which of the reader's no-value tokens occur in the position columns (never other cells)."""
    import csv

    text = data.decode("utf-8", "replace").lstrip("\ufeff").splitlines()[1:]
    idx = [stream.fields.index(stream.mapping[f]) for f in ("lat", "lon")]
    seen = set()
    for row in csv.reader(text, delimiter=stream.delimiter):
        for i in idx:
            if i < len(row) and row[i].strip().lower() in _READER_NULLS - {""}:
                seen.add(row[i].strip())
    return sorted(seen)


def _time_lines(kind: str | None, epoch_ms: bool | None) -> list[str]:
    if kind is None:
        return ['format = "auto"  # no time column recognised']
    if kind == "epoch":
        unit = "ms" if epoch_ms else "s"
        return [
            'format = "epoch"',
            f'unit = "{unit}"  # guessed from the magnitude',
            'timezone = "UTC"',
        ]
    if kind == "iso_offset":
        return ['format = "iso8601"  # with a UTC offset']
    form = {
        "iso_local": "iso8601",
        "us_dash": "MM/DD/YYYY - HH:MM:SS",
        "us_space": "MM/DD/YYYY HH:MM:SS",
    }[kind]
    return [
        f"format = {_toml_str(form)}",
        'timezone = "UTC"  # guessed: the times carry no offset; set the zone the log was written in',
    ]


def _flatten(obj, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, object]]:
    if isinstance(obj, dict) and depth < 3:
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
    elif not isinstance(obj, (dict, list)):
        yield prefix, obj


def _sniff_json(body: bytes, eof: bool, label: str, stem: str, bom: bool, encoding) -> Sniffed:
    text0 = body.lstrip()
    layout = "array" if text0[:1] == b"[" else _lines_or_documents(text0)
    chunks = iter([body])
    try:
        if layout == "lines":
            first = next(
                (
                    d
                    for d in _json_lines(chunks, encoding or "utf-8", _SNIFF_BYTES, label)
                    if d is not _BAD
                ),
                None,
            )
        else:
            first = next(
                _json_values(
                    chunks, encoding or "utf-8", _SNIFF_BYTES, label, array=layout == "array"
                ),
                None,
            )
    except (ReadFormatError, ResourceLimitError):
        first = None
    if not isinstance(first, dict):
        raise ReadFormatError(
            f"{label}: the first JSON document is not an object within the first {_SNIFF_BYTES:,} bytes; "
            "write the profile by hand"
        )
    matches = [
        p.name
        for p in list_profiles()
        if p.container == "json" and p.where and all(first.get(k) == v for k, v in p.where)
    ]
    records = None
    rec = first
    if not any(
        _reads._field_of_key(k.split(".")[-1]) in ("lat", "lon") for k, _ in _flatten(first)
    ):
        for k, v in first.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                records, rec = k, v[0]
                break
    fields: dict[str, str] = {}
    for path, _value in _flatten(rec):
        last = path.split(".")[-1]
        f = _reads._field_of_key(last) or _extra_field_of(last)
        if f and f not in fields:
            fields[f] = path
    if records:
        for path, _value in _flatten(first):
            if path == records:
                continue
            f = _reads._field_of_key(path.split(".")[-1]) or _extra_field_of(path.split(".")[-1])
            if f and f not in fields:
                fields[f] = "$." + path
    cont = ['type = "json"', f'layout = "{layout}"']
    if records:
        cont.append(
            f"records = {_toml_str(records)}  # guessed: the list of objects in each document"
        )
    if encoding:
        cont.append(f"encoding = {_toml_str(encoding)}  # guessed: not valid UTF-8")
    if bom:
        cont.append('bom = "optional"  # the file has one')
    tpath = fields.get("timestamp")
    tval = _compile(tpath, "json")(rec, first) if tpath else None
    if isinstance(tval, (int, float)) and not isinstance(tval, bool):
        time_lines = _time_lines("epoch", abs(tval) >= _reads.EPOCH_MS_FROM)
    else:
        kind = None
        if isinstance(tval, str):
            norm = _reads._Normaliser([], {}, "UTC", label, [])
            norm.detect_time_kind(pa.array([tval]))
            kind = norm.time_kind
        time_lines = _time_lines(kind, None)
    dropped = sorted({p for p, v in _flatten(rec) if isinstance(v, str) and len(v) > 1000})
    extra = [f"drop = {json.dumps(dropped)}  # long strings (images?)"] if dropped else []
    text = _render(stem, label, cont, fields, time_lines, matches, extra)
    if not {"lat", "lon"} <= set(fields):
        fields.pop("lat", None), fields.pop("lon", None)
        text = _render(stem, label, cont, fields, time_lines, matches, extra)
        text += '\n[position]\nsource = "camera"  # guessed: no position fields found; a camera table positions the reads\n'
    return Sniffed(text, matches, "json")


def _sniff_xml(body: bytes, label: str, stem: str, bom: bool, encoding) -> Sniffed:
    counts: Counter = Counter()
    depth_of: dict[str, int] = {}
    children: dict[str, list[str]] = {}
    depth = 0
    try:
        for event, el in ET.iterparse(io.BytesIO(body), events=("start", "end")):
            if event == "start":
                depth += 1
                continue
            depth -= 1
            tag = _local(el.tag)
            if depth >= 1 and len(el):  # an element with children below the root
                counts[tag] += 1
                depth_of.setdefault(tag, depth)
                children.setdefault(
                    tag, [_local(c.tag) for c in el] + ["@" + _local(k) for k in el.attrib]
                )
    except ET.ParseError:
        pass  # the sniffed prefix ends mid-document: what was seen is enough
    if not counts:
        raise ReadFormatError(f"{label}: no repeated XML element found to read as records")
    # The record: the most frequent element with children, the shallowest on a tie
    # (a record's own sub-elements, such as <GPS>, repeat as often but lie deeper).
    tag = max(counts, key=lambda t: (counts[t], -depth_of[t]))
    fields: dict[str, str] = {}
    for c in children[tag]:
        f = _reads._field_of_key(c.lstrip("@")) or _extra_field_of(c.lstrip("@"))
        if f and f not in fields:
            fields[f] = c
    cont = [
        'type = "xml"',
        f"records = {_toml_str(tag)}  # guessed: the most frequent element under the root",
    ]
    if encoding:
        cont.append(f"encoding = {_toml_str(encoding)}  # guessed")
    return Sniffed(
        _render(stem, label, cont, fields, ['format = "auto"  # check the time form'], []),
        [],
        "xml",
    )
