"""The compiled loops (geofence/_kernels.c) against independent references (issue #5)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import shapely

from geofence import _kernels as K


def _arrow_text(mm: np.ndarray) -> list[str]:
    """What the CSV writer printed before the kernel: Arrow's shortest round trip."""
    return pc.cast(pa.array(np.round(mm / 1000.0, 3) + 0.0), pa.string()).to_pylist()


def test_join_matches_text_equals_arrow_and_a_plain_join():
    rng = np.random.default_rng(5)
    edge = [0, 1, 9, 10, 99, 100, 101, 110, 999, 1000, 1001, 1010, 1100, 150000, 119700]
    mm = np.concatenate([edge, [10**12 - 1, 10**9 + 7], rng.integers(0, 2_000_000, 3000)]).astype(
        np.int64
    )
    ids = pa.array([f"S{i}" for i in range(50)] + ["", "a,b", "ü"])
    prefix = pc.binary_join_element_wise(ids, "@", "").cast(pa.string())
    site = rng.integers(0, len(ids), len(mm))
    # 1200 reads with 0..many matches each (repeated cut points give reads without any)
    cuts = np.sort(rng.integers(0, len(mm) + 1, 1199))
    ptr = np.concatenate([[0], cuts, [len(mm)]]).astype(np.int64)
    _, off, data = prefix.buffers()
    m_off, m_data, d_off, d_data = K.join_matches(
        ptr, site, mm, np.frombuffer(off, np.int32, len(prefix) + 1), np.frombuffer(data, np.uint8)
    )
    matches = pa.LargeStringArray.from_buffers(
        len(ptr) - 1, pa.py_buffer(m_off), pa.py_buffer(m_data)
    )
    nearest = pa.LargeStringArray.from_buffers(
        len(ptr) - 1, pa.py_buffer(d_off), pa.py_buffer(d_data)
    )
    text = _arrow_text(mm)
    pre = prefix.to_pylist()
    want = [
        ";".join(pre[site[j]] + text[j] for j in range(ptr[i], ptr[i + 1]))
        for i in range(len(ptr) - 1)
    ]
    assert matches.to_pylist() == want
    assert nearest.to_pylist() == [
        text[ptr[i]] if ptr[i + 1] > ptr[i] else "" for i in range(len(ptr) - 1)
    ]
    assert text[len(edge) - 2 : len(edge)] == ["150", "119.7"]
    assert (np.diff(ptr) == 0).any() and (np.diff(ptr) > 1).any()


def test_join_matches_refuses_what_it_cannot_write():
    ptr = np.array([0, 1], np.int64)
    off = np.array([0, 2], np.int32)
    data = np.frombuffer(b"a@", np.uint8)
    with pytest.raises(ValueError, match="out of range"):
        K.join_matches(ptr, np.array([1]), np.array([5]), off, data)  # no site 1
    with pytest.raises(ValueError, match="out of range"):
        K.join_matches(ptr, np.array([0]), np.array([-5]), off, data)  # negative distance
    with pytest.raises(ValueError, match="do not agree"):
        K.join_matches(np.array([0, 2], np.int64), np.array([0]), np.array([5]), off, data)


def _planar_pieces():
    """Areas with holes, a multi-ring piece, and a line, as Segments would hold them."""
    square = shapely.Polygon(
        [(-50, -50), (50, -50), (50, 50), (-50, 50)],
        holes=[[(-10, -10), (10, -10), (10, 10), (-10, 10)]],
    )
    tri = shapely.Polygon([(0, 0), (120, 10), (30, 80)])
    line = shapely.LineString([(-100, 0), (0, 30), (80, -40)])
    degenerate = shapely.Polygon([(0, 0), (0, 0), (40, 0), (40, 40), (0, 0)])  # a zero edge
    geoms = [square, tri, line, degenerate]
    ptr, rows, box = [0], [], []
    for g in geoms:
        rings = [g] if g.geom_type == "LineString" else [g.exterior, *g.interiors]
        for r in rings:
            c = np.asarray(r.coords)
            rows.append(np.column_stack([c[:-1], c[1:] - c[:-1]]))
        ptr.append(ptr[-1] + sum(len(np.asarray(r.coords)) - 1 for r in rings))
        box.append([np.nan] * 4 if g.geom_type == "LineString" else list(g.bounds))
    return geoms, np.array(ptr), np.concatenate(rows), np.array(box)


def test_edge_distances_equal_shapely_in_the_plane():
    geoms, ptr, edge, box = _planar_pieces()
    rng = np.random.default_rng(11)
    n = 20000
    piece = rng.integers(0, len(geoms), n)
    east, north = rng.uniform(-160, 160, (2, n))
    # exactly on vertices and edges too
    east[:4], north[:4], piece[:4] = [-50, 0, 50, 10], [-50, 0, 0, 0], [0, 0, 0, 0]
    got = K.edge_distances(piece, east, north, ptr, edge, box)
    pts = shapely.points(east, north)
    want = shapely.distance(np.array(geoms, dtype=object)[piece], pts)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    inside = shapely.contains_properly(np.array(geoms, dtype=object)[piece], pts)
    assert (got[inside] == 0).all() and inside.sum() > 500


def test_exact_pairs_keeps_what_its_limit_says_and_refuses_bad_indices():
    geoms, ptr, edge, box = _planar_pieces()
    n_pieces = len(geoms)
    table = np.zeros((n_pieces + 1, K.PIECE_COLUMNS))
    # identity planes at the ECEF origin (east = y, north = z), so the kernel sees the
    # plane coordinates as given: clon = 1, slon = 0, clat = 1, slat = 0
    table[:, K.CLON] = table[:, K.CLAT] = 1.0
    table[:, K.REACH] = 1e9
    table[:n_pieces, K.LO], table[:n_pieces, K.HI] = ptr[:-1], ptr[1:]
    table[:n_pieces, K.BX0 : K.BY1 + 1] = box
    table[n_pieces, K.LO] = table[n_pieces, K.HI] = ptr[-1]  # a point piece
    table[:, K.FOOT] = [0, 5, 0, 0, 20]
    table[:, K.LIMIT] = [30, 30, 15, 30, 30]
    rng = np.random.default_rng(3)
    m = 5000
    y, z = rng.uniform(-150, 150, (2, m))
    x = np.zeros(m)
    read = np.repeat(np.arange(m), n_pieces + 1)
    piece = np.tile(np.arange(n_pieces + 1), m)
    k, dist = K.exact_pairs(read, piece, x, y, z, table, edge)
    pts = shapely.points(y, z)
    ref = np.column_stack(
        [shapely.distance(g, pts) for g in geoms] + [shapely.distance(shapely.Point(0, 0), pts)]
    ).ravel()
    ref = np.maximum(ref - table[piece, K.FOOT], 0.0)
    want = np.flatnonzero(ref <= table[piece, K.LIMIT])
    assert np.array_equal(k, want) and len(k) > 1000
    np.testing.assert_allclose(dist, ref[want], rtol=0, atol=1e-9)
    bad = piece.copy()
    bad[7] = n_pieces + 1
    with pytest.raises(ValueError, match="out of range"):
        K.exact_pairs(read, bad, x, y, z, table, edge)


def _runs_reference(read, dist, site):
    """Plain Python: per read, pairs by distance then candidate order; a site's first only."""
    out = []
    for r in sorted(set(read.tolist())):
        idx = [i for i in range(len(read)) if read[i] == r]
        idx.sort(key=lambda i: (dist[i], i))
        seen = set()
        for i in idx:
            if site[i] not in seen:
                seen.add(site[i])
                out.append((r, dist[i], site[i]))
    return out


def test_sort_runs_equals_a_plain_sort_and_keeps_a_sites_nearest_pair():
    rng = np.random.default_rng(9)
    read = np.sort(rng.integers(0, 400, 3000))
    # few distinct sites and distances, so that repeats and ties are common
    site = rng.integers(0, 12, len(read))
    dist = rng.integers(0, 6, len(read)).astype(float) * 0.5
    got_read, got_dist, got_site = K.sort_runs(read, dist, site)
    want = _runs_reference(read, dist, site)
    assert list(zip(got_read.tolist(), got_dist.tolist(), got_site.tolist(), strict=True)) == want
    assert len(want) < len(read)  # some pairs were dropped


def test_sort_runs_leaves_long_runs_and_refuses_ungrouped_reads():
    n = K.MAX_RUN + 1
    read, dist, site = np.zeros(n, np.int64), np.arange(n, 0, -1.0), np.arange(n)
    assert K.sort_runs(read, dist, site) is None
    assert dist[0] == n  # the caller's arrays are not touched
    assert K.sort_runs(read[: K.MAX_RUN], dist[: K.MAX_RUN], site[: K.MAX_RUN]) is not None
    with pytest.raises(ValueError, match="grouped"):
        K.sort_runs(np.array([1, 0]), np.zeros(2), np.zeros(2, np.int64))


def test_to_matches_numpy_path_equals_the_compiled_pass(monkeypatch):
    from geofence import engine

    rng = np.random.default_rng(3)
    read = np.sort(rng.integers(0, 300, 2500))
    site = rng.integers(0, 20, len(read))
    dist = rng.integers(0, 8, len(read)) * 0.25
    multi = np.zeros(20, bool)
    multi[::3] = True
    fast = engine._to_matches(300, read, site, dist, multi_site=multi)
    monkeypatch.setattr(engine.K, "sort_runs", lambda *a: None)  # as for a long run
    slow = engine._to_matches(300, read, site, dist, multi_site=multi)
    for name in ("ptr", "site", "distance_m"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    # pairs not grouped by read (events, always-checked pieces) take the numpy path too
    o = rng.permutation(len(read))
    ung = engine._to_matches(300, read[o], site[o], dist[o], multi_site=multi)
    assert np.array_equal(fast.ptr, ung.ptr) and np.array_equal(fast.distance_m, ung.distance_m)
    for i in range(300):
        a = slice(fast.ptr[i], fast.ptr[i + 1])
        assert sorted(zip(fast.distance_m[a], fast.site[a], strict=True)) == sorted(
            zip(ung.distance_m[a], ung.site[a], strict=True)
        )
