"""OpenStreetMap import: sensitive sites from ``.osm.pbf``, OSM XML and Overpass JSON (issue #8).

:func:`read_osm` streams OSM files through libosmium (pyosmium) and turns every object
whose tags match the tag table (``layers/osm_tags.toml``, through
:func:`geofence.layers.match_osm_tags`) into a site; :func:`import_osm` also writes the
sites as a layer file (GeoJSON, GeoPackage, FlatGeobuf, GeoParquet) atomically.

What common converters get wrong, and what happens here instead:

* Areas are closed ways and ``type=multipolygon|boundary`` relations, assembled by
  libosmium's area assembler. A relation's category comes from the relation's own tags:
  an untagged relation does not take its outer way's tags (libosmium dropped that
  "old-style" rule), and a tagged outer way stays an area on its own.
* A ring libosmium cannot assemble (a bow-tie, a self-touching ring) is rebuilt from the
  member coordinates and repaired with :func:`shapely.make_valid`, keeping every lobe.
* A way with a category tag that is not closed is kept as a line and warned about.
* A relation with members missing from the file is listed by id and, by default, kept
  as the member lines that are there (``incomplete="lines"``); nothing is invented.
* A point inside a polygon of its category is dropped (its id is listed on the polygon's
  site); polygons of one category that overlap become one site listing every OSM id.

Reading streams each file a few times so that memory follows the sites, not the file:
one pass per C++ tag filter (tagged nodes, ways and area relations; libosmium's first area
pass), one for the nodes those ways use (``IdTracker.complete_backward_references``), and
one for the way geometries and the assembled areas with only those node locations cached.

Every site carries ``site_id`` (``osm:n123``, ``osm:w123``, ``osm:r123``), ``name``,
``category``, ``osm_ids``, the matched ``tags``, the file's ``data_timestamp`` and the
ODbL ``source``, ``license`` and ``attribution`` ("© OpenStreetMap contributors").
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geofence.errors import LayerError, UsageError
from geofence.layers import _polygonal_part, load_osm_tag_rules, match_osm_tags
from geofence.model import CATEGORIES

__all__ = [
    "ATTRIBUTION",
    "INCOMPLETE_MODES",
    "LICENSE",
    "OSMImport",
    "import_osm",
    "parse_bbox",
    "read_osm",
]

log = logging.getLogger(__name__)

ATTRIBUTION = "© OpenStreetMap contributors"
"""The attribution the ODbL 1.0 (section 4.3) asks of a produced work; the OSMF's wording."""
LICENSE = "ODbL-1.0"
SOURCE = "OpenStreetMap"
INCOMPLETE_MODES = ("lines", "skip", "error")

# Output layer formats by extension: (pyogrio driver or "parquet", label).
_OUT_FORMATS = {
    ".geojson": ("GeoJSON", "GeoJSON"),
    ".json": ("GeoJSON", "GeoJSON"),
    ".gpkg": ("GPKG", "GeoPackage"),
    ".fgb": ("FlatGeobuf", "FlatGeobuf"),
    ".parquet": ("parquet", "GeoParquet"),
    ".geoparquet": ("parquet", "GeoParquet"),
}
# Tags matched per chunk with the vectorised table (match_osm_tags); bounds the memory of
# the tag rows held between matches.
_CHUNK = 50_000
# Node ids made up for Overpass `out geom` member ways that come without node ids: above
# every real OSM id (~1.3e10 in 2025) but small enough for libosmium's dense id sets.
_SYNTHETIC_NODE_BASE = 1 << 40
_TYPE_ORDER = {"n": 0, "w": 1, "r": 2}
_POLYGONAL = (3, 6)  # shapely type ids of Polygon, MultiPolygon


# --------------------------------------------------------------------------------------
# Result


@dataclass
class OSMImport:
    """Sites read from OpenStreetMap files, and what reading them did.

    Attributes
    ----------
    sites : geopandas.GeoDataFrame
        One row per site (EPSG:4326): ``site_id``, ``name``, ``category``, ``osm_ids``
        (``;``-separated, the site's own id first), ``tags`` (JSON of the matched tags),
        ``data_timestamp``, ``source``, ``license``, ``attribution``, ``geometry``.
    files : list of dict
        Per input: ``file``, ``format``, ``data_timestamp`` and where it came from.
    repaired : list of (str, str)
        Sites whose geometry was rebuilt or made valid, and how.
    merged : list of (str, list of str)
        Sites made of several overlapping polygons of one category, with their OSM ids.
    dropped : list of (str, str)
        Points dropped inside a polygon of their category: (OSM id, site_id kept).
    incomplete : list of (str, list of str, str)
        Relations with missing members: (relation, missing member ids, what was done).
    lines : list of (str, str)
        Objects with a category tag kept as lines, and why.
    """

    sites: gpd.GeoDataFrame
    files: list[dict] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)
    merged: list[tuple[str, list[str]]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    incomplete: list[tuple[str, list[str], str]] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)

    def category_counts(self) -> dict[str, int]:
        """Sites per category, in policy.md section A order."""
        counts = self.sites["category"].value_counts()
        return {c: int(counts[c]) for c in CATEGORIES if c in counts.index}

    def summary_line(self) -> str:
        """One line: sites per category, repaired, merged, dropped, incomplete, lines."""
        cats = ", ".join(f"{c} {n:,}" for c, n in self.category_counts().items()) or "none"
        merged_ids = sum(len(ids) for _, ids in self.merged)
        inc = ""
        if self.incomplete:
            shown = ", ".join(r for r, _, _ in self.incomplete[:5])
            more = " ..." if len(self.incomplete) > 5 else ""
            inc = f" ({shown}{more}: {self.incomplete[0][2]})"
        return (
            f"{len(self.sites):,} OSM sites ({cats}) from {len(self.files)} "
            f"file{'s' if len(self.files) != 1 else ''}; repaired {len(self.repaired):,}, "
            f"merged {merged_ids:,}{f' into {len(self.merged):,}' if self.merged else ''}, dropped {len(self.dropped):,}, "
            f"incomplete {len(self.incomplete):,}{inc}, lines {len(self.lines):,}"
        )


# --------------------------------------------------------------------------------------
# Options


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``W,S,E,N`` in degrees (EPSG:4326); ``W > E`` crosses the antimeridian.

    Raises
    ------
    UsageError
        If there are not four numbers, or they are out of range, or ``S > N``.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"--bbox {text!r}: give four numbers W,S,E,N in degrees, e.g. -122.35,37.75,-122.15,37.9"
        ) from None
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise UsageError(
            f"--bbox {text!r}: need -180 <= W, E <= 180 and -90 <= S <= N <= 90 (lon/lat degrees)"
        )
    return west, south, east, north


def _bbox_geometry(bbox: Sequence[float]) -> shapely.Geometry:
    west, south, east, north = bbox
    if west <= east:
        return shapely.box(west, south, east, north)
    return shapely.union(
        shapely.box(west, south, 180, north), shapely.box(-180, south, east, north)
    )


# --------------------------------------------------------------------------------------
# Tag rules


@dataclass(frozen=True)
class _Rules:
    rules: list  # geofence.layers._TagRule, in table order
    indexed: list  # the same rules with `category` replaced by their index
    keys: tuple[str, ...]  # every key any rule looks at
    any_value: tuple[str, ...]  # keys of rules that match any value ("*")
    pairs: tuple[tuple[str, str], ...]  # a tag pair of every other rule

    @classmethod
    def load(cls, path, building_hints: bool, categories: Sequence[str] | None) -> _Rules:
        rules = load_osm_tag_rules(path)
        if not building_hints:
            # building=* fallbacks are hints only: a building built as a church may not
            # be one now (layers/osm_tags.toml). They apply with --building-hints.
            rules = [r for r in rules if {k for k, _ in r.match} != {"building"}]
        if categories:
            rules = [r for r in rules if r.category in categories]
        if not rules:
            raise UsageError(
                "no rule of the tag table is left for the categories asked; check --category and --tags"
            )
        keys = tuple(dict.fromkeys(k for r in rules for k, _ in r.match))
        # One condition per rule that every object matching the rule meets: a tag pair
        # when the rule lists values (cheap to test in C++, and `amenity=cafe` never
        # reaches Python), else the key alone (`healthcare=*`).
        any_value: list[str] = []
        pairs: list[tuple[str, str]] = []
        for r in rules:
            listed = [(k, v) for k, v in r.match if v is not None]
            if listed:
                k, values = min(listed, key=lambda kv: len(kv[1]))
                pairs.extend((k, v) for v in values)
            else:
                any_value.append(r.match[0][0])
        indexed = [dataclasses.replace(r, category=i) for i, r in enumerate(rules)]
        return cls(
            rules, indexed, keys, tuple(dict.fromkeys(any_value)), tuple(dict.fromkeys(pairs))
        )

    def match(self, rows: list[dict]) -> np.ndarray:
        """Index of the first matching rule per tag row, -1 where none matches."""
        if not rows:
            return np.zeros(0, dtype=np.int64)
        frame = pd.DataFrame.from_records(rows, columns=list(self.keys))
        idx = match_osm_tags(frame, self.indexed)
        return np.array([-1 if v is None else v for v in idx], dtype=np.int64)

    def matched_tags(self, rule: int, tags: dict) -> dict:
        return {k: tags[k] for k, _ in self.rules[rule].match if k in tags}


# --------------------------------------------------------------------------------------
# Input formats


def _magic(path: Path) -> tuple[str, bytes]:
    """(compression, first decompressed bytes) of a file."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            return "gz", fh.read(4096)
    if head[:3] == b"BZh":
        with bz2.open(path, "rb") as fh:
            return "bz2", fh.read(4096)
    with path.open("rb") as fh:
        return "", fh.read(4096)


def _sniff(path: Path) -> tuple[str, str]:
    """Return (kind, libosmium format string): kind is ``pbf``, ``xml`` or ``overpass``."""
    comp, head = _magic(path)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "xml", "osm" + (f".{comp}" if comp else "")
    if text.startswith(b"{"):
        return "overpass", ""
    if not comp and b"OSMHeader" in head[:64]:
        return "pbf", "pbf"
    raise LayerError(
        f"{path.name}: not an OSM file (expected .osm.pbf, OSM XML (.osm, .osm.bz2, .osm.gz) or Overpass JSON)"
    )


_XML_TIMESTAMP = (
    re.compile(rb'<meta\b[^>]*\bosm_base="([^"]+)"'),
    re.compile(rb'<osm\b[^>]*\btimestamp="([^"]+)"'),
)


def _iso(ts: str | datetime | None) -> str | None:
    """Normalise an OSM timestamp to ``YYYY-MM-DDTHH:MM:SSZ``."""
    if ts is None or ts == "":
        return None
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------
# Overpass JSON -> OPL (libosmium then assembles areas exactly as for PBF and XML)


def _json_text(path: Path) -> Iterator[str]:
    comp, _ = _magic(path)
    opener = {"gz": gzip.open, "bz2": bz2.open}.get(comp, open)
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


class _JSONStream:
    """Walk one top-level JSON object, yielding the items of its ``elements`` array one
    at a time; every other key's value is parsed whole (Overpass puts small ``version``,
    ``osm3s`` and ``remark`` values there)."""

    def __init__(self, path: Path) -> None:
        self._chunks = _json_text(path)
        self._buf = ""
        self._pos = 0
        self._dec = json.JSONDecoder()
        self.path = path
        self.header: dict = {}

    def _fill(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def _skip_ws(self) -> str:
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in " \t\r\n":
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def _expect(self, chars: str) -> str:
        c = self._skip_ws()
        if c == "":
            raise LayerError(
                f"{self.path.name}: Overpass JSON is cut short or malformed (it ends early); download it again"
            )
        if c not in chars:
            raise LayerError(
                f"{self.path.name}: not Overpass JSON (expected {' or '.join(repr(x) for x in chars)} "
                f"at character {self._pos}, found {c!r}); export with [out:json]"
            )
        self._pos += 1
        return c

    def _value(self):
        self._skip_ws()
        while True:
            try:
                value, end = self._dec.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                # Incomplete in the buffer: read on. At the end of the file it is broken.
                if not self._fill():
                    raise LayerError(
                        f"{self.path.name}: Overpass JSON is cut short or malformed ({exc.msg}); download it again"
                    ) from None
                continue
            if end == len(self._buf) and self._fill():
                continue  # a number may go on in the next chunk
            self._pos = end
            return value

    def elements(self) -> Iterator[dict]:
        self._fill()
        self._expect("{")
        if self._skip_ws() == "}":
            return
        while True:
            key = self._value()
            self._expect(":")
            if key == "elements":
                self._expect("[")
                if self._skip_ws() == "]":
                    self._pos += 1
                else:
                    while True:
                        yield self._value()
                        if self._expect(",]") == "]":
                            break
            else:
                self.header[key] = self._value()
            if self._expect(",}") == "}":
                return


def _overpass_to_opl(path: Path, tmpdir: Path) -> tuple[Path, str | None, int]:
    """Convert Overpass JSON (``out body``/``out meta``/``out geom``) to one sorted OPL file.

    Returns (OPL path, ``osm3s.timestamp_osm_base`` or None, elements read). Nodes, ways
    and relations go to three files joined at the end, so any element order works.
    Member ways of ``out geom`` relations that come without node ids get made-up node
    ids, one per distinct location, above any real id.
    """
    import osmium
    from osmium.osm import mutable

    parts = [tmpdir / f"{path.name}.{k}.opl" for k in ("n", "w", "r")]
    seen_nodes: set[int] = set()
    seen_ways: set[int] = set()
    seen_rels: set[int] = set()
    synthetic: dict[tuple[float, float], int] = {}
    last_id = {"n": -1, "w": -1, "r": -1}
    sorted_ids = [True]

    def order(kind: str, oid: int) -> None:
        if oid < last_id[kind]:
            sorted_ids[0] = False
        last_id[kind] = oid

    stream = _JSONStream(path)
    n_el = 0
    with contextlib.ExitStack() as stack:
        wn, ww, wr = (
            stack.enter_context(osmium.SimpleWriter(str(p), overwrite=True)) for p in parts
        )

        def meta(el: dict) -> dict:
            out = {"tags": {str(k): str(v) for k, v in (el.get("tags") or {}).items()}}
            if el.get("timestamp"):
                out["timestamp"] = el["timestamp"]
            if el.get("version"):
                out["version"] = int(el["version"])
            return out

        def node(nid: int, lon, lat, **attrs) -> None:
            if nid in seen_nodes or lon is None or lat is None:
                return
            seen_nodes.add(nid)
            order("n", nid)
            wn.add_node(mutable.Node(id=nid, location=(float(lon), float(lat)), **attrs))

        def synthetic_ids(geometry: list) -> list[int]:
            ids = []
            for pt in geometry:
                if not pt:  # null: a node outside the query's bbox
                    ids.append(_SYNTHETIC_NODE_BASE - 1)  # an id no file has: a missing node
                    continue
                key = (pt["lon"], pt["lat"])
                nid = synthetic.get(key)
                if nid is None:
                    nid = synthetic[key] = _SYNTHETIC_NODE_BASE + len(synthetic)
                    node(nid, pt["lon"], pt["lat"])
                ids.append(nid)
            return ids

        for el in stream.elements():
            n_el += 1
            kind, oid = el.get("type"), el.get("id")
            if not isinstance(oid, int):
                continue
            if kind == "node":
                node(oid, el.get("lon"), el.get("lat"), **meta(el))
            elif kind == "way":
                if oid in seen_ways:
                    continue
                seen_ways.add(oid)
                order("w", oid)
                refs = el.get("nodes")
                geometry = el.get("geometry")
                if refs and geometry and len(refs) == len(geometry):
                    for nid, pt in zip(refs, geometry, strict=True):
                        if pt:
                            node(nid, pt["lon"], pt["lat"])
                elif not refs and geometry:
                    refs = synthetic_ids(geometry)
                ww.add_way(mutable.Way(id=oid, nodes=list(refs or []), **meta(el)))
            elif kind == "relation":
                if oid in seen_rels:
                    continue
                seen_rels.add(oid)
                order("r", oid)
                members = []
                for m in el.get("members") or []:
                    mtype, ref, role = m.get("type"), m.get("ref"), m.get("role") or ""
                    if mtype == "node":
                        node(ref, m.get("lon"), m.get("lat"))
                    elif mtype == "way" and m.get("geometry") and ref not in seen_ways:
                        seen_ways.add(ref)
                        order("w", ref)
                        ww.add_way(mutable.Way(id=ref, nodes=synthetic_ids(m["geometry"])))
                    if mtype in ("node", "way", "relation"):
                        members.append((mtype[0], ref, role))
                wr.add_relation(mutable.Relation(id=oid, members=members, **meta(el)))
    remark = stream.header.get("remark")
    if remark and re.search(r"error|timed? ?out|out of memory", str(remark), re.IGNORECASE):
        raise LayerError(
            f"{path.name}: the Overpass server reports the answer is incomplete ({str(remark).strip()[:200]}); "
            "rerun the query with a smaller area or a larger [timeout:]/[maxsize:]"
        )
    out = tmpdir / f"{path.name}.opl"
    with out.open("wb") as dst:
        for p in parts:
            with p.open("rb") as src:
                shutil.copyfileobj(src, dst)
            p.unlink()
    if not all(sorted_ids):
        # libosmium's id sets and area assembly need ids in ascending order within each
        # type; `out geom` member ways (and hand-made files) may break it: sort.
        merge = osmium.MergeInputReader()
        merge.add_file(str(out))
        ordered = tmpdir / f"{path.name}.sorted.opl"
        with osmium.SimpleWriter(str(ordered), overwrite=True) as writer:
            merge.apply(writer, simplify=True)
        out.unlink()
        out = ordered
    base = (stream.header.get("osm3s") or {}).get("timestamp_osm_base")
    return out, base, n_el


# --------------------------------------------------------------------------------------
# Reading one file


@dataclass
class _Obj:
    """A tagged object that matched a rule."""

    oid: int
    rule: int
    tags: dict
    ts: int  # epoch seconds, 0 when the file has none


@dataclass
class _Raw:
    """What the passes over one file collected."""

    nodes: list[tuple[_Obj, float, float]] = field(default_factory=list)
    node_ids: set[int] = field(default_factory=set)
    ways: dict[int, _Obj] = field(default_factory=dict)
    relations: dict[int, tuple[_Obj, list[tuple[str, int, str]]]] = field(default_factory=dict)
    line_wkb: dict[int, bytes] = field(default_factory=dict)  # way id -> LineString WKB
    partial: dict[int, list[list[tuple[float, float]]]] = field(default_factory=dict)
    closed: dict[int, bool] = field(default_factory=dict)
    way_area: dict[int, bytes | None] = field(default_factory=dict)  # None: assembly failed
    rel_area: dict[int, bytes | None] = field(default_factory=dict)


def _tags_of(o, keys: frozenset[str]) -> dict:
    return {t.k: t.v for t in o.tags if t.k in keys}


def _ts(o) -> int:
    try:
        return int(o.timestamp.timestamp())
    except (OverflowError, OSError, ValueError):
        return 0


def _scan(file, rules: _Rules) -> _Raw:
    """The passes over one OSM file (see the module docstring)."""
    import osmium
    from osmium.osm import NODE, RELATION, WAY

    raw = _Raw()
    wanted = frozenset((*rules.keys, "name", "area", "type"))
    tracker = osmium.IdTracker()
    areas = osmium.area.AreaManager()

    # 1. tagged nodes, ways and area relations (libosmium's first area pass sees the same
    # relations). An object matching a rule meets one of two C++ filters: a listed tag
    # pair or a key of a "*" rule; pyosmium filters only chain (AND), so each is a pass.
    nodes: list[tuple[_Obj, float, float, dict]] = []
    ways: list[tuple[_Obj, dict]] = []
    rels: list[tuple[_Obj, list, dict]] = []

    def flush() -> None:
        for (obj, lon, lat, tags), i in zip(nodes, rules.match([n[3] for n in nodes]), strict=True):
            if i >= 0 and obj.oid not in raw.node_ids:
                obj.rule, obj.tags = int(i), tags
                raw.nodes.append((obj, lon, lat))
                raw.node_ids.add(obj.oid)
        for (obj, tags), i in zip(ways, rules.match([w[1] for w in ways]), strict=True):
            if i >= 0:
                obj.rule, obj.tags = int(i), tags
                raw.ways[obj.oid] = obj
                tracker.add_way(obj.oid)
        for (obj, members, tags), i in zip(rels, rules.match([r[2] for r in rels]), strict=True):
            if i >= 0:
                obj.rule, obj.tags = int(i), tags
                raw.relations[obj.oid] = (obj, members)
                for mtype, ref, _ in members:
                    if mtype == "w":
                        tracker.add_way(ref)
        nodes.clear()
        ways.clear()
        rels.clear()

    # pyosmium's iterators do not own their handlers: keep every one referenced here.
    area_types = osmium.filter.TagFilter(("type", "multipolygon"), ("type", "boundary"))
    area_types.enable_for(RELATION)
    first_pass = areas.first_pass_handler()
    selectors = []
    if rules.pairs:
        selectors.append(osmium.filter.TagFilter(*rules.pairs))
    if rules.any_value:
        selectors.append(osmium.filter.KeyFilter(*rules.any_value))
    for selector in selectors:
        with osmium.io.Reader(file, NODE | WAY | RELATION) as rd:
            for o in osmium.OsmFileIterator(rd, selector, area_types, first_pass):
                kind = o.type_str()
                if kind == "n":
                    loc = o.location
                    if loc.valid():
                        nodes.append(
                            (_Obj(o.id, -1, {}, _ts(o)), loc.lon, loc.lat, _tags_of(o, wanted))
                        )
                elif kind == "w":
                    ways.append((_Obj(o.id, -1, {}, _ts(o)), _tags_of(o, wanted)))
                else:
                    members = [(m.type, m.ref, m.role) for m in o.members]
                    rels.append((_Obj(o.id, -1, {}, _ts(o)), members, _tags_of(o, wanted)))
                if len(nodes) + len(ways) + len(rels) >= _CHUNK:
                    flush()
        flush()

    # 2. the nodes of every way kept (tagged ways and relation members).
    tracker.complete_backward_references(file, relation_depth=0)

    # 3. locations of those nodes only, way lines and libosmium's assembled areas.
    store = osmium.index.create_map("sparse_mem_array")
    locations = osmium.NodeLocationsForWays(store)
    locations.ignore_errors()  # a missing node leaves an invalid location: reported below
    only_kept = tracker.id_filter()
    only_kept.enable_for(NODE | WAY)
    assembled = osmium.BufferIterator()
    wkb = osmium.geom.WKBFactory()

    def take_area(a) -> None:
        oid = a.orig_id()
        table, wanted_ids = (
            (raw.way_area, raw.ways) if a.from_way() else (raw.rel_area, raw.relations)
        )
        if oid not in wanted_ids:
            return
        try:
            table[oid] = bytes.fromhex(wkb.create_multipolygon(a))
        except RuntimeError:
            table[oid] = None  # libosmium could not close the rings: rebuilt below

    second_pass = areas.second_pass_to_buffer(assembled)
    ways_only = osmium.filter.EntityFilter(WAY)
    with osmium.io.Reader(file, NODE | WAY | RELATION) as rd:
        for w in osmium.OsmFileIterator(rd, only_kept, locations, second_pass, ways_only):
            raw.closed[w.id] = w.is_closed()
            try:
                raw.line_wkb[w.id] = bytes.fromhex(wkb.create_linestring(w))
            except (osmium.InvalidLocationError, RuntimeError):
                runs, run = [], []
                for n in w.nodes:
                    if n.location.valid():
                        run.append((n.location.lon, n.location.lat))
                    elif run:
                        runs.append(run)
                        run = []
                runs.append(run)
                raw.partial[w.id] = [r for r in runs if len(r) >= 2]
            for a in assembled:
                take_area(a)
    for a in assembled:  # areas completed by the last objects
        take_area(a)
    return raw


# --------------------------------------------------------------------------------------
# Sites of one file


@dataclass
class _Site:
    site_id: str
    category: str
    name: str
    tags: dict
    geometry: shapely.Geometry
    ts: int  # the object's own timestamp (epoch seconds, 0 if none)
    file: str
    osm_ids: list[str] = field(default_factory=list)
    data_timestamp: str | None = None  # the file's


class _Notes:
    def __init__(self) -> None:
        self.repaired: list[tuple[str, str]] = []
        self.incomplete: list[tuple[str, list[str], str]] = []
        self.lines: list[tuple[str, str]] = []


def _valid_area(
    geom: shapely.Geometry, sid: str, notes: _Notes, why: str | None = None
) -> shapely.Geometry | None:
    """Make an area valid keeping every lobe; None when no area is left."""
    if shapely.get_type_id(geom) == 6 and shapely.get_num_geometries(geom) == 1:
        geom = shapely.get_geometry(geom, 0)  # libosmium gives MultiPolygons; one part is a Polygon
    if shapely.is_valid(geom) and why is None:
        return geom
    reason = shapely.is_valid_reason(geom)
    kept = _polygonal_part(shapely.make_valid(geom))
    if kept is None or shapely.is_empty(kept):
        return None
    lobes = len(shapely.get_parts(kept))
    what = why or "make_valid"
    notes.repaired.append(
        (sid, f"{what}: {reason}; {lobes} polygon{'s' if lobes != 1 else ''} kept")
    )
    return kept


def _ring_area(lines: list[shapely.Geometry]) -> shapely.Geometry | None:
    """Polygons of the closed rings the lines form, or None if a ring stays open."""
    if not lines:
        return None
    merged = shapely.line_merge(shapely.union_all(lines))
    polys = []
    for part in shapely.get_parts(merged):
        coords = shapely.get_coordinates(part)
        if len(coords) < 4 or not np.array_equal(coords[0], coords[-1]):
            return None
        polys.append(shapely.make_valid(shapely.Polygon(coords)))
    return shapely.union_all(polys)


def _file_sites(raw: _Raw, rules: _Rules, file: str, incomplete: str, notes: _Notes) -> list[_Site]:
    sites: list[_Site] = []

    def site(prefix: str, obj: _Obj, geom) -> _Site:
        sid = f"osm:{prefix}{obj.oid}"
        return _Site(
            sid,
            rules.rules[obj.rule].category,
            obj.tags.get("name", ""),
            rules.matched_tags(obj.rule, obj.tags),
            geom,
            obj.ts,
            file,
            [f"{prefix}{obj.oid}"],
        )

    def line_of(wid: int) -> list[shapely.Geometry]:
        if wid in raw.line_wkb:
            return [shapely.from_wkb(raw.line_wkb[wid])]
        return [shapely.linestrings(r) for r in raw.partial.get(wid, [])]

    for obj, lon, lat in raw.nodes:
        sites.append(site("n", obj, shapely.Point(lon, lat)))

    for wid, obj in raw.ways.items():
        sid = f"osm:w{wid}"
        if wid in raw.partial or wid not in raw.closed:
            lines = line_of(wid)
            if lines:
                notes.lines.append(
                    (sid, "nodes missing from the file; kept the lines that are there")
                )
                sites.append(site("w", obj, _lines(lines)))
            else:
                notes.lines.append((sid, "nodes missing from the file; no line left, dropped"))
            continue
        area = raw.way_area.get(wid, b"")
        if area:
            geom = _valid_area(shapely.from_wkb(area), sid, notes)
            if geom is not None:
                sites.append(site("w", obj, geom))
                continue
        if raw.closed[wid] and obj.tags.get("area") != "no":
            line = shapely.from_wkb(raw.line_wkb[wid])
            if shapely.get_num_coordinates(line) >= 4:
                # libosmium left the area empty (e.g. a bow-tie ring): rebuild, repair.
                geom = _valid_area(
                    shapely.Polygon(shapely.get_coordinates(line)),
                    sid,
                    notes,
                    "ring rebuilt, make_valid",
                )
                if geom is not None:
                    sites.append(site("w", obj, geom))
                    continue
        why = (
            "area=no"
            if obj.tags.get("area") == "no"
            else (
                "closed way with no area" if raw.closed[wid] else "unclosed way with a category tag"
            )
        )
        notes.lines.append((sid, f"{why}; kept as a line"))
        sites.append(site("w", obj, shapely.from_wkb(raw.line_wkb[wid])))

    for rid, (obj, members) in raw.relations.items():
        sid = f"osm:r{rid}"
        way_refs = [(ref, role) for t, ref, role in members if t == "w"]
        missing = [
            f"w{ref}" if ref not in raw.closed else f"w{ref} (nodes missing)"
            for ref, _ in way_refs
            if ref not in raw.line_wkb
        ]
        area = raw.rel_area.get(rid, b"")
        if area and not missing:
            geom = _valid_area(shapely.from_wkb(area), sid, notes)
            if geom is not None:
                sites.append(site("r", obj, geom))
                continue
        available = [g for ref, _ in way_refs for g in line_of(ref)]
        if missing:
            done = {"lines": "kept as member lines", "skip": "skipped", "error": "error"}[
                incomplete
            ]
            if incomplete == "lines" and not available:
                done = "no member line available, dropped"
            notes.incomplete.append((sid, missing, done))
            if incomplete == "lines" and available:
                sites.append(site("r", obj, _lines(available)))
            continue
        # Complete but not assembled by libosmium: join the rings ourselves, repair.
        outer = _ring_area([g for ref, role in way_refs if role != "inner" for g in line_of(ref)])
        inner = _ring_area([g for ref, role in way_refs if role == "inner" for g in line_of(ref)])
        if outer is not None:
            geom = shapely.difference(outer, inner) if inner is not None else outer
            geom = _valid_area(geom, sid, notes, "rings rebuilt, make_valid")
            if geom is not None:
                sites.append(site("r", obj, geom))
                continue
        notes.lines.append((sid, "relation rings do not close; kept as member lines"))
        if available:
            sites.append(site("r", obj, _lines(available)))
    return sites


def _lines(lines: list[shapely.Geometry]) -> shapely.Geometry:
    parts = [p for g in lines for p in shapely.get_parts(g)]
    return parts[0] if len(parts) == 1 else shapely.multilinestrings(parts)


# --------------------------------------------------------------------------------------
# De-duplication


def _id_key(osm_id: str) -> tuple[int, int]:
    return _TYPE_ORDER[osm_id[0]], int(osm_id[1:])


def _components(n: int, left: np.ndarray, right: np.ndarray) -> list[int]:
    """Connected component (its smallest member) of each of ``n`` items, given edges."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(n)]


def _dedupe(sites: list[_Site]) -> tuple[list[_Site], list, list]:
    """Merge overlapping same-category polygons; drop points inside them."""
    merged_log: list[tuple[str, list[str]]] = []
    dropped_log: list[tuple[str, str]] = []
    geoms = np.array([s.geometry for s in sites], dtype=object)
    cats = np.array([s.category for s in sites], dtype=object)
    type_ids = shapely.get_type_id(geoms) if len(sites) else np.zeros(0, int)
    is_area = np.isin(type_ids, _POLYGONAL)
    is_point = type_ids == 0
    keep = np.ones(len(sites), dtype=bool)
    out_sites = list(sites)

    for cat in dict.fromkeys(cats[is_area]):
        idx = np.flatnonzero(is_area & (cats == cat))
        tree = shapely.STRtree(geoms[idx])
        left, right = tree.query(geoms[idx], predicate="intersects")
        pair = left < right
        left, right = left[pair], right[pair]
        # Overlapping means sharing area: neighbours that only touch stay apart.
        shares = ~shapely.touches(geoms[idx][left], geoms[idx][right])
        # Groups of overlapping polygons: connected components of the overlap graph.
        label = _components(len(idx), left[shares], right[shares])
        groups: dict[int, list[int]] = {}
        for i, g in enumerate(label):
            groups.setdefault(g, []).append(int(idx[i]))
        for members in groups.values():
            if len(members) < 2:
                continue
            # The largest polygon names the site (ties: the lower OSM id).
            areas = shapely.area(geoms[members])
            order = sorted(
                range(len(members)),
                key=lambda k: (-areas[k], _id_key(sites[members[k]].osm_ids[0])),
            )
            primary = sites[members[order[0]]]
            ids = [sites[members[k]].osm_ids[0] for k in order]
            others = sorted(ids[1:], key=_id_key)
            name = primary.name or next(
                (sites[members[k]].name for k in order if sites[members[k]].name), ""
            )
            union = shapely.union_all(geoms[members])
            out_sites[members[order[0]]] = dataclasses.replace(
                primary,
                geometry=union,
                name=name,
                ts=max(sites[m].ts for m in members),
                data_timestamp=max((sites[m].data_timestamp or "" for m in members), default="")
                or None,
                osm_ids=[ids[0], *others],
            )
            keep[[m for m in members if m != members[order[0]]]] = False
            merged_log.append((primary.site_id, [ids[0], *others]))

    # Points inside a (merged) polygon of their category.
    areas_now = np.flatnonzero(keep & is_area)
    if len(areas_now) and is_point.any():
        area_geoms = np.array([out_sites[i].geometry for i in areas_now], dtype=object)
        area_cats = cats[areas_now]
        tree = shapely.STRtree(area_geoms)
        pts = np.flatnonzero(is_point)
        p_i, a_i = tree.query(geoms[pts], predicate="intersects")
        same = cats[pts[p_i]] == area_cats[a_i]
        taken: set[int] = set()
        for p, a in zip(pts[p_i[same]], areas_now[a_i[same]], strict=True):
            if p in taken:
                continue
            taken.add(p)
            keep[p] = False
            target = out_sites[a]
            target.osm_ids = [
                target.osm_ids[0],
                *sorted([*target.osm_ids[1:], sites[p].osm_ids[0]], key=_id_key),
            ]
            dropped_log.append((sites[p].site_id, target.site_id))
    merged_log.sort(key=lambda m: _id_key(m[1][0]))
    dropped_log.sort(key=lambda d: _id_key(d[0][4:]))
    return [s for s, k in zip(out_sites, keep, strict=True) if k], merged_log, dropped_log


# --------------------------------------------------------------------------------------
# Public API


def read_osm(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    tags: str | os.PathLike | None = None,
    categories: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    incomplete: str = "lines",
    building_hints: bool = False,
) -> OSMImport:
    """Read sensitive sites from OpenStreetMap files.

    Parameters
    ----------
    paths : path or iterable of paths
        ``.osm.pbf``, OSM XML (``.osm``, ``.osm.bz2``, ``.osm.gz``) or Overpass JSON
        (``[out:json]`` with ``out body``, ``out meta`` or ``out geom``; plain, ``.gz`` or
        ``.bz2``). The format is read from the file's first bytes, not its name.
    tags : path, optional
        Tag table with the schema of ``layers/osm_tags.toml`` (the shipped one by default).
    categories : sequence of str, optional
        Keep only these category ids.
    bbox : (west, south, east, north), optional
        Keep only sites that intersect this box (degrees; ``west > east`` crosses the
        antimeridian).
    incomplete : {"lines", "skip", "error"}
        What to do with a relation whose members are not all in the file: keep the
        member lines that are there (default), drop it, or raise. Either way it is
        listed in :attr:`OSMImport.incomplete`.
    building_hints : bool
        Also use the table's ``building=*`` fallback rules (``building=church`` ...),
        which only say what a building was built as.

    Returns
    -------
    OSMImport
        The sites (a GeoDataFrame in EPSG:4326) and what was repaired, merged,
        dropped, incomplete or kept as a line.

    Raises
    ------
    LayerError
        If a file is missing or not OSM data, an Overpass answer says it is incomplete,
        or (with ``incomplete="error"``) a relation has missing members.
    UsageError
        For an unknown category or ``incomplete`` mode.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> osm = pathlib.Path(tempfile.mkdtemp()) / "one.osm"
    >>> _ = osm.write_text('<osm version="0.6"><node id="7" lat="37.8" lon="-122.27">'
    ...     '<tag k="amenity" v="library"/><tag k="name" v="Main"/></node></osm>')
    >>> read_osm(osm).sites[["site_id", "name", "category"]].to_dict("records")
    [{'site_id': 'osm:n7', 'name': 'Main', 'category': 'library'}]
    """
    import osmium

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise UsageError("no OSM input given")
    if incomplete not in INCOMPLETE_MODES:
        raise UsageError(f"incomplete={incomplete!r}: use one of {', '.join(INCOMPLETE_MODES)}")
    for c in categories or ():
        if c not in CATEGORIES:
            raise UsageError(
                f"category {c!r} is not a category id; use one of {', '.join(CATEGORIES)}"
            )
    rules = _Rules.load(tags, building_hints, categories)
    notes = _Notes()
    sites: list[_Site] = []
    files = []
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="geofence-osm-") as tmp:
        for path in paths:
            if not path.is_file():
                raise LayerError(f"{path}: no such file")
            kind, fmt = _sniff(path)
            file_ts, ts_from = None, None
            if kind == "overpass":
                source, file_ts, _ = _overpass_to_opl(path, Path(tmp))
                osm_file = osmium.io.File(str(source), "opl")
                ts_from = "osm3s.timestamp_osm_base" if file_ts else None
            else:
                osm_file = osmium.io.File(str(path), fmt)
                if kind == "pbf":
                    with osmium.io.Reader(osm_file, osmium.osm.NOTHING) as rd:
                        file_ts = rd.header().get("osmosis_replication_timestamp") or None
                    ts_from = "osmosis_replication_timestamp" if file_ts else None
                else:
                    _, head = _magic(path)
                    for pattern, name in zip(
                        _XML_TIMESTAMP, ("<meta osm_base>", "<osm timestamp>"), strict=True
                    ):
                        if m := pattern.search(head):
                            file_ts, ts_from = m.group(1).decode(), name
                            break
            if kind != "pbf":
                # One parse of the text into a temporary PBF, then every pass reads the
                # PBF: XML parsing costs ~30x a PBF pass (issue #8 benchmark).
                pbf = Path(tmp) / f"{len(files)}.osm.pbf"
                try:
                    with osmium.SimpleWriter(osmium.io.File(str(pbf), "pbf")) as writer:
                        osmium.apply(osm_file, writer)
                except RuntimeError as exc:
                    raise LayerError(
                        f"{path.name}: cannot be read as OSM {kind.upper()} data ({exc})"
                    ) from None
                osm_file = osmium.io.File(str(pbf), "pbf")
            try:
                raw = _scan(osm_file, rules)
            except RuntimeError as exc:
                raise LayerError(
                    f"{path.name}: cannot be read as OSM {kind.upper()} data ({exc})"
                ) from None
            file_sites = [
                s
                for s in _file_sites(raw, rules, path.name, incomplete, notes)
                if s.site_id not in seen
            ]
            seen.update(s.site_id for s in file_sites)
            newest = max((s.ts for s in file_sites), default=0)
            stamp = _iso(file_ts)
            if stamp is None and newest:
                stamp, ts_from = _iso(datetime.fromtimestamp(newest, UTC)), "newest object"
            for s in file_sites:
                s.data_timestamp = stamp
            files.append(
                {
                    "file": path.name,
                    "format": kind,
                    "data_timestamp": stamp,
                    "timestamp_from": ts_from,
                }
            )
            sites.extend(file_sites)

    if incomplete == "error" and notes.incomplete:
        listed = ", ".join(
            f"{r} (missing {', '.join(m[:3])}{' ...' if len(m) > 3 else ''})"
            for r, m, _ in notes.incomplete[:5]
        )
        raise LayerError(
            f"{len(notes.incomplete)} relation(s) with members missing from the input: {listed}; "
            "extract with complete relations (osmium extract --strategy smart) or use --incomplete lines|skip"
        )
    if bbox is not None:
        box = _bbox_geometry(bbox)
        inside = shapely.intersects(np.array([s.geometry for s in sites], dtype=object), box)
        sites = [s for s, k in zip(sites, inside, strict=True) if k]
    sites, merged, dropped = _dedupe(sites)
    sites.sort(key=lambda s: _id_key(s.osm_ids[0]))
    for sid, why in notes.lines:
        log.warning("%s: %s", sid, why)
    for sid, missing, done in notes.incomplete:
        log.warning("%s: members missing from the input (%s); %s", sid, ", ".join(missing), done)
    return OSMImport(
        sites=_frame(sites),
        files=files,
        repaired=notes.repaired,
        merged=merged,
        dropped=dropped,
        incomplete=notes.incomplete,
        lines=notes.lines,
    )


def _frame(sites: list[_Site]) -> gpd.GeoDataFrame:
    n = len(sites)
    return gpd.GeoDataFrame(
        {
            "site_id": pd.Series([s.site_id for s in sites], dtype=object),
            "name": pd.Series([s.name for s in sites], dtype=object),
            "category": pd.Series([s.category for s in sites], dtype=object),
            "osm_ids": pd.Series([";".join(s.osm_ids) for s in sites], dtype=object),
            "tags": pd.Series(
                [json.dumps(s.tags, sort_keys=True, ensure_ascii=False) for s in sites],
                dtype=object,
            ),
            "data_timestamp": pd.Series([s.data_timestamp for s in sites], dtype=object),
            "source": pd.Series([f"{SOURCE} ({s.file})" for s in sites], dtype=object),
            "license": pd.Series([LICENSE] * n, dtype=object),
            "attribution": pd.Series([ATTRIBUTION] * n, dtype=object),
        },
        geometry=gpd.GeoSeries([s.geometry for s in sites], crs="EPSG:4326"),
        crs="EPSG:4326",
    )


def write_sites(sites: gpd.GeoDataFrame, out: str | os.PathLike) -> str:
    """Write sites as a layer file, atomically; return the format label.

    The file appears only when complete (written beside the target, then renamed).
    GeoPackage's creation time is fixed so identical inputs give identical bytes.

    Raises
    ------
    LayerError
        If the extension names no supported layer format or the file cannot be written.
    """
    target = Path(out)
    ext = target.suffix.lower()
    if ext not in _OUT_FORMATS:
        raise LayerError(
            f"{target.name}: cannot tell the layer format from the name; use {', '.join(sorted(_OUT_FORMATS))}"
        )
    driver, label = _OUT_FORMATS[ext]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent)
    except OSError as exc:
        raise LayerError(
            f"{target}: cannot write there ({exc.strerror}); choose another output path"
        ) from None
    tmp = Path(tmp_dir) / f"sites{ext}"
    try:
        if driver == "parquet":
            sites.to_parquet(tmp, index=False)
        else:
            import pyogrio

            # GDAL stamps GeoPackages with the current time unless OGR_CURRENT_DATE is set.
            pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2000-01-01T00:00:00Z"})
            try:
                pyogrio.write_dataframe(
                    sites, tmp, driver=driver, layer=target.stem, geometry_type="Unknown"
                )
            finally:
                pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise LayerError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return label


def import_osm(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    out: str | os.PathLike,
    **options,
) -> OSMImport:
    """Read sites from OpenStreetMap files (:func:`read_osm`) and write them to ``out``.

    Parameters
    ----------
    paths : path or iterable of paths
        OSM inputs, as for :func:`read_osm`.
    out : path
        Layer file: ``.geojson``, ``.gpkg``, ``.fgb`` or ``.parquet``; written atomically.
    **options
        ``tags``, ``categories``, ``bbox``, ``incomplete``, ``building_hints`` of
        :func:`read_osm`.

    Returns
    -------
    OSMImport
        As :func:`read_osm` returns it.
    """
    target = Path(out)
    if target.suffix.lower() not in _OUT_FORMATS:
        raise LayerError(
            f"{target.name}: cannot tell the layer format from the name; use {', '.join(sorted(_OUT_FORMATS))}"
        )
    result = read_osm(paths, **options)
    write_sites(result.sites, target)
    return result
