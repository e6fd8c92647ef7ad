"""Sites and fences for the page: the summary's layers, checked, and packed for drawing.

The sites are loaded with :func:`geofence.layers.load_layers` from the files the scan used,
and each file's SHA-256 must equal the one in the summary, so the map cannot show other
sites than the ones the reads were checked against (issue #9).

Fences are drawn, not decided, and the page draws them itself from the site geometry:
each site's shape is filled and stroked ``buffer_m`` (in pixels at the site's latitude)
wide with round joins, which paints the site grown by its distance, and the outline of
the union is traced. No fence geometry is embedded. The page says that drawn fences are
approximate and that the table's distances, from the engine, are exact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from geofence.errors import LayerError
from geofence.html._encode import ints, uints
from geofence.html._report import ReportError

KIND_POINT, KIND_AREA, KIND_LINE = 0, 1, 2

# Coordinates on the page are integers of 1e-6 degree (0.11 m at most): finer than a pixel
# at any zoom Leaflet offers, and small enough that offsets within a site fit 16 bits.
COORD_SCALE = 1_000_000


def find_layers(
    summary: Mapping, summary_path: Path | None, layers: Sequence[str | os.PathLike] | None
) -> list[Path]:
    """The layer files to load: those given, else the summary's files beside the summary."""
    if layers:
        return [Path(p) for p in layers]
    named = [entry["file"] for entry in summary.get("layers", [])]
    if not named:
        return []
    base = summary_path.parent if summary_path is not None else Path.cwd()
    found = [base / name for name in named]
    missing = [p.name for p in found if not p.exists()]
    if missing:
        raise ReportError(
            f"the summary's layer {missing[0]} is not beside the summary; pass the layers the scan used with --layers PATH (e.g. --layers sample_data/seattle/schools.toml)"
        )
    return found


def load_checked_sites(
    summary: Mapping,
    paths: Sequence[Path],
    *,
    crs: str | None = None,
    limits: Mapping[str, int] | None = None,
):
    """Load the layers and check their SHA-256 against the summary.

    Returns
    -------
    sites : geopandas.GeoDataFrame
        As :func:`geofence.layers.load_layers` returns them.
    """
    from geofence.layers import load_layers

    expected = sorted((entry["file"], entry["sha256"]) for entry in summary.get("layers", []))
    if not paths:
        if expected:
            raise ReportError("no layers given; pass the layers the scan used with --layers PATH")
        return None
    lim = {
        k: v
        for k, v in (limits or {}).items()
        if k in ("max_vertices_per_site", "max_features") and v
    }
    try:
        layer = load_layers(list(paths), crs=crs, **lim)
    except LayerError as exc:
        raise LayerError(f"{exc} (loading the layers named by the summary)") from None
    got = sorted((Path(s.path).name, s.sha256) for s in layer.sources)
    if got != expected:
        exp = dict(expected)
        for name, sha in got:
            if name not in exp:
                raise ReportError(
                    f"layer {name} is not one the summary names ({', '.join(exp) or 'none'}); pass the layers the scan used"
                )
            if exp[name] != sha:
                raise ReportError(
                    f"layer {name}: SHA-256 {sha[:12]}… differs from the summary's {exp[name][:12]}…; the file changed since the scan, so the map would not show the sites the reads were checked against"
                )
        missing = sorted(set(exp) - {n for n, _ in got})
        raise ReportError(
            f"the summary's layer {missing[0]} was not given; pass every layer the scan used with --layers"
        )
    return layer.sites


def fenced_sites(sites, categories: Mapping[str, Mapping]) -> pd.DataFrame | None:
    """The sites whose category the summary's policy fences, in layer order."""
    if sites is None or len(sites) == 0:
        return None
    keep = sites["category"].astype(str).isin(list(categories)).to_numpy()
    return sites[keep].reset_index(drop=True)


def _own_extent_m(sites) -> np.ndarray:
    """A site's own ``buffer_m`` (event routes, issue #7), 0 where not given."""
    if "buffer_m" not in sites.columns:
        return np.zeros(len(sites))
    v = pd.to_numeric(sites["buffer_m"], errors="coerce").to_numpy(np.float64)
    return np.where(np.isfinite(v) & (v >= 0), v, 0.0)


def _rings(geoms: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rings (areas: exterior and holes; lines: the lines) with their site, and their coordinates.

    Returns ring owner (site index per ring), coordinates (n, 2) and coordinate owner (ring
    per coordinate), all in site order. The closing vertex of area rings is dropped.
    """
    parts, part_site = shapely.get_parts(geoms, return_index=True)
    ptype = shapely.get_type_id(parts)
    area = ptype == 3
    ring_geoms = []
    ring_site = []
    # areas: every ring of every polygon part; lines: the line itself
    rings, ring_part = shapely.get_rings(parts[area], return_index=True)
    area_idx = np.flatnonzero(area)
    ring_geoms.append(rings)
    ring_site.append(part_site[area_idx[ring_part]])
    line = ptype == 1
    ring_geoms.append(parts[line])
    ring_site.append(part_site[line])
    rg = np.concatenate(ring_geoms) if ring_geoms else np.array([], object)
    rs = np.concatenate(ring_site).astype(np.int64) if ring_site else np.array([], np.int64)
    is_area_ring = np.concatenate([np.ones(len(rings), bool), np.zeros(int(line.sum()), bool)])
    order = np.argsort(rs, kind="stable")
    rg, rs, is_area_ring = rg[order], rs[order], is_area_ring[order]
    coords, owner = shapely.get_coordinates(rg, return_index=True)
    if len(coords):
        counts = np.bincount(owner, minlength=len(rg))
        last = np.cumsum(counts) - 1
        drop = np.zeros(len(coords), bool)
        drop[last[is_area_ring & (counts > 0)]] = True
        coords, owner = coords[~drop], owner[~drop]
    return rs, coords, owner


def _pack_rings(
    n_sites: int,
    ax: np.ndarray,
    ay: np.ndarray,
    ring_site: np.ndarray,
    coords: np.ndarray,
    owner: np.ndarray,
) -> dict:
    """Rings as counts per site, counts per ring and offsets from the site's anchor."""
    rings_per_site = np.bincount(ring_site, minlength=n_sites)
    coords_per_ring = np.bincount(owner, minlength=len(ring_site))
    q = np.round(coords * COORD_SCALE).astype(np.int64)
    site_of_coord = ring_site[owner] if len(owner) else np.zeros(0, np.int64)
    dx = q[:, 0] - ax[site_of_coord] if len(q) else np.zeros(0, np.int64)
    dy = q[:, 1] - ay[site_of_coord] if len(q) else np.zeros(0, np.int64)
    xy = np.empty(2 * len(dx), np.int64)
    xy[0::2] = dx
    xy[1::2] = dy
    return {"rs": uints(rings_per_site), "rc": uints(coords_per_ring), "xy": signed(xy)}


def signed(values: np.ndarray) -> dict:
    """Signed integers as Int16 when they fit, else Int32 (``{"w": 2|4, "b": ...}``)."""
    from geofence.html._encode import b64

    v = np.asarray(values, np.int64)
    if len(v) == 0 or (v.min() >= -32768 and v.max() <= 32767):
        return {"w": 2, "b": b64(v.astype("<i2"))}
    if v.min() < -(2**31) or v.max() >= 2**31:  # pragma: no cover - a site larger than 214 degrees
        raise ReportError("a site is too large to draw (more than 200 degrees across)")
    return {"w": 4, "b": b64(v.astype("<i4"))}


def pack_sites(
    sel: pd.DataFrame,
    categories: Sequence[str],
    policy_cats: Mapping[str, Mapping],
    counts: np.ndarray | None = None,
    min_dist: np.ndarray | None = None,
) -> dict:
    """The page's site table: ids, names, categories, anchors, geometry rings and fence rings.

    Parameters
    ----------
    sel : DataFrame
        Sites to draw (``site_id``, ``name``, ``category``, ``geometry``).
    categories : sequence of str
        Category ids in the page's order (codes are positions in it).
    policy_cats : mapping
        The summary's ``policy.categories`` (``buffer_m``, ``footprint_m``).
    counts, min_dist : numpy.ndarray, optional
        Flagged reads per site and the nearest distance (aggregated pages).
    """
    n = len(sel)
    geoms = np.asarray(sel.geometry.values, dtype=object)
    tid = shapely.get_type_id(geoms)
    kind = np.where(
        tid == 0, KIND_POINT, np.where(np.isin(tid, (1, 5)), KIND_LINE, KIND_AREA)
    ).astype(np.int64)
    if n and np.isin(tid, (4, 7)).any():  # MultiPoint, GeometryCollection: not loaded by layers
        raise ReportError(
            "a site has a MultiPoint or GeometryCollection geometry the page cannot draw"
        )
    anchor = shapely.point_on_surface(geoms) if n else np.array([], object)
    alon = shapely.get_x(anchor) if n else np.zeros(0)
    alat = shapely.get_y(anchor) if n else np.zeros(0)
    ax = np.round(alon * COORD_SCALE).astype(np.int64)
    ay = np.round(alat * COORD_SCALE).astype(np.int64)
    cat_code = (
        pd.Categorical(sel["category"].astype(str), categories=list(categories)).codes.astype(
            np.int64
        )
        if n
        else np.zeros(0, np.int64)
    )
    footprint_m = np.array([float(policy_cats[c]["footprint_m"]) for c in categories])
    extent = _own_extent_m(sel) if n else np.zeros(0)
    # points: the site is a disc of footprint_m (or its own extent), the fence that plus buffer_m
    site_r = np.where(
        kind == KIND_POINT, np.where(extent > 0, extent, footprint_m[cat_code] if n else 0), extent
    )

    shaped = np.flatnonzero(kind != KIND_POINT)
    ring_site, coords, owner = (
        _rings(geoms[shaped], kind[shaped])
        if len(shaped)
        else (np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64))
    )
    ring_site = shaped[ring_site] if len(ring_site) else ring_site
    rings = _pack_rings(n, ax, ay, ring_site, coords, owner)

    names = sel["name"].to_numpy(object) if n else np.zeros(0, object)
    out = {
        "n": n,
        "id": [str(v) for v in sel["site_id"].to_numpy(object)],
        "name": [
            None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in names
        ],
        "cat": uints(cat_code),
        "kind": uints(kind),
        "ax": ints(ax),
        "ay": ints(ay),
        "r_m": _metres(site_r),
        "rings": rings,
    }
    if counts is not None:
        out["flagged"] = ints(counts)
        out["min_d"] = _metres(np.where(np.isfinite(min_dist), min_dist, 0.0))
    return out


def _metres(v: np.ndarray) -> dict:
    """Non-negative metres to the millimetre."""
    from geofence.html._encode import floats

    return floats(np.round(np.asarray(v, np.float64), 3))
