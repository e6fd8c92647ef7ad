"""Street lines for the map's background, from a local file (``--context``, issue #9).

The page has no tile basemap (it must open with no network), so orientation comes from
street lines embedded in it: highways of an OpenStreetMap extract (``.osm``, ``.osm.pbf``,
``.osm.bz2``, ``.osm.gz``, read with GDAL's OSM driver) or the lines of any vector file
GDAL reads (GeoJSON, GeoPackage, …), clipped to the report's extent and simplified to about
a metre. The attribution goes on the map and in the page footer.
"""

from __future__ import annotations

import bz2
import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import shapely

from geofence.html._encode import uints
from geofence.html._report import ReportError
from geofence.html._sites import COORD_SCALE, signed

OSM_ATTRIBUTION = "Streets © OpenStreetMap contributors, ODbL 1.0"

MAX_CONTEXT_VERTICES = 400_000
"""Vertices of street lines embedded at most (about 2 MB); beyond, lines are simplified more."""

_SIMPLIFY_DEG = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)  # about 1 m, 3 m, 10 m, 30 m, 100 m


def _is_osm(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".osm", ".osm.pbf", ".pbf", ".osm.bz2", ".osm.gz"))


def load_context(
    path: str | os.PathLike, bbox: tuple[float, float, float, float], attribution: str | None = None
) -> dict:
    """Street lines of ``path`` within ``bbox`` (min lon, min lat, max lon, max lat), packed.

    Returns
    -------
    dict
        ``{"attribution", "file", "n", "lc": vertices per line, "xy": int deltas}``.
    """
    import pyogrio

    path = Path(path)
    if not path.exists():
        raise ReportError(
            f"--context {path}: no such file; give a local OSM extract (.osm.pbf) or a GeoJSON of streets"
        )
    osm = _is_osm(path)
    with tempfile.TemporaryDirectory() as tmp:
        src = path
        name = path.name.lower()
        if osm and name.endswith((".bz2", ".gz")):
            # GDAL's OSM driver reads plain .osm/.pbf only: decompress to a temporary file
            src = Path(tmp) / "context.osm"
            opener = bz2.open if name.endswith(".bz2") else gzip.open
            with opener(path, "rb") as fin, open(src, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        try:
            if osm:
                frame = pyogrio.read_dataframe(
                    src, layer="lines", columns=["highway"], where="highway IS NOT NULL", bbox=bbox
                )
            else:
                frame = pyogrio.read_dataframe(src, bbox=bbox, columns=[])
        except Exception as exc:  # pyogrio raises several types for unreadable files
            raise ReportError(
                f"--context {path}: cannot read street lines ({exc}); give an OSM extract or a GeoJSON of lines"
            ) from None
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs("EPSG:4326")
    geoms = np.asarray(frame.geometry.values, dtype=object)
    geoms = geoms[~shapely.is_missing(geoms)]
    geoms = (
        shapely.boundary(geoms[shapely.get_dimensions(geoms) == 2]).tolist()
        + geoms[shapely.get_dimensions(geoms) == 1].tolist()
    )
    lines = (
        shapely.clip_by_rect(np.array(geoms, dtype=object), *bbox)
        if geoms
        else np.array([], object)
    )
    lines = (
        shapely.get_parts(shapely.line_merge(lines[~shapely.is_empty(lines)]))
        if len(lines)
        else lines
    )
    lines = lines[shapely.get_type_id(lines) == 1] if len(lines) else lines
    for tol in _SIMPLIFY_DEG:
        simple = shapely.simplify(lines, tol)
        if shapely.get_num_coordinates(simple).sum() <= MAX_CONTEXT_VERTICES:
            break
    coords, owner = (
        shapely.get_coordinates(simple, return_index=True)
        if len(simple)
        else (np.zeros((0, 2)), np.zeros(0, np.int64))
    )
    q = np.round(coords * COORD_SCALE).astype(np.int64)
    start = q[0] if len(q) else np.zeros(2, np.int64)
    # each vertex as the step from the one before (streets are dense: steps fit 16 bits)
    deltas = np.diff(q, axis=0, prepend=start[None, :]).reshape(-1)
    return {
        "file": path.name,
        "x0": int(start[0]),
        "y0": int(start[1]),
        "attribution": attribution or (OSM_ATTRIBUTION if osm else f"Streets: {path.name}"),
        "n": len(simple),
        "lc": uints(
            np.bincount(owner, minlength=len(simple)) if len(simple) else np.zeros(0, np.int64)
        ),
        "xy": signed(deltas),
    }
