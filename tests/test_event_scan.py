"""Event fences through the engine and scan: windows, pads, untimed reads (issue #7)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from geofence.cli import cli


def test_demonstration_fence_is_active_only_in_its_padded_window(tmp_path):
    route = {"type": "LineString", "coordinates": [[-122.272, 37.80], [-122.268, 37.80]]}
    events = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": route, "properties": {
            "site_id": "march-1", "name": "March", "category": "demonstration",
            "start": "2025-05-01T14:00:00", "end": "2025-05-01T16:00:00", "timezone": "America/Los_Angeles"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.30, 37.85]}, "properties": {
            "site_id": "school-1", "name": "School", "category": "school"}},
    ]}
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
    reads.write_text("read_id,timestamp,lat,lon\n" + "".join(f"{r},{t},{lat},-122.27\n" for r, t, lat in rows))
    out, summ = tmp_path / "o.geojson", tmp_path / "s.json"
    res = CliRunner().invoke(cli, ["scan", str(reads), "--layers", str(layer), "-o", str(out), "--summary", str(summ)])
    assert res.exit_code == 0, res.output
    flagged = {f["properties"]["read_id"] for f in json.loads(out.read_text())["features"]}
    assert flagged == {"inside", "pad_before"}
    s = json.loads(summ.read_text())
    # the empty time is rejected as missing before the fence is looked at
    assert s["reads_in"] == 6 and s["reads_rejected"] == 1


def test_read_without_time_column_near_event_is_rejected(tmp_path):
    layer = tmp_path / "e.geojson"
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.27, 37.80]}, "properties": {
            "site_id": "w", "name": "Wedding", "category": "ceremony",
            "start": "2025-06-01T10:00:00-07:00", "end": "2025-06-01T12:00:00-07:00"}}]}))
    reads = tmp_path / "r.csv"
    reads.write_text("lat,lon\n37.8001,-122.27\n37.9,-122.27\n")
    summ = tmp_path / "s.json"
    res = CliRunner().invoke(cli, ["scan", str(reads), "--layers", str(layer), "--summary", str(summ)])
    assert res.exit_code == 0, res.output
    s = json.loads(summ.read_text())
    assert s["rejected_by_reason"] == {"no_time_for_time_bound_fence": 1}
    assert s["reads_clean"] == 1
