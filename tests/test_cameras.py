"""The camera-siting audit (issue #10): distances, headings, installations, counts, positioning."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import oracle
import pytest
import shapely
from click.testing import CliRunner
from conftest import make_policy

from geofence.cameras import (
    Headings,
    audit_cameras,
    build_camera_engine,
    load_camera_positions,
    parse_headings,
    position_reads,
    read_cameras,
    run_cameras,
)
from geofence.cli import cli
from geofence.errors import LayerError, ReadFormatError
from geofence.model import NO_TIME, REASON_CODE, ReadBatch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "cameras"
GEOD = oracle.GEOD
D = 150.0


def _sites(geoms, cats, ids=None):
    n = len(geoms)
    return gpd.GeoDataFrame(
        {
            "site_id": ids or [f"s{i}" for i in range(n)],
            "name": [f"S{i}" for i in range(n)],
            "category": cats,
            "source": ["t"] * n,
        },
        geometry=list(geoms),
        crs="EPSG:4326",
    )


def _feature(lon, lat, **props):
    return {
        "type": "Feature",
        "properties": props,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
    }


def _write_fc(path: Path, features) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _cameras_file(tmp_path, lon, lat, headings=None, name="cams.geojson") -> Path:
    feats = []
    for i, (x, y) in enumerate(
        zip(np.asarray(lon).tolist(), np.asarray(lat).tolist(), strict=True)
    ):
        props = {"camera_id": f"c{i}"}
        if headings is not None and headings[i] is not None:
            props["direction"] = headings[i]
        feats.append(_feature(x, y, **props))
    return _write_fc(tmp_path / name, feats)


def _fwd(lon, lat, az, dist):
    n = np.broadcast(np.asarray(az), np.asarray(dist)).size
    x, y, _ = GEOD.fwd(
        np.full(n, lon), np.full(n, lat), np.broadcast_to(az, n), np.broadcast_to(dist, n)
    )
    return np.asarray(x), np.asarray(y)


def _polygon(lon0, lat0, size_m=120.0):
    dlat = size_m / 111_000
    dlon = dlat / np.cos(np.radians(lat0))
    return shapely.Polygon(
        [
            (lon0 - dlon, lat0 - dlat),
            (lon0 + dlon, lat0 - 0.6 * dlat),
            (lon0 + 0.8 * dlon, lat0 + dlat),
            (lon0 - 0.7 * dlon, lat0 + 0.9 * dlat),
        ]
    )


def _edge_feet(poly, dist_m):
    """Points ``dist_m`` off the middle of every edge, outwards along the geodesic normal."""
    ring = np.asarray(poly.exterior.coords)
    out_lon, out_lat, feet = [], [], []
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        az, _, length = GEOD.inv(x0, y0, x1, y1)
        mx, my, back = GEOD.fwd(x0, y0, az, length / 2)
        along = back + 180.0
        for side in (90.0, -90.0):
            px, py, _ = GEOD.fwd(mx, my, along + side, 1.0)
            if not poly.contains(shapely.Point(px, py)):
                x, y, _ = GEOD.fwd(mx, my, along + side, dist_m)
                out_lon.append(x)
                out_lat.append(y)
                feet.append((mx, my))
                break
    return np.array(out_lon), np.array(out_lat), feet


# --------------------------------------------------------------------------------------
# Exact distances at the fence


@pytest.mark.parametrize("lat0", [0.0, 47.0, 70.0])
def test_cameras_5mm_either_side_of_the_fence_match_the_oracle(lat0, tmp_path):
    lon0 = 10.0
    school = shapely.Point(lon0, lat0)  # point site, grown by the school footprint (100 m)
    far = 3000.0 / 111_000 / np.cos(np.radians(lat0))
    worship = _polygon(lon0 + far, lat0)  # polygon, fenced from its geodesic edges
    sites = _sites([school, worship], ["school", "worship"])
    policy = make_policy(D, footprints={"school": 100.0, "worship": 30.0})

    az = np.array([0.0, 77.0, 190.0, 300.0])
    lon_in, lat_in = _fwd(lon0, lat0, az, 100.0 + D - 0.005)
    lon_out, lat_out = _fwd(lon0, lat0, az, 100.0 + D + 0.005)
    elon_in, elat_in, _ = _edge_feet(worship, D - 0.005)
    elon_out, elat_out, _ = _edge_feet(worship, D + 0.005)
    lon = np.concatenate([lon_in, lon_out, elon_in, elon_out])
    lat = np.concatenate([lat_in, lat_out, elat_in, elat_out])
    site = np.array([0] * 8 + [1] * (len(elon_in) + len(elon_out)))
    want_in = np.concatenate(
        [np.ones(4), np.zeros(4), np.ones(len(elon_in)), np.zeros(len(elon_out))]
    ).astype(bool)

    # the oracle (pyproj Geod, golden-section search along geodesic edges) agrees on the setup
    want = np.where(
        site == 0,
        np.maximum(oracle.point_distance(lon, lat, lon0, lat0) - 100.0, 0.0),
        oracle.distance(lon, lat, worship),
    )
    assert np.all(np.abs(want - np.where(want_in, D - 0.005, D + 0.005)) < 1e-4)

    cams, rejected, _ = read_cameras(_cameras_file(tmp_path, lon, lat))
    assert len(rejected) == 0
    engine, _, _ = build_camera_engine(cameras=cams, sites=sites, policy=policy, distances_m=[D])
    audit = audit_cameras(cams, engine)
    got = np.full(len(lon), np.inf)
    got[audit.pair_camera] = audit.pair_distance_m
    assert np.array_equal(np.isfinite(got), want_in)
    assert np.all(
        engine.fences.site_id[audit.pair_site] == np.array(["s0", "s1"])[site[audit.pair_camera]]
    )
    assert np.abs(got[want_in] - want[want_in]).max() < 1e-4


def test_one_engine_at_the_largest_distance_equals_separate_runs(tmp_path):
    """--distance-m 150,300 classifies the exact distances: same pairs as a run per distance."""
    rng = np.random.default_rng(3)
    lon0, lat0 = -122.27, 37.80
    poly = _polygon(lon0, lat0, 80)
    pt = shapely.Point(lon0 + 0.004, lat0 + 0.001)
    sites = _sites([poly, pt], ["school", "worship"])
    lon = lon0 + rng.uniform(-0.008, 0.012, 400)
    lat = lat0 + rng.uniform(-0.005, 0.006, 400)
    path = _cameras_file(tmp_path, lon, lat)
    both = run_cameras(
        [path],
        sites=sites,
        policy=make_policy(D),
        distances_m=[150, 300],
        out=tmp_path / "b.csv",
        fmt="csv",
    )
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    for d in (150, 300):
        run_cameras(
            [path],
            sites=sites,
            policy=make_policy(D),
            distances_m=[d],
            out=tmp_path / f"{d}.csv",
            fmt="csv",
        )
        alone = {
            (r["camera_id"], r["site_id"], r["distance_m"])
            for r in csv.DictReader((tmp_path / f"{d}.csv").open())
        }
        within = {
            (r["camera_id"], r["site_id"], r["distance_m"])
            for r in rows
            if float(r["within_m"]) <= d
        }
        assert within == alone
        assert both["by_distance"][f"{d}"]["pairs"] == len(alone) > 0
    # and the oracle agrees with every reported distance
    d_poly = oracle.distance(lon, lat, poly)
    d_pt = np.maximum(oracle.point_distance(lon, lat, pt.x, pt.y) - 30.0, 0.0)
    for r in rows:
        i = int(r["camera_id"][1:])
        expect = d_poly[i] if r["site_id"] == "s0" else d_pt[i]
        assert abs(float(r["distance_m"]) - expect) < 1e-3


# --------------------------------------------------------------------------------------
# Headings and view


@pytest.mark.parametrize(
    "text, status, arcs",
    [
        ("90", Headings.PARSED, [(90.0, 0.0)]),
        ("NE", Headings.PARSED, [(45.0, 0.0)]),
        ("nnw", Headings.PARSED, [(337.5, 0.0)]),
        ("90;270", Headings.PARSED, [(90.0, 0.0), (270.0, 0.0)]),
        ("90-270", Headings.PARSED, [(90.0, 180.0)]),
        ("350-10", Headings.PARSED, [(350.0, 20.0)]),
        ("0-360", Headings.PARSED, [(0.0, 360.0)]),
        ("-90", Headings.PARSED, [(270.0, 0.0)]),
        ("360", Headings.PARSED, [(0.0, 0.0)]),
        ("abc", Headings.UNPARSED, []),
        ("forward", Headings.UNPARSED, []),
        ("90;abc", Headings.UNPARSED, []),
        ("", Headings.MISSING, []),
        (None, Headings.MISSING, []),
    ],
)
def test_headings_parse(text, status, arcs):
    h = parse_headings([text, "10"])
    assert h.status[0] == status
    got = [(s, w) for s, w in zip(h.start_deg[0], h.width_deg[0], strict=True) if np.isfinite(s)]
    assert got == arcs
    assert h.status[1] == Headings.PARSED


VIEW_CASES = [
    # heading, azimuth from camera to site, expected view (half-angle 45)
    ("90", 90.0, "toward"),
    ("90", 134.99, "toward"),  # the half-angle boundary, inclusive
    ("90", 135.01, "side"),
    ("90", 224.99, "side"),
    ("90", 225.01, "away"),
    ("90", 270.0, "away"),
    ("NE", 80.0, "toward"),
    ("90;270", 270.0, "toward"),
    ("90;270", 0.0, "side"),
    ("90-270", 180.0, "toward"),
    ("90-270", 20.0, "side"),
    ("abc", 90.0, "unknown"),
    ("", 90.0, "unknown"),
]


def test_view_against_headings_and_half_angle(tmp_path):
    """One camera and one point site per case, 1 km apart from the next case."""
    lat0 = 47.6
    cam_lon = -122.3 + 0.015 * np.arange(len(VIEW_CASES))
    cam_lat = np.full(len(VIEW_CASES), lat0)
    site_lon, site_lat = [], []
    for i, (_, az, _) in enumerate(VIEW_CASES):
        x, y = _fwd(cam_lon[i], lat0, az, 100.0)
        site_lon.append(x[0])
        site_lat.append(y[0])
    sites = _sites(
        [shapely.Point(x, y) for x, y in zip(site_lon, site_lat, strict=True)],
        ["school"] * len(VIEW_CASES),
    )
    policy = make_policy(D, footprints={"school": 0.0})
    path = _cameras_file(tmp_path, cam_lon, cam_lat, [h or None for h, _, _ in VIEW_CASES])
    views = {}
    for half in (45.0, 0.0, 180.0):
        doc = run_cameras(
            [path],
            sites=sites,
            policy=policy,
            half_angle_deg=half,
            out=tmp_path / "p.csv",
            fmt="csv",
        )
        rows = list(csv.DictReader((tmp_path / "p.csv").open()))
        views[half] = {r["camera_id"]: r for r in rows}
        # view annotates, never filters: the same pairs whatever the half-angle
        assert doc["pairs"] == len(VIEW_CASES) == len(rows)
    for i, (heading, az, view) in enumerate(VIEW_CASES):
        r = views[45.0][f"c{i}"]
        assert r["site_id"] == f"s{i}"
        assert r["view"] == view, (heading, az)
        assert abs((float(r["azimuth_deg"]) - az + 180) % 360 - 180) <= 0.05
    assert doc["headings"]["unparsed"] == 1 and doc["headings"]["missing"] == 1
    assert doc["headings"]["unparsed_values_top20"] == {"abc": 1}


def test_view_to_a_polygon_uses_the_nearest_point_and_inside_is_toward(tmp_path):
    lon0, lat0 = 2.35, 48.85
    poly = _polygon(lon0, lat0, 100)
    feet_lon, feet_lat, feet = _edge_feet(poly, 60.0)
    inside = shapely.Point(lon0, lat0)
    lon = np.append(feet_lon, inside.x)
    lat = np.append(feet_lat, inside.y)
    headings = ["0"] * len(feet_lon) + ["270"]
    sites = _sites([poly], ["school"])
    cams, _, _ = read_cameras(_cameras_file(tmp_path, lon, lat, headings))
    engine, _, _ = build_camera_engine(cameras=cams, sites=sites, policy=make_policy(D))
    audit = audit_cameras(cams, engine)
    assert len(audit.pair_camera) == len(lon)
    for k, c in enumerate(audit.pair_camera.tolist()):
        if c < len(feet):
            want_az = GEOD.inv(lon[c], lat[c], *feet[c])[0] % 360
            assert abs((audit.pair_azimuth_deg[k] - want_az + 180) % 360 - 180) < 0.01
            assert abs(audit.pair_distance_m[k] - 60.0) < 1e-3
        else:
            assert audit.pair_distance_m[k] == 0.0 and audit.pair_view[k] == "toward"


# --------------------------------------------------------------------------------------
# Installations


def test_a_chain_25m_apart_is_one_installation_at_30m(tmp_path):
    lon0, lat0 = -117.5, 34.1
    lon, lat = _fwd(lon0, lat0, 63.0, 25.0 * np.arange(10))
    far_lon, far_lat = _fwd(lon[-1], lat[-1], 63.0, 100.0)  # 100 m past the end: on its own
    pair_lon, pair_lat = _fwd(lon0 + 0.01, lat0, 10.0, np.array([0.0, 29.995, 60.005]))
    all_lon = np.concatenate([lon, far_lon, pair_lon])
    all_lat = np.concatenate([lat, far_lat, pair_lat])
    assert np.allclose(
        oracle.point_distance(lon[1:], lat[1:], lon[0], lat[0]), 25.0 * np.arange(1, 10), atol=1e-6
    )
    order = np.random.default_rng(5).permutation(len(all_lon))  # input order must not matter
    path = _cameras_file(tmp_path, all_lon[order], all_lat[order])
    sites = _sites([shapely.Point(lon0, lat0)], ["school"])
    for link, groups in ((30.0, 4), (20.0, 14)):
        cams, _, _ = read_cameras(path)
        engine, _, _ = build_camera_engine(cameras=cams, sites=sites, policy=make_policy(D))
        audit = audit_cameras(cams, engine, link_m=link)
        inst = np.empty(len(order), np.int64)
        inst[order] = audit.installation
        assert len(np.unique(inst)) == groups
        if link == 30.0:
            assert len(np.unique(inst[:10])) == 1  # the chain
            assert inst[10] not in inst[:10]  # 100 m away
            assert inst[11] == inst[12] != inst[13]  # 29.995 m linked, 30.005 m further not
        ids = audit.installation_id
        assert all(i.startswith("inst:c") for i in ids)


# --------------------------------------------------------------------------------------
# Inputs, rejects and counts


def _world(tmp_path):
    lon0, lat0 = -122.27, 37.80
    poly = _polygon(lon0, lat0, 80)
    pt = shapely.Point(lon0 + 0.004, lat0 + 0.001)
    feats = [
        {
            "type": "Feature",
            "properties": {"site_id": "sch", "name": "School", "category": "school"},
            "geometry": shapely.geometry.mapping(poly),
        },
        {
            "type": "Feature",
            "properties": {"site_id": "chu", "name": "Church", "category": "worship"},
            "geometry": shapely.geometry.mapping(pt),
        },
    ]
    layer = _write_fc(tmp_path / "sites.geojson", feats)
    rng = np.random.default_rng(8)
    n = 60
    lon = np.round(lon0 + rng.uniform(-0.006, 0.008, n), 7)
    lat = np.round(lat0 + rng.uniform(-0.004, 0.005, n), 7)
    heads = rng.choice(["90", "NE", "90;270", "abc", None, "200-250"], n).tolist()
    ops = rng.choice(["Oakland PD", "Flock Safety", None], n).tolist()
    return layer, lon, lat, heads, ops


def _write_formats(tmp_path, lon, lat, heads, ops):
    """The same cameras as GeoJSON, GeoJSON-seq, newline-delimited, Overpass, CSV (plain, gz)."""
    feats = []
    elements = []
    rows = ["camera_id,lat,lon,operator,direction"]
    for i, (x, y, h, o) in enumerate(zip(lon.tolist(), lat.tolist(), heads, ops, strict=True)):
        tags = {"man_made": "surveillance", "surveillance:type": "ALPR"}
        if h is not None:
            tags["direction"] = h
        if o is not None:
            tags["operator"] = o
        feats.append(_feature(x, y, camera_id=f"c{i}", **tags))
        elements.append(
            {
                "type": "node",
                "id": 1000 + i,
                "lat": y,
                "lon": x,
                "tags": {"camera_id": f"c{i}", **tags},
            }
        )
        rows.append(f"c{i},{y!r},{x!r},{o or ''},{h or ''}")
    out = {}
    out["geojson"] = _write_fc(tmp_path / "c.geojson", feats)
    seq = "".join("\x1e" + json.dumps(f) + "\n" for f in feats)
    out["geojsonseq"] = tmp_path / "c.geojsons"
    out["geojsonseq"].write_text(seq)
    out["ndjson"] = tmp_path / "c.ndjson"
    out["ndjson"].write_text("".join(json.dumps(f) + "\n" for f in feats))
    out["overpass"] = tmp_path / "c.json"
    out["overpass"].write_text(json.dumps({"version": 0.6, "elements": elements}))
    out["csv"] = tmp_path / "c.csv"
    out["csv"].write_text("\n".join(rows) + "\n")
    out["csv.gz"] = tmp_path / "c.csv.gz"
    out["csv.gz"].write_bytes(gzip.compress(out["csv"].read_bytes()))
    out["geojson.gz"] = tmp_path / "c.geojson.gz"
    out["geojson.gz"].write_bytes(gzip.compress(out["geojson"].read_bytes()))
    return out


def test_every_input_format_gives_the_same_cameras_and_pairs(tmp_path):
    layer, lon, lat, heads, ops = _world(tmp_path)
    files = _write_formats(tmp_path, lon, lat, heads, ops)
    results = {}
    for kind, path in files.items():
        cams, rej, _inputs = read_cameras(path, columns={"camera_id": "camera_id"})
        assert len(rej) == 0 and len(cams) == len(lon), kind
        assert np.array_equal(cams.lon, lon) and np.array_equal(cams.lat, lat), kind
        assert cams.heading.tolist() == heads and cams.operator.tolist() == ops, kind
        assert cams.camera_id.tolist() == [f"c{i}" for i in range(len(lon))], kind
        doc = run_cameras(
            [path],
            [layer],
            columns={"camera_id": "camera_id"},
            out=tmp_path / f"{kind}.csv",
            fmt="csv",
        )
        results[kind] = (tmp_path / f"{kind}.csv").read_text().replace(path.name, "X")
        assert doc["inputs"][0]["format"] == {
            "csv.gz": "csv",
            "geojson.gz": "geojson",
            "ndjson": "geojsonseq",
        }.get(kind, kind)
    assert len(set(results.values())) == 1
    assert results["geojson"].count("\n") > 5  # some pairs


def test_rejects_and_counts_add_up(tmp_path):
    layer, lon, lat, heads, _ops = _world(tmp_path)
    feats = [
        _feature(x, y, direction=h)
        for x, y, h in zip(lon.tolist(), lat.tolist(), heads, strict=True)
    ]
    feats += [
        {"type": "Feature", "properties": {"camera_id": "nogeom"}, "geometry": None},
        _feature(0.0, 0.0, camera_id="island"),
        _feature(-122.27, 95.0, camera_id="range"),
        {
            "type": "Feature",
            "properties": {"camera_id": "line"},
            "geometry": {"type": "LineString", "coordinates": [[0, 1], [1, 1]]},
        },
        {
            "type": "Feature",
            "properties": {"camera_id": "text"},
            "geometry": {"type": "Point", "coordinates": ["a", 37.8]},
        },
        {"kind": "not a feature"},
    ]
    gj = _write_fc(tmp_path / "c.geojson", feats)
    csvf = tmp_path / "c.csv"
    csvf.write_text("camera_id,lat,lon\nok1,37.8,-122.27\nmiss,,-122.27\nbad,37.8,abc\n")
    res = CliRunner().invoke(
        cli,
        [
            "cameras",
            str(gj),
            str(csvf),
            "--layers",
            str(layer),
            "--rejects",
            str(tmp_path / "r.csv"),
            "--summary",
            str(tmp_path / "s.json"),
            "--distance-m",
            "150,300",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["cameras_in"] == len(lon) + 6 + 3
    assert (
        doc["cameras_in"] == doc["cameras_near"] + doc["cameras_not_near"] + doc["cameras_rejected"]
    )
    assert doc["cameras_rejected"] == 8
    assert doc["rejected_by_reason"] == {
        "bad_position": 2,
        "malformed_record": 1,
        "missing_position": 2,
        "not_a_point": 1,
        "null_island": 1,
        "position_out_of_range": 1,
    }
    rej = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert {(r["camera_id"], r["reason"]) for r in rej} >= {
        ("nogeom", "missing_position"),
        ("miss", "missing_position"),
        ("line", "not_a_point"),
    }
    assert next(r for r in rej if r["camera_id"] == "bad")["record"] == "bad,37.8,abc"
    assert (
        doc["headings"]["parsed"] + doc["headings"]["missing"] + doc["headings"]["unparsed"]
        == len(lon) + 1
    )
    assert doc["headings"]["unparsed"] == heads.count("abc")  # a bad heading is not a reject
    assert [i["rejected"] for i in doc["inputs"]] == [6, 2]
    near = doc["by_distance"]["300"]["cameras"]
    assert near == doc["cameras_near"] >= doc["by_distance"]["150"]["cameras"] > 0
    for cat in ("school", "worship"):
        c = doc["by_category"][cat]
        assert (
            c["sites_fenced"] == 1
            and c["300"]["share_of_sites_with_camera"] == c["300"]["sites"] == 1
        )


@pytest.mark.parametrize("batch", [1, 7, 100_000])
def test_outputs_are_identical_for_any_batch_size(tmp_path, batch):
    layer, lon, lat, heads, ops = _world(tmp_path)
    files = _write_formats(tmp_path, lon, lat, heads, ops)
    outs = []
    for b in (None, batch):
        d = tmp_path / f"b{b}"
        args = [
            "cameras",
            str(files["csv"]),
            str(files["geojson"]),
            "--layers",
            str(layer),
            "--deterministic",
            "--distance-m",
            "150,300",
        ]
        args += [
            "--out",
            str(d / "p.geojson"),
            "--summary",
            str(d / "s.json"),
            "--camera-table",
            str(d / "t.csv"),
        ]
        if b:
            args += ["--batch-size", str(b)]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        outs.append([(d / f).read_bytes() for f in ("p.geojson", "s.json", "t.csv")])
    assert outs[0] == outs[1]
    fc = json.loads(outs[0][0])
    assert fc["features"] and {"view", "installation_id", "distance_m", "tier", "clauses"} <= set(
        fc["features"][0]["properties"]
    )


@pytest.mark.parametrize(
    "layer_text, message",
    [
        ('{"type": "FeatureCollection", "features": []}', "no features"),
        ('{"type": "FeatureCollection", "features": [', "cannot be read"),
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"category": "labor_agency"}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]}',
            "no site to measure cameras against",
        ),
    ],
)
def test_empty_or_broken_layer_is_one_line_and_exit_1(tmp_path, layer_text, message):
    layer = tmp_path / "l.geojson"
    layer.write_text(layer_text)
    cams = _cameras_file(tmp_path, [1.0], [2.0])
    res = CliRunner().invoke(cli, ["cameras", str(cams), "--layers", str(layer)])
    assert res.exit_code == 1
    assert (
        res.output.count("\n") == 1
        and res.output.startswith("geofence: error:")
        and message in res.output
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--distance-m", "150,abc"], "--distance-m 'abc'"),
        (["--distance-m", "150", "--distance", "school=100"], "not both"),
    ],
)
def test_bad_options_are_one_line(tmp_path, args, message):
    layer, lon, lat, _heads, _ops = _world(tmp_path)
    cams = _cameras_file(tmp_path, lon, lat)
    res = CliRunner().invoke(cli, ["cameras", str(cams), "--layers", str(layer), *args])
    assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1


def test_empty_camera_file_is_one_line(tmp_path):
    layer, *_ = _world(tmp_path)
    empty = tmp_path / "e.geojson"
    empty.write_text("")
    res = CliRunner().invoke(cli, ["cameras", str(empty), "--layers", str(layer)])
    assert res.exit_code == 1 and "camera file is empty" in res.output


# --------------------------------------------------------------------------------------
# Positioning reads by camera (scan --cameras)


def test_scan_with_cameras_flags_as_if_the_coordinates_were_written_in(tmp_path):
    layer, lon, lat, heads, _ops = _world(tmp_path)
    cams = _cameras_file(tmp_path, lon, lat, heads)
    table = tmp_path / "table.csv"
    res = CliRunner().invoke(
        cli, ["cameras", str(cams), "--layers", str(layer), "--camera-table", str(table)]
    )
    assert res.exit_code == 0, res.output
    pos = {r["camera_id"]: (r["lat"], r["lon"]) for r in csv.DictReader(table.open())}
    assert len(pos) == len(lon)
    rng = np.random.default_rng(2)
    cam = rng.integers(0, len(lon), 500)
    with_xy = ["read_id,plate,timestamp,lat,lon,camera_id"]
    without = ["read_id,plate,timestamp,lat,lon,camera_id"]
    for i, c in enumerate(cam.tolist()):
        t = f"2025-03-01T12:{i % 60:02d}:00Z" if i % 50 else "not a time"
        y, x = pos[f"c{c}"]
        with_xy.append(f"r{i},P{i % 37},{t},{y},{x},c{c}")
        without.append(f"r{i},P{i % 37},{t},,,c{c}")
    with_xy.append("r900,Q,2025-03-01T12:00:00Z,37.9,-122.1,c1")  # own coordinates: kept
    without.append("r900,Q,2025-03-01T12:00:00Z,37.9,-122.1,c1")
    with_xy.append("r901,Q,2025-03-01T12:00:00Z,,,unknown")  # camera not in the table
    without.append("r901,Q,2025-03-01T12:00:00Z,,,unknown")
    (tmp_path / "a.csv").write_text("\n".join(with_xy) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(without) + "\n")
    outs = {}
    for name, extra in (("a", []), ("b", ["--cameras", str(table)])):
        args = [
            "scan",
            str(tmp_path / f"{name}.csv"),
            "--layers",
            str(layer),
            "--format",
            "csv",
            "--deterministic",
        ]
        args += [
            "--out",
            str(tmp_path / f"{name}.out.csv"),
            "--summary",
            str(tmp_path / f"{name}.s.json"),
            *extra,
        ]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        outs[name] = list(csv.DictReader((tmp_path / f"{name}.out.csv").open()))
    b_rows = outs["b"]
    assert b_rows and all(r.pop("position_source") == "camera" for r in b_rows)
    assert outs["a"] == b_rows
    sa = json.loads((tmp_path / "a.s.json").read_text())
    sb = json.loads((tmp_path / "b.s.json").read_text())
    for key in (
        "reads_in",
        "reads_clean",
        "reads_flagged",
        "reads_rejected",
        "rejected_by_reason",
        "flagged_by_category",
    ):
        assert sa[key] == sb[key], key
    assert sb["rejected_by_reason"] == {"bad_timestamp": 10, "missing_position": 1}
    assert sb["cameras"]["reads_positioned"] == 500 and sb["cameras"]["cameras"] == len(lon)
    # the Python API takes the same table
    import geofence

    gdf = geofence.scan(tmp_path / "b.csv", [layer], cameras=table)
    assert len(gdf) == len(b_rows) and set(gdf["position_source"]) == {"camera"}


def test_position_reads_keeps_own_and_bad_positions():
    import pyarrow as pa

    cols = pa.table({"camera_id": ["A", "A", "A", None, "B"], "t": ["x"] * 5})
    reason = np.array(
        [
            0,
            REASON_CODE["missing_position"],
            REASON_CODE["bad_position"],
            REASON_CODE["missing_position"],
            REASON_CODE["missing_position"],
        ],
        np.int8,
    )
    batch = ReadBatch(
        row=np.arange(1, 6),
        lon=np.array([5.0, np.nan, np.nan, np.nan, np.nan]),
        lat=np.array([6.0, np.nan, np.nan, np.nan, np.nan]),
        time_us=np.array([1, 2, 3, 4, NO_TIME]),
        reason=reason,
        columns=cols,
    )
    cams_pos = load_camera_positions_from_arrays(["A", "B"], [1.0, 3.0], [2.0, 4.0])
    out = position_reads(batch, cams_pos, time_column="t")
    assert out.lon[:2].tolist() == [5.0, 1.0] and out.lat[:2].tolist() == [6.0, 2.0]
    assert out.reason.tolist() == [
        0,
        0,
        REASON_CODE["bad_position"],
        REASON_CODE["missing_position"],
        REASON_CODE["bad_timestamp"],
    ]
    assert out.columns.column("position_source").to_pylist() == [
        "read",
        "camera",
        None,
        None,
        "camera",
    ]
    assert batch.reason[1] == REASON_CODE["missing_position"]  # the input batch is not changed


def load_camera_positions_from_arrays(ids, lon, lat):
    from geofence.cameras import CameraPositions

    return CameraPositions(np.array(ids, dtype=object), np.array(lon), np.array(lat))


def test_camera_table_with_conflicting_positions_is_refused(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("camera_id,lat,lon\nA,1,2\nA,1,2\nB,3,4\nB,3,5\n")
    with pytest.raises(Exception, match="camera_id 'B' has 2 different positions"):
        load_camera_positions(f)


# --------------------------------------------------------------------------------------
# Real data (issue #10 figures)


def test_real_osm_cameras_against_active_california_schools(tmp_path):
    """Point sites, footprint 0: 167 cameras / 99 schools within 150 m, 480 / 288 within 300 m."""
    out, summ = tmp_path / "p.csv", tmp_path / "s.json"
    args = [
        "cameras",
        str(SAMPLE / "osm_alpr_nodes_global.geojson.gz"),
        "--layers",
        str(SAMPLE / "ca_public_schools.toml"),
    ]
    args += [
        "--policy",
        str(SAMPLE / "schools_footprint0.toml"),
        "--distance-m",
        "150,300",
        "--format",
        "csv",
    ]
    args += ["--out", str(out), "--summary", str(summ)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(summ.read_text())
    school = doc["by_category"]["school"]
    assert school["sites_fenced"] == 10_613
    assert (school["150"]["cameras"], school["150"]["sites"]) == (167, 99)
    assert (school["300"]["cameras"], school["300"]["sites"]) == (480, 288)
    assert (
        doc["cameras_in"]
        == 44_595
        == doc["cameras_near"] + doc["cameras_not_near"] + doc["cameras_rejected"]
    )
    assert doc["policy"]["categories"]["school"]["footprint_m"] == 0.0
    rows = list(csv.DictReader(out.open()))
    grape = [
        r
        for r in rows
        if r["site_name"] == "Grapeland Elementary"
        and (float(r["lon"]), float(r["lat"])) == (-117.523342, 34.1207984)
    ]
    assert len(grape) == 1 and float(grape[0]["within_m"]) == 300.0
    d = float(grape[0]["distance_m"])
    assert round(d, 2) == 299.98
    # the oracle, from the school's coordinates in the layer file
    with gzip.open(SAMPLE / "ca_public_schools_active_2018.csv.gz", "rt") as fh:
        school_row = next(r for r in csv.DictReader(fh) if r["School"] == "Grapeland Elementary")
    want = oracle.point_distance(
        [-117.523342], [34.1207984], float(school_row["Longitude"]), float(school_row["Latitude"])
    )[0]
    assert abs(d - want) < 1e-3 and want < 300.0


# --------------------------------------------------------------------------------------
# Benchmark smoke


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "r.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "cameras.py"),
        "--sites",
        "200",
        "--limit",
        "3000",
        "--repeat",
        "1",
    ]
    cmd += ["--data", str(tmp_path), "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    r = json.loads(out.read_text())
    assert r["cameras"] == 3000 and "| geofence |" in res.stdout and "| geopandas |" in res.stdout
    for tool in ("geofence", "geopandas"):
        assert r[tool]["pairs"] == r["pairs_both"] + r[f"pairs_only_{tool}"]


def test_cameras_command_has_help():
    res = CliRunner().invoke(cli, ["cameras", "--help"])
    assert res.exit_code == 0 and "--camera-table" in res.output and "--distance-m" in res.output
    res = CliRunner().invoke(cli, ["scan", "--help"])
    assert "--cameras" in res.output


def test_parse_headings_is_per_distinct_value():
    values = np.array(["90"] * 1000 + ["abc"] * 10 + [None] * 5, dtype=object)
    h = parse_headings(values)
    assert (h.status == Headings.PARSED).sum() == 1000 and (
        h.status == Headings.UNPARSED
    ).sum() == 10


def test_log_without_coordinate_columns_is_placed_by_the_camera_table(tmp_path):
    """OpenALPR-style logs carry a camera id and no lat/lon columns at all (issue #10)."""
    layer, lon, lat, heads, _ops = _world(tmp_path)
    cams = _cameras_file(tmp_path, lon, lat, heads)
    table = tmp_path / "table.csv"
    res = CliRunner().invoke(
        cli, ["cameras", str(cams), "--layers", str(layer), "--camera-table", str(table)]
    )
    assert res.exit_code == 0, res.output
    pos = {r["camera_id"]: (r["lat"], r["lon"]) for r in csv.DictReader(table.open())}
    cam = np.random.default_rng(5).integers(0, len(lon), 300)
    with_xy = ["read_id,timestamp,lat,lon,camera_id"]
    ids_only = ["read_id,timestamp,camera_id"]
    for i, c in enumerate(cam.tolist()):
        y, x = pos[f"c{c}"]
        with_xy.append(f"r{i},2025-03-01T12:00:00Z,{y},{x},c{c}")
        ids_only.append(f"r{i},2025-03-01T12:00:00Z,c{c}")
    ids_only.append("r999,2025-03-01T12:00:00Z,unknown")  # not in the table: rejected
    (tmp_path / "a.csv").write_text("\n".join(with_xy) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(ids_only) + "\n")
    out = {}
    for name, extra in (("a", []), ("b", ["--cameras", str(table)])):
        o, s = tmp_path / f"{name}.out.csv", tmp_path / f"{name}.s.json"
        args = ["scan", str(tmp_path / f"{name}.csv"), "--layers", str(layer), "--format", "csv"]
        res = CliRunner().invoke(cli, [*args, "--out", str(o), "--summary", str(s), *extra])
        assert res.exit_code == 0, res.output
        rows = list(csv.DictReader(o.open()))
        out[name] = ({r["read_id"]: r["distance_m"] for r in rows}, json.loads(s.read_text()))
    assert out["a"][0] and out["a"][0] == out["b"][0]
    assert out["b"][1]["rejected_by_reason"] == {"missing_position": 1}
    # without a camera table the same log is one clear error
    res = CliRunner().invoke(cli, ["scan", str(tmp_path / "b.csv"), "--layers", str(layer)])
    assert res.exit_code != 0 and "latitude" in res.output and "Traceback" not in res.output
    # and the Python API takes it too
    import geofence

    gdf = geofence.scan(tmp_path / "b.csv", [layer], cameras=table)
    assert sorted(gdf["read_id"]) == sorted(out["a"][0])


def test_json_and_msgspec_read_the_same_cameras_and_rejects(tmp_path, monkeypatch):
    """msgspec is a speed-up only: every record reads as json reads it, odd ones included."""
    import dataclasses

    import geofence.cameras as cameras_mod

    odd = [
        _feature(-122.27, 37.8, camera_id=" padded ", direction="NE", operator=""),
        _feature(-122.27, 37.8, **{"@id": "node/12", "camera:direction": 90, "manufacturer": 7}),
        {"type": "Feature", "id": 5, "properties": None, "geometry": {"coordinates": [1, 2]}},
        {"type": "Feature", "properties": {"osm_id": "x"}, "geometry": {"type": "Point"}},
        {"type": "Feature", "properties": [], "geometry": {"type": "Point", "coordinates": [3]}},
        {"type": "Feature", "properties": {"operator": ["a", "b"]}, "geometry": "nowhere"},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [True, 37.8]}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.2, 37.8, 12.5]}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [None, 37.8]}},
        ["not", "a", "feature"],
        "text",
        None,
    ]
    plain = _write_fc(tmp_path / "odd.geojson", odd)
    special = tmp_path / "special.geojson"  # a NaN literal and 1e400: json only
    special.write_text(
        '{"type": "FeatureCollection", "features": ['
        '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [NaN, 1]}},'
        '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1e400, 1]}},'
        '{"type": "Feature", "id": 1180591620717411303424, "geometry": '
        '{"type": "Point", "coordinates": [-122.1, 37.7]}}]}'
    )
    bigint = tmp_path / "bigint.geojson"  # a 70-bit id stays exact (orjson made it a float)
    bigint.write_text(special.read_text().replace("NaN", "1").replace("1e400", "2"))
    bom = tmp_path / "bom.geojson"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())

    def read(path):
        cams, rej, inputs = read_cameras(path)
        return (
            {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(cams).items()},
            dataclasses.asdict(rej),
            [dataclasses.asdict(i) for i in inputs],
        )

    files = (plain, special, bom, bigint)
    fast = {p.name: read(p) for p in files}
    assert cameras_mod._fast_json(plain.read_bytes()) is not None  # the fast path was taken
    assert cameras_mod._fast_json(bigint.read_bytes()) is not None
    assert cameras_mod._fast_json(special.read_bytes()) is None
    monkeypatch.setattr(cameras_mod, "_fast_json", lambda data: None)
    slow = {p.name: read(p) for p in files}
    assert fast == slow
    assert fast["bigint.geojson"][0]["camera_id"][-1] == "bigint:1180591620717411303424"
    cams, rej, _ = fast["odd.geojson"]
    assert cams["camera_id"][:2] == ["padded", "osm:node/12"]
    assert cams["heading"][:2] == ["NE", "90"] and cams["manufacturer"][1] == "7"
    # The same as the reader of session 7 (one list pass per field) gave for these records.
    assert cams["row"] == [1, 2, 8]
    assert list(zip(rej["row"], rej["reason"], strict=True)) == [
        (3, "not_a_point"),
        (4, "missing_position"),
        (5, "bad_position"),
        (6, "missing_position"),
        (7, "bad_position"),
        (9, "missing_position"),
        (10, "malformed_record"),
        (11, "malformed_record"),
        (12, "malformed_record"),
    ]
    assert rej["camera_id"][:2] == ["odd:5", "odd:x"]


def test_link_prefilter_keeps_every_camera_with_a_neighbour_in_reach():
    """_may_link is a pre-filter: it may keep too many cameras, never drop a linked one."""
    from geofence.cameras import _may_link

    rng = np.random.default_rng(11)
    for lat0, link_m in ((0.0, 30.0), (47.6, 30.0), (70.0, 10.0), (-33.9, 100.0)):
        n = 400
        side_m = 60 * link_m  # about a third of the cameras have a neighbour within link_m
        lon = 10.0 + rng.uniform(0, 1, n) * side_m / (111_320 * np.cos(np.radians(lat0)))
        lat = lat0 + rng.uniform(0, 1, n) * side_m / 110_574
        i, j = np.triu_indices(n, 1)
        d = GEOD.inv(lon[i], lat[i], lon[j], lat[j])[2]
        linked = np.zeros(n, dtype=bool)
        linked[i[d <= link_m]] = True
        linked[j[d <= link_m]] = True
        kept = np.zeros(n, dtype=bool)
        kept[_may_link(lon, lat, link_m)] = True
        assert linked.sum() > 10 and (~linked).sum() > 10  # both kinds present
        assert not (linked & ~kept).any(), (lat0, link_m)
        assert kept.sum() < n  # it does filter


def test_site_prefilter_keeps_every_site_within_reach_of_a_camera():
    """_near_cameras is a pre-filter: it may keep far sites, never drop one in reach."""
    from geofence.cameras import Cameras, _near_cameras

    rng = np.random.default_rng(12)
    reach_m = 450.0
    # cameras on one side of grid-cell corners (0.05 deg cells; NE, SE, NW, NE, SW), so
    # that the cells across the edges are empty; beside the antimeridian and a pole
    anchors = [(-122.25, 37.8, 1, 1), (-122.2, 37.75, 1, -1), (-117.5, 34.1, -1, 1)]
    anchors += [(-180.0, 64.0, 1, 1), (10.0, 89.95, -1, -1)]
    off = np.abs(rng.normal(0, 0.002, (len(anchors), 40)))
    lon = np.concatenate([x + sx * o for (x, _, sx, _), o in zip(anchors, off, strict=True)])
    lat = np.concatenate([y + sy * o for (_, y, _, sy), o in zip(anchors, off, strict=True)])
    lon = (lon + 180.0) % 360.0 - 180.0
    n = len(lon)
    none = np.full(n, None, dtype=object)
    cams = Cameras(
        camera_id=np.arange(n).astype(str).astype(object),
        lon=lon,
        lat=lat,
        source=np.full(n, "t", dtype=object),
        row=np.arange(1, n + 1),
        **dict.fromkeys(("operator", "manufacturer", "camera_type", "heading"), none),
        heading_source=none,
    )
    # sites: points and small boxes, most within ~2 km of a camera, some tens of km off
    k = 3000
    at = rng.integers(0, n, k)
    spread = np.where(rng.random(k) < 0.8, 0.006, 0.3)
    sx = (lon[at] + rng.normal(0, 1, k) * spread + 180.0) % 360.0 - 180.0
    sy = np.clip(lat[at] + rng.normal(0, 0.6, k) * spread, -89.9999, 89.9999)
    geoms = np.where(
        rng.random(k) < 0.5,
        shapely.points(sx, sy),
        shapely.box(sx, sy, np.minimum(sx + 0.0005, 180.0), np.minimum(sy + 0.0005, 90.0)),
    )
    covered = rng.random(k) < 0.9
    kept = _near_cameras(geoms, covered, np.full(k, reach_m), cams)
    near = np.zeros(k, dtype=bool)
    for i in np.flatnonzero(covered):  # the oracle: geodesic to the nearest vertex
        x, y = shapely.get_coordinates(geoms[i]).T
        d = GEOD.inv(np.repeat(x, n), np.repeat(y, n), np.tile(lon, len(x)), np.tile(lat, len(x)))[
            2
        ]
        near[i] = (d <= reach_m).any()
    assert near.sum() > 100 and (covered & ~near).sum() > 100  # both kinds present
    assert not (near & ~kept).any()
    assert not (kept & ~covered).any()
    assert kept.sum() < covered.sum()  # it does filter


@pytest.mark.parametrize("columns", [None, {"camera_id": "ref", "direction": "heading"}])
def test_the_typed_path_reads_what_the_general_path_reads(tmp_path, monkeypatch, columns):
    """A FeatureCollection of cameras takes the typed decode (issue #10 benchmark); it must
    give exactly the general reader's cameras, whatever the tags hold."""
    import dataclasses

    import geofence.cameras as cameras_mod

    kept = [
        _feature(-122.27, 37.8, camera_id=" padded ", direction="NE", operator="", ref="r1"),
        _feature(-122.27, 37.8, **{"@id": "node/12", "camera:direction": 90, "manufacturer": 7}),
        {"type": "Feature", "id": 5, "properties": None, "geometry": _feature(1, 2)["geometry"]},
        _feature(3, 4, osm_id="x", id="p", heading=" 270 ", operator=["a", "b"], ref=None),
        _feature(-122.2, 37.8, **{"camera:type": {"k": 1}, "direction": "  ", "ref": 12.5}),
        {**_feature(-122.2, 37.8, direction="S"), "id": 1.5, "bbox": [0, 0, 1, 1]},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.2, 37.8, 12.5]}},
        {"geometry": {"coordinates": [7, 8], "type": "Point"}, "type": "Feature", "x": {}},
    ]
    plain = _write_fc(tmp_path / "plain.geojson", kept)
    dup = tmp_path / "dup.geojson"  # a repeated key: the last one counts, as in json
    dup.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
        '{"direction": "N", "direction": "E"}, "geometry": {"type": "Point", "coordinates": [1, 1]}}]}'
    )
    bom = tmp_path / "bom.geojson"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    bigint = tmp_path / "bigint.geojson"  # a 70-bit id: json.dumps writes it as an integer
    big = {"type": "Feature", "id": 2**70, "geometry": {"type": "Point", "coordinates": [1, 2]}}
    _write_fc(bigint, [*kept[:2], big])
    one_reject = _write_fc(tmp_path / "reject.geojson", [*kept, _feature(None, 37.8)])
    files = (plain, dup, bom, bigint, one_reject)

    def read(path):
        cams, rej, inputs = read_cameras(path, columns=columns)
        return (
            {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(cams).items()},
            dataclasses.asdict(rej),
            [dataclasses.asdict(i) for i in inputs],
        )

    typed = {p.name: read(p) for p in files}
    for p in (plain, dup, bom):  # these took the typed path
        assert cameras_mod._read_point_collection(p.read_bytes(), p, columns or {}) is not None
    # a file with a reject is worded by the general path
    assert cameras_mod._read_point_collection(one_reject.read_bytes(), one_reject, {}) is None
    monkeypatch.setattr(cameras_mod, "_read_point_collection", lambda *a: None)
    general = {p.name: read(p) for p in files}
    assert typed == general
    cams = typed["plain.geojson"][0]
    assert len(cams["row"]) == len(kept)
    if columns:
        assert cams["camera_id"][:2] == ["r1", "osm:node/12"]
        assert cams["heading"][3] == "270" and cams["camera_id"][4] == "12.5"
    else:
        assert cams["camera_id"][:4] == ["padded", "osm:node/12", "plain:5", "plain:p"]
        assert cams["operator"][3] == '["a", "b"]' and cams["camera_type"][4] == '{"k": 1}'
        assert typed["dup.geojson"][0]["heading"] == ["E"]


def test_prepare_audit_gives_what_reading_then_building_gives(tmp_path):
    """prepare_audit reads the cameras on a thread beside the layers (issue #10
    benchmark): the same cameras, engine, pairs and installations as one after the other."""
    from geofence.cameras import prepare_audit

    layer, lon, lat, heads, _ops = _world(tmp_path)
    lon = np.concatenate([lon, lon[:5] + 0.0001])  # neighbours within 30 m: installations
    lat = np.concatenate([lat, lat[:5]])
    cams_file = _cameras_file(tmp_path, lon, lat, heads + heads[:5])
    cams, _rejected, inputs = read_cameras([cams_file])
    engine, sources, fenced = build_camera_engine([layer], cameras=cams, distances_m=[150.0, 300.0])
    want = audit_cameras(cams, engine, distances_m=[150.0, 300.0])
    got_in = prepare_audit([cams_file], [layer], distances_m=[150.0, 300.0], link_m=30.0)
    assert got_in.cameras._installations  # linked on the reading thread
    got = audit_cameras(got_in.cameras, got_in.engine, distances_m=[150.0, 300.0])
    assert np.array_equal(got_in.cameras.camera_id, cams.camera_id)
    assert [i.sha256 for i in got_in.inputs] == [i.sha256 for i in inputs]
    assert [s.sha256 for s in got_in.layer_sources] == [s.sha256 for s in sources]
    assert got_in.sites_fenced == fenced and len(got_in.sites) == 2
    assert len(want.pair_camera) > 10 and len(set(want.installation_id.tolist())) < len(cams)
    for name in ("pair_camera", "pair_site", "pair_distance_m", "pair_view", "installation_id"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_prepare_audit_reports_a_camera_file_error_before_a_layer_error(tmp_path):
    from geofence.cameras import prepare_audit

    empty = tmp_path / "empty.geojson"
    empty.write_text("")
    broken_layer = tmp_path / "broken.geojson"
    broken_layer.write_text('{"type": "FeatureCollection", "features": []}')
    layer, *_ = _world(tmp_path)
    with pytest.raises(ReadFormatError, match=r"empty\.geojson: the camera file is empty"):
        prepare_audit([empty], [broken_layer])
    with pytest.raises(ReadFormatError, match="the camera file is empty"):
        prepare_audit([empty], [layer])
    good = _cameras_file(tmp_path, [-122.27], [37.8])
    with pytest.raises(LayerError, match=r"broken\.geojson"):
        prepare_audit([good], [broken_layer])
