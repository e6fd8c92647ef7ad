"""Offline single-file HTML report of a scan: map, charts and table of flagged reads (issue #9).

:func:`build_html` reads a report geofence wrote (GeoJSON, GeoJSON-seq or CSV) as a stream,
with its summary and the site layers the summary names (SHA-256 checked), and writes one
HTML file that opens from disk with no network: a Leaflet map drawn on Canvas without tiles
(sites by category, fences, every flagged read), SVG charts with their data tables, a paged
and sortable table of every report property, the counts and the provenance of every input.

Up to ``max_points`` flagged reads the page holds every read in compact columns; above, it
holds a density grid (three resolutions) and per-site totals, built block by block so
memory does not grow with the report. The same inputs give the same bytes.

Examples
--------
>>> from geofence.html import build_html
>>> build_html("report.geojson", "summary.json", layers=["schools.toml"], out="report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from geofence._version import __version__
from geofence.atomic import atomic_output
from geofence.html._aggregate import Aggregator
from geofence.html._encode import column, dictionary, floats, ints, uints
from geofence.html._page import notices, render
from geofence.html._report import ReportError, ReportStream
from geofence.html._sites import fenced_sites, find_layers, load_checked_sites, pack_sites
from geofence.model import CATEGORIES

__all__ = ["DEFAULT_MAX_POINTS", "ReportError", "build_html"]

DEFAULT_MAX_POINTS = 100_000
"""Flagged reads drawn one by one; above, the page aggregates (issue #9: 100k reads <= 6 MB)."""

MAX_SITES_DRAWN = 60_000
"""Fenced sites drawn around the reads at most; beyond, only the sites reads matched."""

COUNT_KEYS = ("reads_in", "reads_clean", "reads_flagged", "reads_rejected")

# Okabe & Ito's colour-blind-safe palette, each colour paired with a shape so that no two
# categories look alike and colour is never the only cue (WCAG 2.1 1.4.1).
CATEGORY_STYLE = {
    "school": ("School", "#0072B2", "circle"),
    "childcare": ("Childcare", "#E69F00", "square"),
    "school_bus_stop": ("School bus stop", "#F0E442", "triangle"),
    "medical": ("Medical", "#D55E00", "diamond"),
    "worship": ("Place of worship", "#CC79A7", "down"),
    "children_gather": ("Where children gather", "#56B4E9", "square"),
    "social_services": ("Social services", "#009E73", "circle"),
    "disaster_relief": ("Disaster relief", "#000000", "plus"),
    "ceremony": ("Ceremony", "#56B4E9", "triangle"),
    "demonstration": ("Demonstration", "#D55E00", "circle"),
    "community_center": ("Community centre", "#009E73", "diamond"),
    "courthouse": ("Courthouse", "#0072B2", "square"),
    "library": ("Library", "#E69F00", "down"),
    "labor_agency": ("Labour agency", "#CC79A7", "plus"),
}

REASON_TEXT = {
    "malformed_row": "wrong number of fields, bad quoting or undecodable bytes",
    "missing_position": "latitude or longitude empty",
    "bad_position": "latitude or longitude not a finite number",
    "position_out_of_range": "latitude beyond ±90 or longitude beyond ±180",
    "null_island": "exactly (0, 0): a GPS fix that never happened",
    "missing_timestamp": "the time cell is empty",
    "bad_timestamp": "a time that cannot be read, or a local time that never existed (DST gap)",
    "no_time_for_time_bound_fence": "near an event fence, but without a time to judge it",
}

_GRID_FIELDS = ("site_id", "distance_m", "timestamp", "agency", "camera_id")

_ISO_SECONDS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"


def build_html(
    report: str | os.PathLike,
    summary: str | os.PathLike | Mapping,
    *,
    out: str | os.PathLike,
    layers: Sequence[str | os.PathLike] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    context: str | os.PathLike | None = None,
    context_attribution: str | None = None,
    title: str | None = None,
    crs: str | None = None,
    limits: Mapping[str, int] | None = None,
) -> dict:
    """Write the offline HTML report of a scan.

    Parameters
    ----------
    report : path
        The report ``geofence scan --out`` wrote: GeoJSON, GeoJSON-seq or CSV (format
        detected from the content; ``.gz``/``.bz2`` decompressed). Read as a stream.
    summary : path or mapping
        The scan's summary JSON (``--summary``), or the summary document itself.
    out : path
        The HTML file to write (atomically), or ``"-"`` for standard output.
    layers : sequence of paths, optional
        The site layers the scan used (files or ``.toml`` definitions). Default: the files
        the summary names, looked up beside the summary. Each file's SHA-256 must equal the
        summary's.
    max_points : int
        Most flagged reads drawn one by one; above, a density grid and per-site totals.
    context : path, optional
        Street lines for orientation: an OSM extract (``.osm.pbf``, ``.osm``, ``.osm.bz2``)
        or a GeoJSON/GeoPackage of lines; clipped to the report's extent.
    context_attribution : str, optional
        Attribution of ``context`` (default: OpenStreetMap's for OSM extracts, else the
        file name).
    title : str, optional
        Page title (default from the read logs' names).
    crs, limits : optional
        As for :func:`geofence.layers.load_layers` (``max_vertices_per_site``,
        ``max_features``), for layers that need them.

    Returns
    -------
    dict
        ``mode`` (``"points"`` or ``"grid"``), ``reads``, ``sites_drawn``, ``bytes``,
        ``sha256`` of the page and ``path``.

    Raises
    ------
    ReportError
        If the report, summary and layers do not belong together (counts, site ids,
        SHA-256) or cannot be read.
    """
    if max_points < 0:
        raise ReportError(
            f"--max-points {max_points}: give a number of reads >= 0 (default {DEFAULT_MAX_POINTS:,})"
        )
    doc, summary_path, summary_sha = _load_summary(summary)
    policy_cats = doc["policy"]["categories"]
    cats = [c for c in CATEGORIES if c in policy_cats] + sorted(
        c for c in policy_cats if c not in CATEGORIES
    )
    sites = load_checked_sites(doc, find_layers(doc, summary_path, layers), crs=crs, limits=limits)
    fenced = fenced_sites(sites, policy_cats)
    if fenced is None:
        fenced = pd.DataFrame({"site_id": [], "name": [], "category": [], "geometry": []})
    all_ids = pa.array(fenced["site_id"].astype(str).tolist(), pa.string())
    site_cat = pd.Categorical(fenced["category"].astype(str), categories=cats).codes.astype(
        np.int64
    )
    tz = str(doc.get("parameters", {}).get("timezone") or "UTC")
    n_flagged = int(doc["reads_flagged"])
    points = n_flagged <= max_points

    acc = _Points() if points else Aggregator(len(cats), len(all_ids))
    used = np.zeros(len(all_ids), bool)
    cat_count = np.zeros(len(cats), np.int64)
    bbox = [np.inf, np.inf, -np.inf, -np.inf]
    seen = 0
    with ReportStream(report) as stream:
        # aggregated pages need five properties: the parsers skip the rest
        for b in stream.blocks(None if points else _GRID_FIELDS):
            seen += len(b)
            if seen > n_flagged:
                raise ReportError(
                    f"{stream.path.name} has more flagged reads than the summary's {n_flagged:,}; give the summary of the same scan"
                )
            if "site_id" not in b.props:
                raise ReportError(
                    f"{stream.path.name}: no site_id property; give a report `geofence scan` wrote"
                )
            site = _lookup(b.props["site_id"], all_ids, stream.path.name)
            msite = _lookup(b.match_site, all_ids, stream.path.name)
            used[site] = True
            used[msite] = True
            cat = site_cat[site]
            cat_count += np.bincount(cat, minlength=len(cats))
            t_utc, off = _times(b.props.get("timestamp"), len(b), tz)
            if len(b):
                bbox = [
                    min(bbox[0], b.lon.min()),
                    min(bbox[1], b.lat.min()),
                    max(bbox[2], b.lon.max()),
                    max(bbox[3], b.lat.max()),
                ]
            if points:
                acc.add(b, site, msite, t_utc, off)
            else:
                timed = ~np.isnan(t_utc)
                local = np.where(timed, t_utc + np.nan_to_num(off), 0).astype(np.int64)
                dist = b.props.get("distance_m")
                dist = (
                    pc.fill_null(dist.cast(pa.float64()), np.inf).to_numpy(zero_copy_only=False)
                    if dist is not None
                    else np.full(len(b), np.inf)
                )
                acc.add(
                    b.lon,
                    b.lat,
                    cat,
                    site,
                    dist,
                    (timed, local),
                    _or_nulls(b.props.get("agency"), len(b)),
                    _or_nulls(b.props.get("camera_id"), len(b)),
                )
        report_meta = {
            "file": stream.path.name,
            "format": stream.format,
            "sha256": stream.sha256,
            "bytes": stream._hash.size,
        }
    if seen != n_flagged:
        raise ReportError(
            f"{report_meta['file']} has {seen:,} flagged reads, the summary {n_flagged:,}; give the report and summary of the same scan"
        )
    by_cat = doc.get("flagged_by_category", {})
    for k, c in enumerate(cats):
        if int(cat_count[k]) != int(by_cat.get(c, 0)):
            raise ReportError(
                f"{report_meta['file']}: {int(cat_count[k]):,} {c} reads, the summary says {int(by_cat.get(c, 0)):,}; give the report, summary and layers of the same scan"
            )

    if seen == 0:
        bbox = (
            [float(v) for v in fenced.total_bounds]
            if len(fenced) and hasattr(fenced, "total_bounds")
            else None
        )
    else:
        bbox = [float(v) for v in bbox]
    keep, left_out = _sites_to_draw(fenced, used, bbox, policy_cats)
    remap = np.cumsum(keep) - 1
    sel = fenced[keep].reset_index(drop=True) if len(fenced) else fenced
    counts = min_d = None
    if not points:
        counts, min_d = acc.site_count[keep], acc.site_min_m[keep]
    site_pack = pack_sites(sel, cats, policy_cats, counts, min_d)

    levels = None if points else acc.grid_levels()
    data: dict = {
        "v": 1,
        "mode": "points" if points else "grid",
        "title": title or _default_title(doc),
        "meta": _meta(
            doc, report_meta, summary_path, summary_sha, tz, max_points, left_out, bbox, levels
        ),
        "cats": [_cat_entry(c, policy_cats[c]) for c in cats],
        "sites": site_pack,
        "reads": acc.encode(remap, int(keep.sum()), tz, site_pack["name"]) if points else None,
        "agg": None if points else {"levels": levels, "charts": acc.charts()},
        "context": None,
        "notices": notices(),
        "bbox": bbox,
    }
    if context is not None and bbox is not None:
        from geofence.atomic import sha256_file
        from geofence.html._context import load_context

        pad = 0.01  # degrees (~1 km) around the reads, so streets reach the map's edges
        data["context"] = load_context(
            context,
            (bbox[0] - pad, bbox[1] - pad, bbox[2] + pad, bbox[3] + pad),
            context_attribution,
        )
        data["context"]["sha256"] = sha256_file(context)
    page = render(data, data["title"], f"geofence {__version__}")
    with atomic_output(out) as fh:
        fh.write(page)
        sha = fh.sha256
    return {
        "mode": data["mode"],
        "reads": seen,
        "sites_drawn": int(keep.sum()),
        "bytes": len(page),
        "sha256": sha,
        "path": str(out),
    }


# ------------------------------------------------------------------------------- helpers


def _load_summary(summary) -> tuple[dict, Path | None, str]:
    import hashlib

    if isinstance(summary, Mapping):
        doc = dict(summary)
        text = json.dumps(doc, sort_keys=True, default=str).encode()
        path, sha = None, hashlib.sha256(text).hexdigest()
    else:
        path = Path(summary)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ReportError(
                f"--summary {path}: cannot read it ({exc.strerror}); give the file `geofence scan --summary` wrote"
            ) from None
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise ReportError(
                f"--summary {path}: not JSON ({exc}); give the file `geofence scan --summary` wrote"
            ) from None
        sha = hashlib.sha256(raw).hexdigest()
    missing = [k for k in (*COUNT_KEYS, "policy") if k not in doc]
    if missing or not isinstance(doc.get("policy"), Mapping) or "categories" not in doc["policy"]:
        where = path or "the summary"
        raise ReportError(
            f"{where}: not a geofence scan summary (no {(missing or ['policy.categories'])[0]}); give the file `geofence scan --summary` wrote"
        )
    return doc, path, sha


def _lookup(values, all_ids: pa.Array, name: str) -> np.ndarray:
    """Positions of site ids in the fenced sites, or a one-line error naming the first unknown."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    values = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
    idx = pc.index_in(values, value_set=all_ids)
    if idx.null_count:
        bad = values.filter(pc.is_null(idx)).to_pylist()[0]
        raise ReportError(
            f"{name}: site {bad!r} is not a fenced site of the layers; give the layers (and summary) of the scan that wrote the report"
        )
    return idx.to_numpy(zero_copy_only=False).astype(np.int64)


def _or_nulls(arr, n: int) -> pa.Array:
    return arr if arr is not None else pa.nulls(n, pa.string())


def _times(ts, n: int, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """UTC epoch seconds (float64, NaN where none) and the offset of local time in seconds."""
    nan = np.full(n, np.nan)
    if ts is None or n == 0 or pa.types.is_null(ts.type):
        return nan, np.zeros(n)
    if pa.types.is_timestamp(ts.type):
        utc = (
            ts.cast(pa.timestamp("us", "UTC"))
            if ts.type.tz
            else pc.assume_timezone(ts.cast(pa.timestamp("us")), "UTC")
        )
    else:
        try:
            utc = pc.cast(ts.cast(pa.string()), pa.timestamp("us", "UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return nan, np.zeros(n)  # not ISO 8601: the page shows the text, charts leave them out
    us = pc.cast(utc, pa.int64())
    try:
        local = pc.local_timestamp(utc.cast(pa.timestamp("us", tz)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ReportError(
            f"the summary's time zone {tz!r} is not known to this system; install tzdata"
        ) from None
    lus = pc.cast(local, pa.int64())
    null = us.is_null().to_numpy(zero_copy_only=False)
    sec = np.floor_divide(pc.fill_null(us, 0).to_numpy(zero_copy_only=False), 1_000_000).astype(
        np.float64
    )
    off = np.floor_divide(
        pc.fill_null(pc.subtract(lus, us), 0).to_numpy(zero_copy_only=False), 1_000_000
    ).astype(np.float64)
    sec[null] = np.nan
    return sec, off


def _sites_to_draw(fenced, used: np.ndarray, bbox, policy_cats) -> tuple[np.ndarray, int]:
    """Sites near the reads (all fenced sites whose fence reaches the reads' box) and those matched."""
    n = len(fenced)
    if n == 0 or bbox is None:
        return np.zeros(n, bool), 0
    reach_m = (
        max(float(c["buffer_m"]) + float(c["footprint_m"]) for c in policy_cats.values()) + 50.0
    )
    lat_max = min(89.0, max(abs(bbox[1]), abs(bbox[3])))
    dlat = reach_m / 110_574.0  # metres per degree of latitude at least (geodesy.py)
    dlon = reach_m / (111_319.0 * np.cos(np.radians(lat_max)))
    box = shapely.box(bbox[0] - dlon, bbox[1] - dlat, bbox[2] + dlon, bbox[3] + dlat)
    near = shapely.intersects(np.asarray(fenced.geometry.values, dtype=object), box)
    keep = near | used
    if keep.sum() > MAX_SITES_DRAWN:
        return used.copy(), int((near & ~used).sum())
    return keep, 0


def _default_title(doc: Mapping) -> str:
    files = [str(i.get("file")) for i in doc.get("inputs", []) if i.get("file")]
    return "Geofence audit: " + (
        ", ".join(files[:3]) + (" …" if len(files) > 3 else "") if files else "flagged reads"
    )


def _cat_entry(cat: str, rule: Mapping) -> dict:
    label, colour, shape = CATEGORY_STYLE.get(
        cat, (cat.replace("_", " ").capitalize(), "#8c8c8c", "circle")
    )
    return {
        "id": cat,
        "label": label,
        "colour": colour,
        "shape": shape,
        "buffer_m": float(rule["buffer_m"]),
        "footprint_m": float(rule.get("footprint_m", 0.0)),
        "temporal": rule.get("temporal", "permanent"),
    }


def _meta(
    doc, report_meta, summary_path, summary_sha, tz, max_points, left_out, bbox, levels
) -> dict:
    params = doc.get("parameters", {}) or {}
    lat = 0.0 if bbox is None else (bbox[1] + bbox[3]) / 2
    return {
        "tool": doc.get("tool", {"name": "geofence", "version": "?"}),
        "generated_at": str(doc.get("generated_at", "")),
        "counts": {k: int(doc[k]) for k in COUNT_KEYS},
        "rejected_by_reason": dict(doc.get("rejected_by_reason", {})),
        "reason_text": {
            k: REASON_TEXT[k] for k in doc.get("rejected_by_reason", {}) if k in REASON_TEXT
        },
        "flagged_by_category": dict(doc.get("flagged_by_category", {})),
        "inputs": list(doc.get("inputs", [])),
        "layers": list(doc.get("layers", [])),
        "policy": doc["policy"],
        "parameters": params,
        "sites_fenced": int(doc.get("sites_fenced", 0) or 0),
        "report": report_meta,
        "summary": {
            "file": summary_path.name if summary_path else "(given in memory)",
            "sha256": summary_sha,
        },
        "timezone": tz,
        "max_points": int(max_points),
        "plates_pseudonymised": bool(params.get("pseudonymized_plates")),
        "sites_left_out": int(left_out),
        "page_tool": f"geofence {__version__}",
        # the finest embedded cell's width at the map's mid-latitude (Web Mercator)
        "grid_cell_m": None
        if not levels
        else round(float(40_075_016.686 * np.cos(np.radians(lat))) / 2 ** levels[-1]["g"]),
    }


class _Points:
    """Every flagged read, kept as Arrow/numpy chunks (at most ``max_points`` reads)."""

    def __init__(self) -> None:
        self.lon: list = []
        self.lat: list = []
        self.site: list = []
        self.t: list = []
        self.off: list = []
        self.props: dict[str, list] = {}
        self.n = 0
        self.mcount: list = []
        self.msite: list = []
        self.mdist: list = []

    def add(self, b, site, msite, t_utc, off) -> None:
        for name in b.props:
            self.props.setdefault(name, [pa.nulls(self.n)] if self.n else [])
        for name, chunks in self.props.items():
            chunks.append(b.props.get(name, pa.nulls(len(b))))
        self.lon.append(b.lon)
        self.lat.append(b.lat)
        self.site.append(site)
        self.t.append(t_utc)
        self.off.append(off)
        self.mcount.append(np.diff(b.match_ptr))
        self.msite.append(msite)
        self.mdist.append(b.match_distance_m)
        self.n += len(b)

    def encode(self, remap: np.ndarray, n_sites: int, tz: str, site_names: list) -> dict:
        """The ``reads`` part of the page data."""
        cat = np.concatenate
        n = self.n
        site = remap[cat(self.site)] if n else np.zeros(0, np.int64)
        t = cat(self.t) if n else np.zeros(0)
        off = cat(self.off) if n else np.zeros(0)
        tnull = np.isnan(t)
        offsets, off_code = np.unique(np.where(tnull, 0, off).astype(np.int64), return_inverse=True)
        out: dict = {
            "n": n,
            "lon": floats(cat(self.lon) if n else np.zeros(0)),
            "lat": floats(cat(self.lat) if n else np.zeros(0)),
            "site": uints(site),
            "t": ints(np.where(tnull, 0, t).astype(np.int64), tnull if tnull.any() else None)
            if n
            else {"k": "null"},
            "offsets": [int(v) for v in offsets],
        }
        if len(offsets) > 1:  # local time's offset from UTC changes (DST): one code per read
            out["toff"] = uints(off_code)
        key_codes = {"site_id": (site, n_sites)}
        cols = []
        props = {name: _unify(chunks) for name, chunks in self.props.items()}
        for name, arr in props.items():
            if name == "site_id":
                enc = {"k": "site"}
            elif name == "site_name" and _equals_site_names(arr, site, site_names):
                enc = {"k": "sitename"}  # the layers' name of the read's site: stored once per site
            elif name == "timestamp" and _iso_seconds(arr, tnull):
                enc = {"k": "ts"}
            else:
                enc = column(arr, key_codes)
            cols.append({"name": name, "enc": enc})
            if name == "timestamp":
                cols.append(
                    {"name": "local_time", "label": f"local time ({tz})", "enc": {"k": "local"}}
                )
            if name == "camera_id" and enc.get("k") == "dict" and "codes" in enc:
                _, codes, n_values = dictionary(arr)
                key_codes["camera_id"] = (codes, n_values)
        if "site_name" not in props:
            # CSV reports leave site_name out; the layers have it (same value by construction)
            cols.append(
                {
                    "name": "site_name",
                    "label": "site_name (from the layers)",
                    "enc": {"k": "sitename"},
                }
            )
        cols.append({"name": "lon", "enc": {"k": "lon"}})
        cols.append({"name": "lat", "enc": {"k": "lat"}})
        dist_enc = next((c["enc"] for c in cols if c["name"] == "distance_m"), None)
        cols.append(
            {
                "name": "matches",
                "enc": self._matches(site, remap, dist_enc, props.get("distance_m")),
            }
        )
        out["cols"] = cols
        return out

    def _matches(self, site: np.ndarray, remap: np.ndarray, dist_enc, dist) -> dict:
        cat = np.concatenate
        counts = cat(self.mcount).astype(np.int64) if self.n else np.zeros(0, np.int64)
        msite = remap[cat(self.msite)] if len(counts) and counts.sum() else np.zeros(0, np.int64)
        mdist = cat(self.mdist) if len(counts) and counts.sum() else np.zeros(0)
        start = (
            np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            if len(counts)
            else np.zeros(0, np.int64)
        )
        first = (
            bool(len(counts))
            and bool(np.all(counts >= 1))
            and dist_enc is not None
            and dist_enc.get("k") in ("fix", "f64", "int")
        )
        if first:
            d = pc.fill_null(dist.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
            first = bool(np.array_equal(msite[start], site)) and bool(
                np.array_equal(mdist[start], d)
            )
        keep = np.ones(len(msite), bool)
        if first:
            keep[start] = False  # the nearest match is the read's own site_id and distance_m
        shown = counts - (1 if first else 0)
        rows = np.flatnonzero(shown > 0)
        return {
            "k": "matches",
            "first": first,
            "rows": ints(rows),
            "cnt": uints(shown[rows]),
            "site": uints(msite[keep]),
            "d": floats(mdist[keep]),
        }


def _unify(chunks: list) -> pa.Array:
    """One array from a property's chunks, reconciling types (null, int/float, else text)."""
    types = {c.type for c in chunks if not pa.types.is_null(c.type)}
    if not types:
        return pa.nulls(sum(len(c) for c in chunks))
    if len(types) == 1:
        t = types.pop()
    elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        t = pa.float64()
    else:
        t = pa.string()
    out = []
    for c in chunks:
        if pa.types.is_null(c.type):
            out.append(pa.nulls(len(c), t))
        elif c.type != t:
            out.append(
                c.cast(t)
                if t != pa.string() or not (pa.types.is_list(c.type))
                else pc.binary_join(c.cast(pa.list_(pa.string())), "; ")
            )
        else:
            out.append(c)
    return pa.concat_arrays(out) if out else pa.nulls(0)


def _equals_site_names(arr: pa.Array, site: np.ndarray, names: list) -> bool:
    """Whether a site_name column holds exactly the layers' name of each read's site."""
    if len(arr) == 0:
        return True
    expected = pa.array(names, pa.string()).take(pa.array(site))
    same = pc.equal(arr.cast(pa.string()), expected)
    both_null = pc.and_(arr.is_null(), expected.is_null())
    return bool(pc.all(pc.or_(pc.fill_null(same, False), both_null)).as_py())


def _iso_seconds(arr: pa.Array, tnull: np.ndarray) -> bool:
    """Whether every timestamp is ``YYYY-MM-DDTHH:MM:SSZ`` (so the page can rebuild it from seconds)."""
    if not pa.types.is_string(arr.type):
        return False
    ok = pc.match_substring_regex(arr, _ISO_SECONDS)
    null = arr.is_null().to_numpy(zero_copy_only=False)
    if not np.array_equal(null, tnull):
        return False
    return bool(pc.all(pc.fill_null(ok, True)).as_py())
