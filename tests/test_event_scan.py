"""Event fences through the engine and scan: windows, pads, untimed reads (issue #7)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from geofence.cli import cli


def test_demonstration_fence_is_active_only_in_its_padded_window(tmp_path):
    route = {"type": "LineString", "coordinates": [[-122.272, 37.80], [-122.268, 37.80]]}
    events = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": route,
                "properties": {
                    "site_id": "march-1",
                    "name": "March",
                    "category": "demonstration",
                    "start": "2025-05-01T14:00:00",
                    "end": "2025-05-01T16:00:00",
                    "timezone": "America/Los_Angeles",
                },
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-122.30, 37.85]},
                "properties": {"site_id": "school-1", "name": "School", "category": "school"},
            },
        ],
    }
    layer = tmp_path / "events.geojson"
    layer.write_text(json.dumps(events))
    # 14:00 PDT is 21:00Z; the default pad is 60 min either side (policy.md section B)
    rows = [
        ("inside", "2025-05-01T22:00:00Z", 37.8005),
        ("pad_before", "2025-05-01T20:00:00Z", 37.8005),
        ("before_pad", "2025-05-01T19:59:59Z", 37.8005),
        ("after_pad", "2025-05-02T00:00:01Z", 37.8005),
        ("far", "2025-05-01T22:00:00Z", 37.81),
        ("untimed", "", 37.8005),
    ]
    reads = tmp_path / "reads.csv"
    reads.write_text(
        "read_id,timestamp,lat,lon\n" + "".join(f"{r},{t},{lat},-122.27\n" for r, t, lat in rows)
    )
    out, summ = tmp_path / "o.geojson", tmp_path / "s.json"
    res = CliRunner().invoke(
        cli, ["scan", str(reads), "--layers", str(layer), "-o", str(out), "--summary", str(summ)]
    )
    assert res.exit_code == 0, res.output
    flagged = {f["properties"]["read_id"] for f in json.loads(out.read_text())["features"]}
    assert flagged == {"inside", "pad_before"}
    s = json.loads(summ.read_text())
    # the empty time is rejected as missing before the fence is looked at
    assert s["reads_in"] == 6 and s["reads_rejected"] == 1


def test_read_without_time_column_near_event_is_rejected(tmp_path):
    layer = tmp_path / "e.geojson"
    layer.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [-122.27, 37.80]},
                        "properties": {
                            "site_id": "w",
                            "name": "Wedding",
                            "category": "ceremony",
                            "start": "2025-06-01T10:00:00-07:00",
                            "end": "2025-06-01T12:00:00-07:00",
                        },
                    }
                ],
            }
        )
    )
    reads = tmp_path / "r.csv"
    reads.write_text("lat,lon\n37.8001,-122.27\n37.9,-122.27\n")
    summ = tmp_path / "s.json"
    res = CliRunner().invoke(
        cli, ["scan", str(reads), "--layers", str(layer), "--summary", str(summ)]
    )
    assert res.exit_code == 0, res.output
    s = json.loads(summ.read_text())
    assert s["rejected_by_reason"] == {"no_time_for_time_bound_fence": 1}
    assert s["reads_clean"] == 1


def _scan(tmp_path, features, rows, *extra):
    layer = tmp_path / "events.geojson"
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    reads = tmp_path / "reads.csv"
    reads.write_text(
        "read_id,timestamp,lat,lon\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    out = tmp_path / "o.geojson"
    res = CliRunner().invoke(
        cli, ["scan", str(reads), "--layers", str(layer), "-o", str(out), *extra]
    )
    assert res.exit_code == 0, res.output
    return {
        f["properties"]["read_id"]: f["properties"] for f in json.loads(out.read_text())["features"]
    }


def test_report_shows_the_window_that_matched_in_utc_and_local_time(tmp_path):
    march = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-122.27, 37.80]},
        "properties": {
            "site_id": "march-1",
            "name": "March",
            "category": "demonstration",
            "start": "2025-05-01T14:00:00",
            "end": "2025-05-01T16:00:00",
            "timezone": "America/Los_Angeles",
        },
    }
    vigil = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-122.27, 37.80]},
        "properties": {
            "site_id": "vigil",
            "name": "Vigil",
            "category": "ceremony",
            "hours": "Mo-Fr 07:00-09:00",
            "timezone": "America/Los_Angeles",
        },
    }
    school = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-122.30, 37.85]},
        "properties": {"site_id": "school-1", "name": "School", "category": "school"},
    }
    rows = [
        ("march", "2025-05-01T22:00:00Z", 37.8003, -122.27),
        # Monday 2025-11-03 08:00 PST (the week after the fall-back change) = 16:00Z
        ("vigil", "2025-11-03T16:00:00Z", 37.8003, -122.27),
        ("school", "2025-05-01T22:00:00Z", 37.8503, -122.30),
    ]
    props = _scan(tmp_path, [march, vigil, school], rows)
    m = props["march"]
    assert m["event_site_id"] == "march-1"
    assert (m["window_start_utc"], m["window_end_utc"]) == (
        "2025-05-01T21:00:00Z",
        "2025-05-01T23:00:00Z",
    )
    assert (m["window_start_local"], m["window_end_local"]) == (
        "2025-05-01T14:00:00-07:00",
        "2025-05-01T16:00:00-07:00",
    )
    v = props["vigil"]
    assert v["event_site_id"] == "vigil" and v["window"] == "Mo-Fr 07:00-09:00"
    assert (v["window_start_utc"], v["window_end_utc"]) == (
        "2025-11-03T15:00:00Z",
        "2025-11-03T17:00:00Z",
    )
    assert v["window_start_local"] == "2025-11-03T07:00:00-08:00"
    # a permanent site's read carries no window
    assert props["school"]["event_site_id"] == "" and props["school"]["window_start_utc"] == ""


def test_event_buffer_m_grows_the_route_and_distances_are_to_the_grown_route(tmp_path):
    import numpy as np
    import oracle
    import shapely

    from geofence.policy import load_policy

    line = [[-122.272, 37.80], [-122.268, 37.80]]
    feat = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": line},
        "properties": {
            "site_id": "march",
            "name": "March",
            "category": "demonstration",
            "start": "2025-05-01T14:00:00",
            "end": "2025-05-01T16:00:00",
            "timezone": "America/Los_Angeles",
            "buffer_m": 50,
        },
    }
    fence_m = load_policy(None).categories["demonstration"].buffer_m
    # reads due north of the route's middle, at oracle distances either side of 50 m + fence
    lats = 37.80 + np.array([0.0001, 0.0008, 0.0009, 0.0015, 0.0020, 0.0030])
    lon = np.full(len(lats), -122.27)
    d = oracle.distance(lon, lats, shapely.LineString(line))
    rows = [(f"r{i}", "2025-05-01T22:00:00Z", f"{la:.7f}", "-122.27") for i, la in enumerate(lats)]
    props = _scan(tmp_path, [feat], rows)
    want = {f"r{i}" for i in range(len(lats)) if d[i] - 50 <= fence_m - 0.01}
    assert set(props) == want and 0 < len(want) < len(lats)
    for i in range(len(lats)):
        if f"r{i}" in props:
            assert abs(props[f"r{i}"]["distance_m"] - max(d[i] - 50, 0.0)) < 1e-3


def test_bad_buffer_m_is_one_line_naming_the_site(tmp_path):
    layer = tmp_path / "e.geojson"
    layer.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [-122.27, 37.80]},
                        "properties": {
                            "site_id": "w1",
                            "name": "Wedding",
                            "category": "ceremony",
                            "buffer_m": "wide",
                            "start": "2025-06-01T10:00:00-07:00",
                            "end": "2025-06-01T12:00:00-07:00",
                        },
                    }
                ],
            }
        )
    )
    reads = tmp_path / "r.csv"
    reads.write_text("lat,lon\n37.8001,-122.27\n")
    res = CliRunner().invoke(cli, ["scan", str(reads), "--layers", str(layer)])
    assert res.exit_code != 0
    assert "w1" in res.output and "buffer_m" in res.output and "Traceback" not in res.output
