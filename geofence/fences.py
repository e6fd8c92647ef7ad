"""Compile sites and a policy into fences: per-piece tangent planes, limits and boxes.

A *fence* is one piece of one site together with the distance that applies to it.
Small sites are one piece; multi-part sites give a piece per part; parts larger than
:data:`geofence.geodesy.MAX_PIECE_RADIUS_M` are densified along their geodesic edges and
cut into pieces so that every read that can match lies within ~2 km of the origin of the
plane it is measured in. The distance from a read to a site is the minimum over the
site's pieces, which is exact because the pieces' union is the site.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from pyproj import Geod

from geofence._arrays import full_object
from geofence._kernels import edge_distances
from geofence.errors import LayerError
from geofence.geodesy import (
    M_PER_DEG_LAT_MIN,
    M_PER_DEG_LON_EQ_MIN,
    MAX_PIECE_RADIUS_M,
    Frames,
)
from geofence.model import Policy

_GEOD = Geod(ellps="WGS84")
_DENSIFY_M = 50.0  # geodesic densification step before cutting a large site (sagitta < 0.1 mm)
_CUT_DEG = 0.018  # ~2 km cut cells in latitude for large sites


@dataclass
class Fences:
    """Fences as parallel arrays (one entry per piece), plus the per-site table.

    Attributes
    ----------
    site : numpy.ndarray
        int64 index into the per-site arrays (``site_id`` ...) of each piece.
    frames : Frames
        The tangent plane of each piece.
    parts : numpy.ndarray or None
        Piece geometry in lon/lat, kept only when asked for (``keep_geometry``): the
        scan needs the edges alone, and 100k sites' geometries are ~50 MB (issue #5).
    is_point : numpy.ndarray
        bool; point pieces are measured by their distance to the plane origin, without edges.
    footprint_m : numpy.ndarray
        Distance the piece is grown by before the fence applies: the category footprint
        of a point site, or the site's own ``buffer_m`` (an event's extent); else 0.
    limit_m : numpy.ndarray
        Fence distance from the (grown) site edge: a read matches when its distance
        is at most this.
    radius_m : numpy.ndarray
        Largest distance from the plane origin to the piece (for a cheap reject).
    bounds : numpy.ndarray
        (n, 4) lon/lat box of everything within ``limit_m`` (+ footprint) of the piece,
        grown conservatively; ``minlon > maxlon`` never happens: boxes that cross the
        antimeridian are stored twice (see :attr:`box_piece`).
    box_piece : numpy.ndarray
        Piece index of each row of ``bounds``.
    """

    site: np.ndarray
    frames: Frames
    parts: np.ndarray | None
    is_point: np.ndarray
    footprint_m: np.ndarray
    limit_m: np.ndarray
    radius_m: np.ndarray
    bounds: np.ndarray
    box_piece: np.ndarray
    # per-site table
    site_id: np.ndarray
    site_name: np.ndarray
    site_category: np.ndarray
    site_source: np.ndarray
    categories: tuple[str, ...]
    site_cat_code: np.ndarray  # int index into ``categories``
    segments: Segments  # planar edges of area and line pieces

    multi_piece: bool = False  # some site has several pieces

    def __post_init__(self) -> None:
        self.multi_piece = bool(len(self.site) and len(np.unique(self.site)) < len(self.site))

    def __len__(self) -> int:
        return len(self.site)

    @property
    def n_sites(self) -> int:
        """Number of fenced sites."""
        return len(self.site_id)

    def planar(self, pieces: np.ndarray) -> np.ndarray:
        """Geometries of ``pieces`` in their planes (metres); needs ``keep_geometry``."""
        if self.parts is None:
            raise ValueError("fences compiled without keep_geometry=True")
        parts = self.parts[pieces]
        coords, idx = shapely.get_coordinates(parts, return_index=True)
        east, north = self.frames.enu_lonlat(pieces[idx], coords[:, 0], coords[:, 1])
        return shapely.set_coordinates(
            np.array(parts, dtype=object, copy=True), np.column_stack([east, north])
        )


@dataclass
class Segments:
    """Planar edges of every area or line piece, grouped by piece (compressed rows).

    Piece ``j`` owns edges ``ptr[j]:ptr[j+1]`` (points own none); polygons have a
    planar ``box`` (even-odd crossing test for insideness within it; rings of holes are
    edges too), lines a NaN one.
    """

    ptr: np.ndarray
    edge: np.ndarray  # (m, 4) start east, start north, delta east, delta north
    box: np.ndarray  # (n, 4) east/north bounds of each area piece, NaN for the rest

    @classmethod
    def from_parts(
        cls, parts: np.ndarray, frames: Frames, is_point: np.ndarray, chunk: int = 16_384
    ) -> tuple[Segments, np.ndarray]:
        """The planar edges of every ring or line of each lon/lat piece, and each piece's
        radius (farthest vertex from its plane origin; 0 for points).

        Straight from coordinates: no planar or boundary geometry is built, which held
        ~250 MB at once for 100k sites (issue #5). Pieces are taken ``chunk`` at a time:
        the coordinate temporaries of all 100k sites at once raised the peak by 100 MB.
        """
        n = len(parts)
        ptr = np.zeros(n + 1, np.int64)
        radius = np.zeros(n)
        box = np.full((n, 4), np.nan)
        edges = [np.empty((0, 4))]
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            edge, ptr[lo + 1 : hi + 1], radius[lo:hi], box[lo:hi] = _edges(parts[lo:hi], lo, frames)
            edges.append(edge)
        np.cumsum(ptr, out=ptr)
        return cls(ptr, np.concatenate(edges), box), radius

    def distance(self, piece: np.ndarray, east: np.ndarray, north: np.ndarray) -> np.ndarray:
        """Planar distance from points to their pieces (0 inside areas).

        Same arithmetic as GEOS (projection onto each edge, clamped), one compiled pass
        without a shapely Point per pair (:func:`geofence._kernels.edge_distances`).
        """
        return edge_distances(
            np.asarray(piece, np.int64),
            np.asarray(east, np.float64),
            np.asarray(north, np.float64),
            self.ptr,
            self.edge,
            self.box,
        )


def _edges(parts: np.ndarray, first: int, frames: Frames):
    """Edges, edge counts, radii and planar boxes of pieces ``first, first + 1, ...``."""
    n = len(parts)
    dims = shapely.get_dimensions(parts) if n else np.empty(0, int)
    area = dims == 2
    line = np.flatnonzero(dims == 1)
    rings, ring_piece = shapely.get_rings(np.where(area, parts, None), return_index=True)
    c_ring, r_idx = shapely.get_coordinates(rings, return_index=True)
    del rings
    c_line, l_idx = shapely.get_coordinates(parts[line], return_index=True)
    # vertices in piece order; a piece is an area or a line, so the stable sort keeps
    # each ring's or line's vertices together and in order
    vertex_piece = np.concatenate([ring_piece.astype(np.int64)[r_idx], line[l_idx]])
    o = np.argsort(vertex_piece, kind="stable")
    vertex_piece = vertex_piece[o]
    ring = np.concatenate([r_idx, l_idx + len(ring_piece)])[o]
    lonlat = np.concatenate([c_ring, c_line])[o]
    del c_ring, c_line, o
    east, north = frames.enu_lonlat(vertex_piece + first, lonlat[:, 0], lonlat[:, 1])
    del lonlat
    radius = np.zeros(n)
    np.maximum.at(radius, vertex_piece, np.hypot(east, north))
    same = ring[1:] == ring[:-1]
    seg_piece = vertex_piece[:-1][same]
    edge = np.empty((len(seg_piece), 4))
    edge[:, 0] = east[:-1][same]
    edge[:, 1] = north[:-1][same]
    edge[:, 2] = east[1:][same] - edge[:, 0]
    edge[:, 3] = north[1:][same] - edge[:, 1]
    # planar bounds of each piece: a read outside them is outside the area, and the
    # crossing test (half of the work) is skipped for it (issue #5)
    box = np.full((n, 4), np.nan)
    if len(seg_piece):
        for col, fn, v in (
            (0, np.fmin, edge[:, 0]),
            (1, np.fmin, edge[:, 1]),
            (2, np.fmax, edge[:, 0]),
            (3, np.fmax, edge[:, 1]),
        ):
            fn.at(box[:, col], seg_piece, v)
    box[~area] = np.nan  # lines have no inside
    return edge, np.bincount(seg_piece, minlength=n), radius, box


def _parts(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The single parts of ``geoms`` in order, and the index of the geometry of each.

    Single-part geometries are passed on as they are: :func:`shapely.get_parts` clones
    every geometry, 40 MB more at 100k sites (issue #5).
    """
    multi = np.flatnonzero(shapely.get_type_id(geoms) >= 4)
    if len(multi) == 0:
        return geoms, np.arange(len(geoms), dtype=np.int64)
    counts = np.ones(len(geoms), np.int64)
    counts[multi] = shapely.get_num_geometries(geoms[multi])
    site = np.repeat(np.arange(len(geoms), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    parts = np.empty(len(site), dtype=object)
    single = np.ones(len(geoms), dtype=bool)
    single[multi] = False
    parts[first[single]] = geoms[single]
    sub, idx = shapely.get_parts(geoms[multi], return_index=True)
    c = counts[multi]
    rank = np.arange(len(sub)) - np.repeat(np.cumsum(c) - c, c)
    parts[first[multi][idx] + rank] = sub
    return parts, site


def compile_fences(
    sites, policy: Policy, *, keep_geometry: bool = False
) -> tuple[Fences, dict[str, int]]:
    """Build the fences of every site whose category the policy covers.

    Parameters
    ----------
    sites : geopandas.GeoDataFrame
        Sites in EPSG:4326 with ``site_id``, ``name``, ``category``, ``source`` columns,
        as :func:`geofence.layers.load_layers` returns them.
    policy : Policy
        The rules; sites of categories it does not cover are left out and counted.
    keep_geometry : bool
        Keep the pieces' geometry for :meth:`Fences.planar` (the camera audit's view).

    Returns
    -------
    fences : Fences
    skipped : dict
        Number of sites left out, by category, because no chosen pack covers it.
    """
    cats = sites["category"].astype(str).to_numpy()
    covered = np.isin(cats, list(policy.categories))
    skipped: dict[str, int] = {}
    if not covered.all():
        u, c = np.unique(cats[~covered], return_counts=True)
        skipped = {str(k): int(v) for k, v in zip(u, c, strict=True)}
    sel = sites[covered]
    categories = tuple(sorted(policy.categories))
    cat_code = np.searchsorted(categories, sel["category"].astype(str).to_numpy())
    buffer_by_code = np.array([policy.categories[c].buffer_m for c in categories], dtype=np.float64)
    foot_by_code = np.array(
        [policy.categories[c].footprint_m for c in categories], dtype=np.float64
    )

    parts, part_site = _parts(np.asarray(sel.geometry.values, dtype=object))
    is_point = shapely.get_type_id(parts) == 0
    # Areas and lines are fenced from their edge; points are first grown by the footprint.
    footprint = np.where(is_point, foot_by_code[cat_code[part_site]], 0.0)
    # A site's own extent (an event's buffer_m: the march route and the street either side,
    # issue #7) replaces the footprint. Distance to the grown set is max(d - extent, 0),
    # exact on the ellipsoid as on any length space; the category distance applies beyond.
    extent = _site_extent_m(sel)
    if extent is not None:
        own = extent[part_site]
        footprint = np.where(np.isnan(own), footprint, own)
    limit = buffer_by_code[cat_code[part_site]]

    parts, part_site, is_point, footprint, limit = _cut_large(
        parts, part_site, is_point, footprint, limit
    )

    frames = Frames(*_origins(parts, is_point))
    segments, radius = Segments.from_parts(parts, frames, is_point)
    bounds, box_piece = _bounds(parts, limit + footprint)

    fences = Fences(
        site=part_site,
        frames=frames,
        parts=parts if keep_geometry else None,
        is_point=is_point,
        footprint_m=footprint,
        limit_m=limit,
        radius_m=radius,
        bounds=bounds,
        box_piece=box_piece,
        site_id=sel["site_id"].astype(str).to_numpy(dtype=object),
        site_name=sel["name"].astype(str).to_numpy(dtype=object)
        if "name" in sel
        else full_object(len(sel), ""),
        site_category=sel["category"].astype(str).to_numpy(dtype=object),
        site_source=sel["source"].astype(str).to_numpy(dtype=object)
        if "source" in sel
        else full_object(len(sel), ""),
        categories=categories,
        site_cat_code=cat_code.astype(np.int64),
        segments=segments,
    )
    return fences, skipped


def _origins(parts: np.ndarray, is_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of each piece's plane origin: a point on its surface (a point is its own)."""
    x, y = shapely.get_x(parts), shapely.get_y(parts)  # NaN for other types
    other = np.flatnonzero(~is_point)
    if len(other):  # GEOS builds a new point for each, even for points (3 ms per 13k)
        origin = shapely.point_on_surface(parts[other])
        x[other], y[other] = shapely.get_x(origin), shapely.get_y(origin)
    return x, y


def _radius_m(parts: np.ndarray, frames: Frames, is_point: np.ndarray) -> np.ndarray:
    """Farthest vertex of each piece from its plane origin (0 for points)."""
    coords, idx = shapely.get_coordinates(parts, return_index=True)
    east, north = frames.enu_lonlat(idx, coords[:, 0], coords[:, 1])
    radius = np.zeros(len(parts))
    np.maximum.at(radius, idx, np.hypot(east, north))
    radius[is_point] = 0.0
    return radius


def _bounds(parts: np.ndarray, reach_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat boxes holding everything within ``reach_m`` of each piece, conservatively."""
    b = shapely.bounds(parts)
    dlat = reach_m / M_PER_DEG_LAT_MIN
    miny = np.maximum(b[:, 1] - dlat, -90.0)
    maxy = np.minimum(b[:, 3] + dlat, 90.0)
    coslat = np.cos(np.radians(np.maximum(np.abs(miny), np.abs(maxy))))
    with np.errstate(divide="ignore"):
        dlon = np.where(
            coslat > 1e-3, reach_m / (M_PER_DEG_LON_EQ_MIN * np.maximum(coslat, 1e-3)), 360.0
        )
    minx = b[:, 0] - dlon
    maxx = b[:, 2] + dlon
    polar = (maxy >= 89.0) | (miny <= -89.0) | (dlon >= 180.0)
    minx = np.where(polar, -180.0, minx)
    maxx = np.where(polar, 180.0, maxx)
    piece = np.arange(len(parts))
    boxes = [np.column_stack([np.maximum(minx, -180.0), miny, np.minimum(maxx, 180.0), maxy])]
    pieces = [piece]
    # Boxes crossing the antimeridian get a second box on the other side.
    west = minx < -180.0
    if west.any():
        boxes.append(
            np.column_stack(
                [minx[west] + 360.0, miny[west], np.full(west.sum(), 180.0), maxy[west]]
            )
        )
        pieces.append(piece[west])
    east = maxx > 180.0
    if east.any():
        boxes.append(
            np.column_stack(
                [np.full(east.sum(), -180.0), miny[east], maxx[east] - 360.0, maxy[east]]
            )
        )
        pieces.append(piece[east])
    return np.concatenate(boxes), np.concatenate(pieces)


def _site_extent_m(sites) -> np.ndarray | None:
    """Per-site ``buffer_m`` in metres (NaN where not given), or None without the column."""
    if "buffer_m" not in sites.columns:
        return None
    text = sites["buffer_m"].to_numpy(object)
    out = np.full(len(text), np.nan)
    given = np.flatnonzero(pd.notna(text))
    vals = pd.to_numeric(pd.Series(text[given], dtype=object), errors="coerce").to_numpy(np.float64)
    bad = ~(np.isfinite(vals) & (vals >= 0))
    if bad.any():
        i = given[np.flatnonzero(bad)[0]]
        raise LayerError(
            f"site {sites['site_id'].iloc[i]!s}: buffer_m {text[i]!r} is not a distance >= 0 "
            "in metres; fix the value or remove it to use the category's distance"
        )
    out[given] = vals
    return out


def _cut_large(parts, part_site, is_point, footprint, limit):
    """Densify and cut pieces whose extent would strain a single tangent plane."""
    if len(parts) == 0:
        return parts, part_site, is_point, footprint, limit
    # Only pieces whose lon/lat box could be wider than the limit need their radius
    # measured: the box's half-perimeter (at 111.7 km per degree, more than any degree
    # of latitude or of longitude is, times the widest parallel's cosine), with 1 % to
    # spare for the tangent plane, bounds the distance between any two of its points.
    # This cheap test replaced a tangent-plane conversion of every piece (1.6 s at
    # 100k sites; issue #5).
    b = shapely.bounds(parts)
    coslat = np.cos(np.radians(np.clip(np.minimum(np.abs(b[:, 1]), np.abs(b[:, 3])), 0.0, 90.0)))
    straddle = (b[:, 1] < 0) & (b[:, 3] > 0)
    coslat = np.where(straddle, 1.0, coslat)
    span_m = 1.01 * 111_700.0 * ((b[:, 3] - b[:, 1]) + (b[:, 2] - b[:, 0]) * coslat)
    maybe = np.flatnonzero(~is_point & ~(span_m <= MAX_PIECE_RADIUS_M))
    if len(maybe) == 0:
        return parts, part_site, is_point, footprint, limit
    frames = Frames(*_origins(parts[maybe], is_point[maybe]))
    radius = _radius_m(parts[maybe], frames, is_point[maybe])
    big = maybe[radius > MAX_PIECE_RADIUS_M]
    if len(big) == 0:
        return parts, part_site, is_point, footprint, limit
    new_parts, new_src = [], []
    for i in big:  # few sites are this large; a loop over them is cheap
        geom = _densify_geodesic(parts[i])
        minx, miny, maxx, maxy = geom.bounds
        lat_mid = 0.5 * (miny + maxy)
        dlon = _CUT_DEG / max(np.cos(np.radians(lat_mid)), 0.05)
        xs = np.arange(minx, maxx + dlon, dlon)
        ys = np.arange(miny, maxy + _CUT_DEG, _CUT_DEG)
        gx, gy = np.meshgrid(xs[:-1] if len(xs) > 1 else xs, ys[:-1] if len(ys) > 1 else ys)
        cells = shapely.box(gx.ravel(), gy.ravel(), gx.ravel() + dlon, gy.ravel() + _CUT_DEG)
        pieces = shapely.intersection(geom, cells)
        pieces = shapely.get_parts(pieces[~shapely.is_empty(pieces)])
        # keep only pieces of the same dimension as the site (cuts can leave slivers
        # of lower dimension along shared edges; they add nothing to the distance)
        pieces = pieces[shapely.get_dimensions(pieces) == shapely.get_dimensions(geom)]
        new_parts.append(pieces)
        new_src.append(np.full(len(pieces), i))
    keep = np.ones(len(parts), dtype=bool)
    keep[big] = False
    src = np.concatenate([np.flatnonzero(keep), *new_src])
    out = np.concatenate([parts[keep], *new_parts])
    return out, part_site[src], is_point[src], footprint[src], limit[src]


def _densify_geodesic(geom):
    """Insert points along every edge longer than ``_DENSIFY_M`` on its geodesic."""

    def densify_ring(coords: np.ndarray) -> np.ndarray:
        out = [coords[:1]]
        for (x0, y0), (x1, y1) in itertools.pairwise(coords):
            _, _, dist = _GEOD.inv(x0, y0, x1, y1)
            n = int(dist // _DENSIFY_M)
            if n > 0:
                mid = np.asarray(_GEOD.npts(x0, y0, x1, y1, n), dtype=np.float64).reshape(-1, 2)
                out.append(mid)
            out.append(np.array([[x1, y1]]))
        return np.concatenate(out)

    if geom.geom_type == "Polygon":
        shell = densify_ring(np.asarray(geom.exterior.coords)[:, :2])
        holes = [densify_ring(np.asarray(r.coords)[:, :2]) for r in geom.interiors]
        return shapely.Polygon(shell, holes)
    if geom.geom_type == "LineString":
        return shapely.LineString(densify_ring(np.asarray(geom.coords)[:, :2]))
    return geom
