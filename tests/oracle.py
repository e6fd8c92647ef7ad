"""An independent geodesic oracle: distance from a point to a polygon on WGS84.

Every polygon edge is taken as a geodesic and the nearest point on it is found by a
golden-section search along it with ``pyproj.Geod`` (GeographicLib), as in
``../shared/reference/exact-distance.md``. Slow and simple on purpose: it shares no
code with geofence.
"""

from __future__ import annotations

import numpy as np
import shapely
from pyproj import Geod

GEOD = Geod(ellps="WGS84")
_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def _rings(geom):
    for poly in getattr(geom, "geoms", [geom]):
        if poly.geom_type == "Polygon":
            yield np.asarray(poly.exterior.coords)
            for r in poly.interiors:
                yield np.asarray(r.coords)
        elif poly.geom_type == "LineString":
            yield np.asarray(poly.coords)


def distance_to_boundary(lon: np.ndarray, lat: np.ndarray, geom) -> np.ndarray:
    """Geodesic distance (m) from each point to the nearest geodesic edge of ``geom``."""
    lon = np.asarray(lon, float)
    lat = np.asarray(lat, float)
    best = np.full(len(lon), np.inf)
    for ring in _rings(geom):
        for (x0, y0), (x1, y1) in zip(ring[:-1, :2], ring[1:, :2], strict=True):
            az, _, length = GEOD.inv(x0, y0, x1, y1)
            if length == 0:
                continue
            lo = np.zeros(len(lon))
            hi = np.full(len(lon), length)

            def f(s, x0=x0, y0=y0, az=az):
                ex, ey, _ = GEOD.fwd(
                    np.full(len(lon), x0), np.full(len(lon), y0), np.full(len(lon), az), s
                )
                return GEOD.inv(lon, lat, ex, ey)[2]

            for _ in range(80):
                a = hi - _PHI * (hi - lo)
                b = lo + _PHI * (hi - lo)
                fa, fb = f(a), f(b)
                left = fa < fb
                hi = np.where(left, b, hi)
                lo = np.where(left, lo, a)
            d = np.minimum.reduce(
                [f(lo), f(hi), f(np.zeros(len(lon))), f(np.full(len(lon), length))]
            )
            best = np.minimum(best, d)
    return best


def distance(lon, lat, geom) -> np.ndarray:
    """Geodesic distance (m) from points to an area (0 inside) or a line."""
    d = distance_to_boundary(lon, lat, geom)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        inside = shapely.contains_xy(geom, lon, lat)
        d = np.where(inside, 0.0, d)
    return d


def point_distance(lon, lat, lon0, lat0) -> np.ndarray:
    """Geodesic distance (m) between points."""
    lon = np.asarray(lon, float)
    return GEOD.inv(lon, np.asarray(lat, float), np.full(len(lon), lon0), np.full(len(lon), lat0))[
        2
    ]
