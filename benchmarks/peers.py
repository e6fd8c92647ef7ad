"""The peers of the geofence benchmark, each run in a fresh process by ``benchmarks/run.py``.

Usage (one peer per process, so the runner can measure its peak memory)::

    python benchmarks/peers.py PEER --reads READS.csv --sites SITES.parquet --out OUT.csv \\
        [--distance 150] [--threads 2]

Peers
-----
pyarrow-csv
    The floor: parse the whole CSV with ``pyarrow.csv.read_csv`` (all cores), timestamps typed.
pyarrow-stream
    The floor with bounded memory: ``pyarrow.csv.open_csv``, batch by batch.
duckdb-pairs
    DuckDB spatial, bare: count the (read, site) pairs with ``ST_DWithin`` in UTM zone 10N.
duckdb-report
    DuckDB spatial doing the report's work: for every read within the distance of a site, the
    nearest site and its distance, written to CSV with one ``COPY``.
geopandas
    GeoPandas ``sjoin(predicate="dwithin")`` in UTM zone 10N, then the nearest site per read
    and its distance, written to CSV.

The UTM peers are planar: their distances are off the ellipsoidal geodesic by up to ~0.04 %
(about 6 cm at 150 m), so they flag some reads that are slightly too far. Point sites are grown
by their category's footprint radius, exactly (a read is in the fence when its distance to the
point is at most footprint + distance), as in geofence's policy; the reported distance is to the
grown disc, ``max(0, d - footprint)``, and to the polygon (0 inside) for polygon sites.

Each peer prints one JSON object on stdout: ``seconds`` (its own work, after imports) and
counts (``flagged``, ``pairs``, ``rows``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

UTM = "EPSG:32610"  # UTM zone 10N covers the whole Bay Area (126 W to 120 W)

# The federal packs' footprint radii (m) for point sites, used when geofence.policy cannot say.
FALLBACK_FOOTPRINTS = {
    "school": 100.0,
    "medical": 100.0,
    "worship": 30.0,
    "childcare": 30.0,
    "social_services": 30.0,
    "children_gather": 20.0,
    "community_center": 30.0,
}


def footprints() -> tuple[dict[str, float], str]:
    """Footprint radius per category and where it came from.

    Reads ``geofence.policy.load_policy().categories[cat].footprint_m`` when that module exists,
    so the peers grow point sites exactly as geofence does; falls back to the pack's numbers.

    Returns
    -------
    dict
        Category -> footprint radius in metres.
    str
        ``"geofence.policy"`` or ``"fallback"``.
    """
    try:
        from geofence.policy import load_policy

        cats = load_policy().categories
        out = {name: float(cats[name].footprint_m) for name in FALLBACK_FOOTPRINTS if name in cats}
        if out:
            return {**FALLBACK_FOOTPRINTS, **out}, "geofence.policy"
    except Exception:  # the policy module is being written in parallel; any failure -> fallback
        pass
    return dict(FALLBACK_FOOTPRINTS), "fallback"


# --------------------------------------------------------------------------------------------
# The floor
# --------------------------------------------------------------------------------------------


def _csv_convert_options():
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Typing the timestamp makes the floor parse it, as any scan must.
    return pacsv.ConvertOptions(column_types={"timestamp": pa.timestamp("s", tz="UTC")})


def peer_pyarrow_csv(args) -> dict:
    """Parse the whole read log into memory with pyarrow's multi-threaded reader."""
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(args.reads, convert_options=_csv_convert_options())
    return {"rows": table.num_rows}


def peer_pyarrow_stream(args) -> dict:
    """Parse the read log batch by batch (constant memory), counting rows."""
    import pyarrow.csv as pacsv

    rows = 0
    with pacsv.open_csv(
        args.reads,
        read_options=pacsv.ReadOptions(block_size=16 << 20),
        convert_options=_csv_convert_options(),
    ) as reader:
        for batch in reader:
            rows += batch.num_rows
    return {"rows": rows}


# --------------------------------------------------------------------------------------------
# DuckDB spatial
# --------------------------------------------------------------------------------------------


def duckdb_connect(threads: int | None):
    """A DuckDB connection with the spatial extension from the ``duckdb-extension-spatial`` wheel.

    The wheel ships the extension binary for its DuckDB version; loading it by path needs no
    network (``INSTALL spatial`` would download it).
    """
    import duckdb
    import duckdb_extension_spatial

    ext = (
        Path(duckdb_extension_spatial.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "spatial.duckdb_extension"
    )
    con = duckdb.connect()
    con.execute(f"LOAD '{ext.as_posix()}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _sql_str(path: str | Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def duckdb_prepare(con, args) -> float:
    """Create the ``polys`` and ``pts`` site tables and the ``reads`` view, all in UTM.

    DuckDB's ``ST_Transform`` takes EPSG:4326 in its authority axis order (latitude first) unless
    told ``always_xy := true``; without it every lon/lat point lands at infinity.

    Returns
    -------
    float
        The search distance for point sites: the fence distance plus the largest footprint.
    """
    fps, _ = footprints()
    values = ", ".join(f"({_sql_str(k)}, {v!r})" for k, v in fps.items())
    con.execute(
        f"""
        CREATE TEMP TABLE sites AS
        SELECT site_id, coalesce(fp.footprint_m, 0.0) AS fp,
               ST_Transform(geometry, 'EPSG:4326', '{UTM}', always_xy := true) AS geom
        FROM read_parquet({_sql_str(args.sites)})
        LEFT JOIN (VALUES {values}) AS fp(category, footprint_m) USING (category)
        """
    )
    con.execute(
        "CREATE TEMP TABLE polys AS SELECT site_id, geom FROM sites WHERE ST_GeometryType(geom) <> 'POINT'"
    )
    con.execute(
        "CREATE TEMP TABLE pts AS SELECT site_id, fp, geom FROM sites WHERE ST_GeometryType(geom) = 'POINT'"
    )
    # The generator writes read_id = 1-based row; DuckDB's CSV reader has no row-number column
    # (and row_number() OVER () promises no order), so the row comes from read_id. A view, not
    # a table: DuckDB streams the CSV into the joins (materialising it measured 1.5-2x slower).
    con.execute(
        f"""
        CREATE TEMP VIEW reads AS
        SELECT *, read_id AS "row",
               ST_Transform(ST_Point(lon, lat), 'EPSG:4326', '{UTM}', always_xy := true) AS geom
        FROM read_csv({_sql_str(args.reads)})
        """
    )
    (max_fp,) = con.execute("SELECT coalesce(max(fp), 0.0) FROM pts").fetchone()
    return args.distance + float(max_fp)


def _duckdb_pairs_sql(select_cols: str, distance: float, point_reach: float) -> str:
    """Pairs (read, site) within the fences: polygons at ``distance`` from their edge, points at
    ``distance + footprint`` from the point, measured as the distance to the grown disc.

    DuckDB's spatial join only indexes a constant distance (a per-site one falls back to a
    nested-loop join), so points are searched at the largest reach and filtered exactly; growing
    them into buffer polygons instead measured 2.7x slower at 100k sites and is not exact.
    """
    return f"""
        SELECT {select_cols}, s.site_id, ST_Distance(r.geom, s.geom) AS d
        FROM reads r JOIN polys s ON ST_DWithin(r.geom, s.geom, {distance!r})
        UNION ALL
        SELECT {select_cols}, s.site_id, greatest(ST_Distance(r.geom, s.geom) - s.fp, 0.0) AS d
        FROM reads r JOIN pts s ON ST_DWithin(r.geom, s.geom, {point_reach!r})
        WHERE ST_Distance(r.geom, s.geom) - s.fp <= {distance!r}
    """


def check_duckdb_axis_order(con) -> None:
    """Fail loudly if DuckDB puts a known point at the wrong UTM easting (axis-order mix-up)."""
    x, y = con.execute(
        f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_Point(-122.27, 37.80), "
        f"'EPSG:4326', '{UTM}', always_xy := true) AS p)"
    ).fetchone()
    # pyproj: (-122.27, 37.80) -> (564266.16, 4183875.92) in EPSG:32610.
    if abs(x - 564266.16) > 0.01 or abs(y - 4183875.92) > 0.01:
        raise RuntimeError(f"DuckDB ST_Transform axis order: got ({x}, {y})")


def peer_duckdb_pairs(args) -> dict:
    """Count (read, site) pairs within the fences: DuckDB's spatial join, nothing else."""
    con = duckdb_connect(args.threads)
    check_duckdb_axis_order(con)
    reach = duckdb_prepare(con, args)
    sql = _duckdb_pairs_sql('r."row"', args.distance, reach)
    (pairs,) = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    return {"pairs": int(pairs)}


def peer_duckdb_report(args) -> dict:
    """Nearest site and its distance for every flagged read, written to CSV by DuckDB.

    One ``COPY``: the pairs carry the read's columns and ``GROUP BY ALL`` keeps one row per
    read (grouping by row and joining the columns back measured slower).
    """
    con = duckdb_connect(args.threads)
    check_duckdb_axis_order(con)
    reach = duckdb_prepare(con, args)
    cols = 'r."row", r.read_id, r.plate, r."timestamp", r.lat, r.lon, r.camera_id, r.agency'
    pairs = _duckdb_pairs_sql(cols, args.distance, reach)
    con.execute(
        f"""
        COPY (
            SELECT * EXCLUDE (site_id, d), arg_min(site_id, d) AS site_id, min(d) AS distance_m
            FROM ({pairs}) GROUP BY ALL
        ) TO {_sql_str(args.out)} (HEADER, DELIMITER ',')
        """
    )
    (flagged,) = con.execute(f"SELECT count(*) FROM read_csv({_sql_str(args.out)})").fetchone()
    return {"flagged": int(flagged)}


# --------------------------------------------------------------------------------------------
# GeoPandas
# --------------------------------------------------------------------------------------------


def peer_geopandas(args) -> dict:
    """GeoPandas: project to UTM, ``sjoin(predicate="dwithin")``, nearest site per read, CSV.

    The join carries only the geometry (index = row) and the read columns are attached to the
    flagged reads afterwards: the idiomatic way to keep the join small, which is the peer's
    fair setting.
    """
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import shapely

    fps, _ = footprints()
    sites = gpd.read_parquet(args.sites, columns=["site_id", "category", "geometry"]).to_crs(UTM)
    is_point = (sites.geom_type == "Point").to_numpy()
    radius = np.where(is_point, sites["category"].map(fps).fillna(0.0).to_numpy(), 0.0)
    site_ids = sites["site_id"].to_numpy()
    site_geoms = sites.geometry.array

    df = pd.read_csv(args.reads, engine="pyarrow")
    reads = gpd.GeoDataFrame(
        geometry=gpd.points_from_xy(df["lon"], df["lat"], crs="EPSG:4326"), index=df.index
    ).to_crs(UTM)
    # Two joins, as for DuckDB: polygons at the distance, points at the distance plus the largest
    # footprint, then filtered to their own footprint (sjoin takes one distance per left row).
    lefts, rights = [], []
    for mask, reach in (
        (~is_point, args.distance),
        (is_point, args.distance + (radius[is_point].max() if is_point.any() else 0.0)),
    ):
        if not mask.any():
            continue
        sub = sites.iloc[np.flatnonzero(mask)][["geometry"]].reset_index(drop=True)
        joined = reads.sjoin(sub, predicate="dwithin", distance=reach)
        lefts.append(joined.index.to_numpy())
        rights.append(np.flatnonzero(mask)[joined["index_right"].to_numpy()])
        del joined
    left = np.concatenate(lefts)
    right = np.concatenate(rights)
    dist = shapely.distance(reads.geometry.array[left], site_geoms[right]) - radius[right]
    keep = dist <= args.distance
    left, right, dist = left[keep], right[keep], np.maximum(dist[keep], 0.0)
    order = np.lexsort((dist, left))
    first = np.unique(left[order], return_index=True)[1]
    pick = order[first]
    rows = left[pick]
    out = df.iloc[rows].copy()
    out.insert(0, "row", rows + 1)
    out["site_id"] = site_ids[right[pick]]
    out["distance_m"] = dist[pick]
    pacsv.write_csv(pa.Table.from_pandas(out, preserve_index=False), args.out)
    return {"flagged": len(out), "pairs": len(left)}


PEERS = {
    "pyarrow-csv": peer_pyarrow_csv,
    "pyarrow-stream": peer_pyarrow_stream,
    "duckdb-pairs": peer_duckdb_pairs,
    "duckdb-report": peer_duckdb_report,
    "geopandas": peer_geopandas,
}


def main(argv: list[str] | None = None) -> int:
    """Run one peer and print its JSON result on stdout."""
    ap = argparse.ArgumentParser(description="Run one benchmark peer (see the module docstring).")
    ap.add_argument("peer", choices=sorted(PEERS))
    ap.add_argument("--reads", required=True)
    ap.add_argument("--sites", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--distance", type=float, default=150.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = PEERS[args.peer](args)
    result["seconds"] = time.perf_counter() - t0
    result["footprints_from"] = footprints()[1]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
