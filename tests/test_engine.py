"""The engine's distances against an independent geodesic oracle (issue #3)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import oracle
import pandas as pd
import pytest
import shapely
from conftest import make_policy

from geofence.engine import Engine

D = 150.0


def _sites(geoms, cats=None):
    n = len(geoms)
    cats = cats or ["school"] * n
    return gpd.GeoDataFrame(
        {
            "site_id": [f"s{i}" for i in range(n)],
            "name": [f"S{i}" for i in range(n)],
            "category": cats,
            "source": ["t"] * n,
        },
        geometry=list(geoms),
        crs="EPSG:4326",
    )


def _dense(m, n_reads, n_sites):
    """Matches as a dense (reads x sites) distance matrix, inf where no match."""
    out = np.full((n_reads, n_sites), np.inf)
    for i in range(n_reads):
        out[i, m.site[m.ptr[i] : m.ptr[i + 1]]] = m.distance_m[m.ptr[i] : m.ptr[i + 1]]
    return out


def _polygon(lon0, lat0, size_m=100.0, hole=True):
    dlat = size_m / 111_000
    dlon = dlat / np.cos(np.radians(lat0))
    outer = [
        (lon0 - dlon, lat0 - dlat),
        (lon0 + dlon, lat0 - 0.5 * dlat),
        (lon0 + 0.8 * dlon, lat0 + dlat),
        (lon0 - 0.7 * dlon, lat0 + 0.9 * dlat),
    ]
    holes = (
        [
            [
                (lon0 - 0.3 * dlon, lat0 - 0.3 * dlat),
                (lon0 + 0.3 * dlon, lat0 - 0.3 * dlat),
                (lon0, lat0 + 0.3 * dlat),
            ]
        ]
        if hole
        else []
    )
    return shapely.Polygon(outer, holes)


@pytest.mark.parametrize("lat0", [0.0, 37.0, 47.0, 61.0, 71.0, -53.0])
def test_distances_match_geodesic_oracle(lat0):
    rng = np.random.default_rng(int(abs(lat0)) + 7)
    lon0 = -122.0 if lat0 > 0 else 20.0
    poly = _polygon(lon0, lat0)
    pt = shapely.Point(lon0 + 6 * 100 / 111_000 / np.cos(np.radians(lat0)), lat0)
    multi = shapely.MultiPolygon(
        [
            _polygon(lon0, lat0 - 0.004, 40, hole=False),
            _polygon(lon0 + 0.002, lat0 - 0.004, 30, hole=False),
        ]
    )
    sites = _sites([poly, pt, multi], ["school", "worship", "medical"])
    eng = Engine(sites, make_policy(D))
    n = 1500
    dlat = 100 / 111_000
    dlon = dlat / np.cos(np.radians(lat0))
    lon = lon0 + rng.uniform(-6, 10, n) * dlon
    lat = lat0 + rng.uniform(-8, 5, n) * dlat
    got = _dense(eng.match(lon, lat), n, 3)
    want = np.column_stack(
        [
            oracle.distance(lon, lat, poly),
            np.maximum(
                oracle.point_distance(lon, lat, pt.x, pt.y) - 30.0, 0.0
            ),  # worship footprint 30 m
            oracle.distance(lon, lat, multi),
        ]
    )
    # Decisions agree wherever the oracle is more than 1 cm from the fence edge (issue #3) ...
    clear = np.abs(want - D) > 0.01
    assert np.array_equal(np.isfinite(got)[clear], (want <= D)[clear])
    # ... and the distances agree far below a millimetre.
    both = np.isfinite(got)
    assert both.sum() > 100
    assert np.abs(got[both] - want[both]).max() < 1e-4


def test_hole_is_outside_and_inside_is_zero():
    poly = _polygon(
        -122.27, 37.8, size_m=400
    )  # hole ~ 120 m across: its middle is > 0 m from the site
    eng = Engine(_sites([poly]), make_policy(D))
    c = shapely.centroid(poly.interiors[0])
    inside = shapely.Point(-122.27 - 0.0025, 37.8 - 0.0005)
    assert poly.contains(inside)
    m = eng.match(np.array([c.x, inside.x]), np.array([c.y, inside.y]))
    d = _dense(m, 2, 1)
    assert d[1, 0] == 0.0
    want_hole = oracle.distance_to_boundary(np.array([c.x]), np.array([c.y]), poly)[0]
    assert want_hole > 1.0
    assert abs(d[0, 0] - want_hole) < 1e-4


@pytest.mark.parametrize("lat0", [0.0, 47.0, 71.0])
def test_five_millimetres_either_side_of_the_fence(lat0):
    """Reads 5 mm inside and outside the 150 m line off each edge's midpoint."""
    lon0 = 10.0
    dlat = 80 / 111_000
    dlon = dlat / np.cos(np.radians(lat0))
    # a convex polygon (counter-clockwise): the outward normal of an edge is az + 90 (interior on the left)
    ring = [
        (lon0 - dlon, lat0 - dlat),
        (lon0 + dlon, lat0 - dlat),
        (lon0 + dlon, lat0 + dlat),
        (lon0 - dlon, lat0 + dlat),
    ]
    poly = shapely.Polygon(ring)
    eng = Engine(_sites([poly]), make_policy(D))
    lons, lats, expect = [], [], []
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True):
        az, _, length = oracle.GEOD.inv(x0, y0, x1, y1)
        mx, my, back = oracle.GEOD.fwd(x0, y0, az, length / 2)
        az_mid = back + 180.0  # forward azimuth of the edge at its midpoint
        for delta, flagged in ((-0.005, True), (0.005, False)):
            px, py, _ = oracle.GEOD.fwd(mx, my, az_mid + 90.0, D + delta)
            lons.append(px)
            lats.append(py)
            expect.append(flagged)
    m = eng.match(np.array(lons), np.array(lats))
    assert m.flagged.tolist() == expect
    # the distance of the inside reads is 150 m - 5 mm to well under a millimetre
    assert np.allclose(m.distance_m, D - 0.005, atol=1e-4)


def test_antimeridian_multipolygon():
    """A site on both sides of 180 degrees (the Aleutians), split as RFC 7946 asks."""
    lat0 = 51.8
    dlat = 60 / 111_000
    west = shapely.box(179.999, lat0 - dlat, 180.0, lat0 + dlat)
    east = shapely.box(-180.0, lat0 - dlat, -179.999, lat0 + dlat)
    site = shapely.MultiPolygon([west, east])
    eng = Engine(_sites([site]), make_policy(D))
    lon = np.array([179.997, -179.997, 179.9995, -179.9995, 179.99, -179.99])
    lat = np.full(6, lat0)
    got = _dense(eng.match(lon, lat), 6, 1)[:, 0]
    want = np.minimum(oracle.distance(lon, lat, west), oracle.distance(lon, lat, east))
    assert np.array_equal(np.isfinite(got), want <= D)
    ok = np.isfinite(got)
    assert ok.sum() >= 4
    assert np.abs(got[ok] - want[ok]).max() < 1e-4


def test_large_site_is_cut_and_stays_exact():
    """A 6 km campus is split into pieces; distances stay exact near all its edges."""
    lat0, lon0 = 37.87, -122.26
    dlat = 3000 / 111_000
    dlon = dlat / np.cos(np.radians(lat0))
    big = shapely.Polygon(
        [
            (lon0 - dlon, lat0 - dlat),
            (lon0 + dlon, lat0 - dlat),
            (lon0 + dlon, lat0 + dlat),
            (lon0 - dlon, lat0 + 0.5 * dlat),
        ]
    )
    eng = Engine(_sites([big]), make_policy(D))
    assert len(eng.fences) > 4  # it was cut
    rng = np.random.default_rng(3)
    n = 800
    lon = lon0 + rng.uniform(-1.1, 1.1, n) * dlon
    lat = lat0 + rng.uniform(-1.1, 1.1, n) * dlat
    got = _dense(eng.match(lon, lat), n, 1)[:, 0]
    want = oracle.distance(lon, lat, big)
    clear = np.abs(want - D) > 0.01
    assert np.array_equal(np.isfinite(got)[clear], (want <= D)[clear])
    ok = np.isfinite(got)
    assert np.abs(got[ok] - want[ok]).max() < 5e-4


def test_line_site_and_sorted_matches():
    line = shapely.LineString([(-122.30, 37.80), (-122.29, 37.805), (-122.28, 37.80)])
    poly = _polygon(-122.29, 37.8035, 30, hole=False)
    eng = Engine(_sites([line, poly], ["school", "worship"]), make_policy(D))
    lon = np.array([-122.29, -122.2901, -122.31])
    lat = np.array([37.8035, 37.8045, 37.80])
    m = eng.match(lon, lat)
    for i in range(3):
        d = m.distance_m[m.ptr[i] : m.ptr[i + 1]]
        assert np.all(np.diff(d) >= 0)  # nearest first
    got = _dense(m, 3, 2)
    want_line = oracle.distance(lon, lat, line)
    ok = np.isfinite(got[:, 0])
    assert np.array_equal(ok, want_line <= D)
    assert np.abs(got[ok, 0] - want_line[ok]).max() < 1e-4


def test_repeated_positions_give_the_same_answer_as_distinct():
    """Deduplicating fixed-camera positions never changes results."""
    rng = np.random.default_rng(5)
    poly = _polygon(-122.27, 37.8)
    eng = Engine(
        _sites([poly, shapely.Point(-122.268, 37.8)], ["school", "worship"]), make_policy(D)
    )
    cams_lon = -122.27 + rng.uniform(-0.004, 0.004, 30)
    cams_lat = 37.8 + rng.uniform(-0.004, 0.004, 30)
    pick = rng.integers(0, 30, 2000)
    lon, lat = cams_lon[pick], cams_lat[pick]
    m = eng.match(lon, lat)
    single = [eng.match(lon[i : i + 1], lat[i : i + 1]) for i in range(0, 2000, 97)]
    for k, i in enumerate(range(0, 2000, 97)):
        assert m.site[m.ptr[i] : m.ptr[i + 1]].tolist() == single[k].site.tolist()
        assert m.distance_m[m.ptr[i] : m.ptr[i + 1]].tolist() == single[k].distance_m.tolist()


def test_no_sites_and_no_reads():
    eng = Engine(_sites([]), make_policy(D))
    m = eng.match(np.array([1.0]), np.array([2.0]))
    assert m.flagged.tolist() == [False]
    eng = Engine(_sites([_polygon(0, 0)]), make_policy(D))
    assert len(eng.match(np.empty(0), np.empty(0)).ptr) == 1


def test_parts_and_chunked_edges_equal_shapely_and_one_pass():
    """Single parts passed on without clones, multi-parts split in order, and the edges
    compiled a few pieces at a time, equal shapely's parts and a single pass (issue #5)."""
    from geofence.fences import Segments, _parts
    from geofence.geodesy import Frames

    sq = lambda x, y, h=0.001: shapely.box(x - h, y - h, x + h, y + h)  # noqa: E731
    holed = shapely.Polygon(sq(0, 47, 0.002).exterior.coords, [sq(0, 47, 0.0005).exterior.coords])
    geoms = np.array(
        [
            sq(1, 47),
            shapely.MultiPolygon([sq(2, 47), sq(2.01, 47)]),
            shapely.Point(3, 47),
            shapely.MultiPolygon([sq(4, 47)]),
            holed,
            shapely.LineString([(5, 47), (5.001, 47.001), (5.002, 47)]),
            shapely.MultiPoint([(6, 47), (6.001, 47)]),
        ],
        dtype=object,
    )
    parts, site = _parts(geoms)
    want, want_site = shapely.get_parts(geoms, return_index=True)
    assert list(site) == list(want_site)
    assert all(shapely.equals_exact(parts, want, tolerance=0))
    assert parts[0] is geoms[0]  # not a clone

    origin = shapely.point_on_surface(parts)
    frames = Frames(shapely.get_x(origin), shapely.get_y(origin))
    is_point = shapely.get_type_id(parts) == 0
    one, r1 = Segments.from_parts(parts, frames, is_point)
    few, r2 = Segments.from_parts(parts, frames, is_point, chunk=2)
    assert np.array_equal(one.ptr, few.ptr) and np.array_equal(one.edge, few.edge)
    assert np.array_equal(one.box, few.box, equal_nan=True) and np.array_equal(r1, r2)
    # a square of side 222 m holds 4 edges; the holed square 8; points none
    assert list(np.diff(one.ptr)[:4]) == [4, 4, 4, 0]


def _same(a, b):
    assert a.ptr.tolist() == b.ptr.tolist()
    assert a.site.tolist() == b.site.tolist()
    assert a.distance_m.tolist() == b.distance_m.tolist()


@pytest.mark.parametrize("fills", [False, True])
def test_repeat_cache_gives_what_a_fresh_engine_computes(fills):
    """Positions cached in one batch (fixed cameras) answer later batches exactly as the
    engine computes them, also when the cache fills and starts over (issue #5)."""
    rng = np.random.default_rng(11)
    sites = _sites(
        [_polygon(-122.27 + 0.002 * k, 37.8, hole=k % 2 == 0) for k in range(6)]
        + [shapely.Point(-122.265, 37.801)],
        ["school"] * 6 + ["worship"],
    )
    cached = Engine(sites, make_policy(D))
    cams = np.column_stack(
        [-122.265 + rng.uniform(-0.008, 0.008, 40), 37.8 + rng.uniform(-0.002, 0.002, 40)]
    )
    hits = 0
    for batch in range(12):
        pick = rng.integers(0, 40, 300)
        patrol = np.column_stack(
            [-122.265 + rng.uniform(-0.008, 0.008, 100), 37.8 + rng.uniform(-0.002, 0.002, 100)]
        )
        pos = np.concatenate([cams[pick], patrol])[rng.permutation(400)]
        before, _ = cached._repeats.lookup(pos[:, 0].copy(), pos[:, 1].copy())
        hits += int((before >= 0).sum())
        fresh = Engine(sites, make_policy(D))  # nothing cached
        _same(cached.match(pos[:, 0], pos[:, 1]), fresh.match(pos[:, 0], pos[:, 1]))
        table, rows = cached._repeats.state
        if table is not None:  # one row per distinct position
            held = np.column_stack([table.x[table.first], table.y[table.first]])
            assert len(np.unique(held, axis=0)) == len(held) == len(rows.ptr) - 1
        if fills and batch == 0:  # room for a little more than the cameras
            cached._repeats.max_pairs = len(cached._repeats.state[1].site) + 5
        assert len(cached._repeats.state[1].site) <= cached._repeats.max_pairs
    assert hits > 0  # later batches were answered from the cache


def test_repeat_cache_keeps_one_row_per_position():
    """A position added by two batches before the index is rebuilt is kept once."""
    from geofence.engine import Matches, _RepeatCache

    c = _RepeatCache()
    n = _RepeatCache.MIN_REBUILD // 2 + 1  # twice n is enough to rebuild, once is not
    lon, lat = np.arange(n, dtype=float), np.full(n, 0.5)
    rows = Matches(np.arange(n + 1, dtype=np.int64), np.arange(n), np.arange(n) * 1.5)
    c.add(lon, lat, rows)  # waiting: below the rebuild size
    assert c.state[0] is None
    c.add(lon[::-1].copy(), lat, rows.take(np.arange(n)[::-1]))  # the same positions again
    table, m = c.state
    assert len(table) == n and len(m.ptr) == n + 1
    row, m = c.lookup(np.array([7.0, 7.0, 1e6]), np.array([0.5, 0.25, 0.0]))
    assert row[1] == row[2] == -1
    assert m.site[m.ptr[row[0]] : m.ptr[row[0] + 1]].tolist() == [7]


def test_position_table_numbers_positions_like_pandas_factorize():
    """The compiled hash of positions (issue #5) gives pandas' codes, finds what it holds
    and nothing else, also with collisions in a full table of few slots."""
    from geofence._kernels import PositionTable

    rng = np.random.default_rng(5)
    cams = rng.uniform(-180, 180, (50, 2))
    pos = cams[rng.integers(0, 50, 5000)]
    pos[::7] = rng.uniform(-90, 90, (len(pos[::7]), 2))  # one-off positions
    x, y = pos[:, 0].copy(), pos[:, 1].copy()
    t = PositionTable(x, y)
    codes, uniques = pd.factorize(x + 1j * y)
    assert t.codes.tolist() == codes.tolist()
    assert x[t.first].tolist() == uniques.real.tolist()
    assert y[t.first].tolist() == uniques.imag.tolist()
    back = t.lookup(x[::-1].copy(), y[::-1].copy())
    assert back.tolist() == codes[::-1].tolist()
    # a swapped pair and a neighbour one ulp away are other positions
    other = t.lookup(np.array([y[0], np.nextafter(x[0], 0)]), np.array([x[0], y[0]]))
    assert other.tolist() == [-1, -1]
    same = PositionTable(np.zeros(3), np.array([1.0, 1.0, 2.0]))  # 16 slots, 2 codes
    assert same.codes.tolist() == [0, 0, 1] and len(same) == 2
