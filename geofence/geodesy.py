"""Exact distances on the WGS84 ellipsoid through local tangent planes.

Why a tangent plane: for everything within a few kilometres of an origin, planar
distances in the east/north plane at that origin equal geodesic distances on the
ellipsoid to micrometres (``../shared/reference/exact-distance.md``: 0.0045 mm worst
case on 7,098 read/site pairs; a point at geodesic distance rho lands at
rho - rho**3 / (6 R**2) from the origin: 4 um at 1 km, 0.5 mm at 5 km). Geodesic polygon
edges are straight lines in that plane to far below a millimetre, so a site's edges
are geodesics as in PostGIS ``geography``. Every site gets its own plane, and sites
larger than :data:`MAX_PIECE_RADIUS_M` are cut into pieces with a plane each.

All functions take and return numpy arrays; none loops over points in Python.
"""

from __future__ import annotations

import numpy as np

# WGS84 (EPSG:4326 / EPSG:7030).
WGS84_A_M = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)

# Lower bounds of metres per degree, used only to grow bounding boxes conservatively.
# The meridian arc per degree is 110,574 m at the equator and grows poleward; a parallel
# degree is 111,320 * cos(lat) at most... so margins in degrees from these bounds are never
# too small. We shave a further 0.5 % for safety: the index is a pre-filter only.
M_PER_DEG_LAT_MIN = 110_574.0 * 0.995
M_PER_DEG_LON_EQ_MIN = 111_319.0 * 0.995

MAX_PIECE_RADIUS_M = 1_500.0
"""Largest distance from a plane's origin to its piece of site (see module docstring):
with the largest tier (400 m) a read is at most ~1.9 km from the origin, where the
plane's distance error is below 0.04 mm."""


def ecef(lon_deg: np.ndarray, lat_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earth-centred, Earth-fixed coordinates (metres) of points on the ellipsoid (h = 0).

    Parameters
    ----------
    lon_deg, lat_deg : array_like
        Longitude and latitude in degrees (WGS84).

    Returns
    -------
    x, y, z : numpy.ndarray
    """
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    slat = np.sin(lat)
    clat = np.cos(lat)
    n = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * slat * slat)
    return n * clat * np.cos(lon), n * clat * np.sin(lon), n * (1.0 - WGS84_E2) * slat


class Frames:
    """A set of local east/north planes, one per origin.

    Parameters
    ----------
    lon0_deg, lat0_deg : array_like
        Origins of the planes, in degrees.
    """

    __slots__ = ("clat", "clon", "lat0_deg", "lon0_deg", "slat", "slon", "x0", "y0", "z0")

    def __init__(self, lon0_deg: np.ndarray, lat0_deg: np.ndarray) -> None:
        self.lon0_deg = np.asarray(lon0_deg, dtype=np.float64)
        self.lat0_deg = np.asarray(lat0_deg, dtype=np.float64)
        self.x0, self.y0, self.z0 = ecef(self.lon0_deg, self.lat0_deg)
        lat = np.radians(self.lat0_deg)
        lon = np.radians(self.lon0_deg)
        self.slat, self.clat = np.sin(lat), np.cos(lat)
        self.slon, self.clon = np.sin(lon), np.cos(lon)

    def __len__(self) -> int:
        return len(self.x0)

    def enu(
        self, frame: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """East and north (metres) of ECEF points, each in the plane ``frame[i]``.

        The up component is dropped: for a read 150 m away it is ~1.8 mm and shortens
        the distance by up**2 / (2 d), tens of nanometres (exact-distance.md).
        """
        dx = x - self.x0[frame]
        dy = y - self.y0[frame]
        dz = z - self.z0[frame]
        slon = self.slon[frame]
        clon = self.clon[frame]
        east = clon * dy - slon * dx
        north = self.clat[frame] * dz - self.slat[frame] * (clon * dx + slon * dy)
        return east, north

    def enu_lonlat(
        self, frame: np.ndarray, lon_deg: np.ndarray, lat_deg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """East and north (metres) of lon/lat points, each in the plane ``frame[i]``."""
        return self.enu(frame, *ecef(lon_deg, lat_deg))
