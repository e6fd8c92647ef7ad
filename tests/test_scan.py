"""The scan end to end: counts, formats, determinism, privacy, exit codes (issues #3, #6)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import oracle
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SEATTLE = ROOT / "sample_data" / "seattle"
LAT0, LON0 = 37.80, -122.27


def _square(lon, lat, half_m):
    dlat = half_m / 111_000
    dlon = dlat / np.cos(np.radians(lat))
    return shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three sites and 2,000 reads around them, with a few bad rows."""
    d = tmp_path_factory.mktemp("world")
    school = _square(LON0, LAT0, 60)
    clinic = _square(LON0 + 0.006, LAT0, 20)
    church = shapely.Point(LON0, LAT0 + 0.005)
    feats = [
        {
            "type": "Feature",
            "properties": {"site_id": "sch", "name": "School", "category": "school"},
            "geometry": shapely.geometry.mapping(school),
        },
        {
            "type": "Feature",
            "properties": {"site_id": "cli", "name": "Clinic, East", "category": "medical"},
            "geometry": shapely.geometry.mapping(clinic),
        },
        {
            "type": "Feature",
            "properties": {"site_id": "chu", "name": "Church", "category": "worship"},
            "geometry": shapely.geometry.mapping(church),
        },
    ]
    sites = d / "sites.geojson"
    sites.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    rng = np.random.default_rng(11)
    n = 2000
    lon = LON0 + rng.uniform(-0.006, 0.012, n)
    lat = LAT0 + rng.uniform(-0.005, 0.009, n)
    cams = rng.integers(0, 40, n)
    lon[: n // 2] = lon[cams[: n // 2]]  # fixed cameras repeat positions
    lat[: n // 2] = lat[cams[: n // 2]]
    lines = ["read_id,plate,timestamp,lat,lon,camera_id,agency"]
    for i in range(n):
        lines.append(
            f"r{i},PL{i % 97:04d},2025-03-01T12:{i % 60:02d}:00Z,{lat[i]:.7f},{lon[i]:.7f},CAM{cams[i]},OPD"
        )
    lines[5] = "r4,SECRET1,2025-03-01T12:00:00Z,NA,NA,CAM1,OPD"
    lines[9] = "r8,SECRET2,not a time,37.8,-122.27,CAM1,OPD"
    lines[13] = 'r12,SECRET3,2025-03-01T12:00:00Z,0,0,CAM1,"OPD, east"'
    reads = d / "reads.csv"
    reads.write_text("\n".join(lines) + "\n")
    lat_ok = np.array(
        [
            float(x.split(",")[3]) if x.split(",")[3] not in ("NA", "0") else np.nan
            for x in lines[1:]
        ]
    )
    lon_ok = np.array(
        [
            float(x.split(",")[4]) if x.split(",")[4] not in ("NA", "0") else np.nan
            for x in lines[1:]
        ]
    )
    # independent expectation from the geodesic oracle (footprints: worship 30 m)
    d_sch = oracle.distance(np.nan_to_num(lon_ok), np.nan_to_num(lat_ok), school)
    d_cli = oracle.distance(np.nan_to_num(lon_ok), np.nan_to_num(lat_ok), clinic)
    d_chu = np.maximum(
        oracle.point_distance(np.nan_to_num(lon_ok), np.nan_to_num(lat_ok), church.x, church.y)
        - 30,
        0,
    )
    valid = np.isfinite(lat_ok)
    valid[8] = False  # bad time
    expect = valid & ((d_sch <= 150) | (d_cli <= 150) | (d_chu <= 150))
    return {
        "dir": d,
        "sites": sites,
        "reads": reads,
        "expect_rows": set((np.flatnonzero(expect) + 1).tolist()),
        "n": n,
    }


def _scan(world, *args, **kw):
    runner = CliRunner()
    return runner.invoke(
        cli,
        ["scan", str(world["reads"]), "--layers", str(world["sites"]), *args],
        catch_exceptions=False,
        **kw,
    )


def test_scan_flags_what_the_oracle_flags_and_counts_add_up(world, tmp_path):
    out, summ = tmp_path / "r.geojson", tmp_path / "s.json"
    res = _scan(world, "--out", str(out), "--summary", str(summ))
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    rows = {f["properties"]["row"] for f in fc["features"]}
    assert rows == world["expect_rows"]
    s = json.loads(summ.read_text())
    assert (
        s["reads_in"] == world["n"] == s["reads_clean"] + s["reads_flagged"] + s["reads_rejected"]
    )
    assert s["reads_flagged"] == len(world["expect_rows"])
    assert s["rejected_by_reason"] == {"bad_timestamp": 1, "missing_position": 1, "null_island": 1}
    f = fc["features"][0]
    assert f["geometry"]["type"] == "Point" and len(f["geometry"]["coordinates"]) == 2
    props = f["properties"]
    assert props["matches"][0]["site_id"] == props["site_id"]
    assert [m["distance_m"] for m in props["matches"]] == sorted(
        m["distance_m"] for m in props["matches"]
    )
    assert props["packs"] and props["clauses"]


@pytest.mark.parametrize("fmt", ["geojsonseq", "csv"])
def test_other_formats_hold_the_same_reads(world, tmp_path, fmt):
    out = tmp_path / f"r.{fmt}"
    assert _scan(world, "--out", str(out), "--format", fmt).exit_code == 0
    text = out.read_text()
    if fmt == "geojsonseq":
        lines = text.split("\n")[:-1]  # not splitlines(): it splits on RS too
        assert all(line.startswith("\x1e") for line in lines)
        rows = {json.loads(line[1:])["properties"]["row"] for line in lines}
    else:
        import csv
        import io

        recs = list(csv.DictReader(io.StringIO(text)))
        rows = {int(r["row"]) for r in recs}
        assert {"site_id", "distance_m", "matches", "lat", "lon"} <= set(recs[0])
    assert rows == world["expect_rows"]


@settings(max_examples=6, deadline=None)
@given(batch=st.sampled_from([1, 3, 17, 256, 5000]))
def test_batch_size_never_changes_results(world, batch, tmp_path_factory):
    d = tmp_path_factory.mktemp("b")
    a, b = d / "a.csv", d / "b.csv"
    assert _scan(world, "--out", str(a), "--format", "csv").exit_code == 0
    assert (
        _scan(world, "--out", str(b), "--format", "csv", "--batch-size", str(batch)).exit_code == 0
    )
    assert a.read_bytes() == b.read_bytes()


def test_deterministic_outputs_are_byte_identical(world, tmp_path):
    outs = []
    for k in range(2):
        o, s = tmp_path / f"o{k}.geojson", tmp_path / f"s{k}.json"
        assert _scan(world, "--out", str(o), "--summary", str(s), "--deterministic").exit_code == 0
        outs.append((o.read_bytes(), s.read_bytes()))
    assert outs[0] == outs[1]


def test_plates_stay_private(world, tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    out = tmp_path / "o.geojson"
    rej = tmp_path / "rej.csv"
    res = _scan(world, "--out", str(out), "--pseudonymize-plates", str(key), "--rejects", str(rej))
    assert res.exit_code == 0
    assert "SECRET" not in res.stderr and "PL00" not in res.stderr
    text = out.read_text()
    assert "PL00" not in text
    plates = [f["properties"]["plate"] for f in json.loads(text)["features"]]
    assert all(len(p) == 64 for p in plates)
    assert len(set(plates)) < len(plates)  # one plate still links across the report


def test_rejects_file_keeps_rows_and_adds_reason(world, tmp_path):
    rej = tmp_path / "rej.csv"
    assert _scan(world, "--rejects", str(rej)).exit_code == 0
    lines = rej.read_text().splitlines()
    assert lines[0] == "read_id,plate,timestamp,lat,lon,camera_id,agency,reason"
    assert lines[1] == "r4,SECRET1,2025-03-01T12:00:00Z,NA,NA,CAM1,OPD,missing_position"
    assert lines[3] == 'r12,SECRET3,2025-03-01T12:00:00Z,0,0,CAM1,"OPD, east",null_island'
    assert len(lines) == 4


def test_fail_on_flag_exit_code_and_stdout(world):
    res = _scan(world, "--out", "-", "--format", "geojsonseq", "--fail-on-flag", "-q")
    assert res.exit_code == 3
    assert res.stdout.count("\x1e") == len(world["expect_rows"])


def test_bad_layer_is_one_line_without_traceback(world, tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    res = CliRunner().invoke(cli, ["scan", str(world["reads"]), "--layers", str(bad)])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    err = [line for line in res.stderr.splitlines() if line]
    assert len(err) == 1 and "bad.geojson" in err[0]


def test_gzip_and_stdin_give_the_same_report(world, tmp_path):
    gz = tmp_path / "reads.csv.gz"
    gz.write_bytes(gzip.compress(world["reads"].read_bytes()))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    runner = CliRunner()
    r1 = runner.invoke(
        cli, ["scan", str(gz), "--layers", str(world["sites"]), "-o", str(a), "--format", "csv"]
    )
    r2 = runner.invoke(
        cli,
        ["scan", "-", "--layers", str(world["sites"]), "-o", str(b), "--format", "csv"],
        input=world["reads"].read_bytes(),
    )
    assert r1.exit_code == r2.exit_code == 0, r2.output
    assert a.read_bytes() == b.read_bytes()


def test_python_api_returns_geodataframe(world):
    import geofence

    gdf = geofence.scan(str(world["reads"]), [str(world["sites"])])
    assert set(gdf["row"]) == world["expect_rows"]
    assert gdf.crs.to_epsg() == 4326


@pytest.mark.skipif(
    not (SEATTLE / "spd_alpr_2021-10-01_04.csv.gz").exists(), reason="sample data missing"
)
def test_seattle_sample_counts(tmp_path):
    """35,486 reads of which 8,768 have no position (numbers from the data's SOURCE.md)."""
    s = tmp_path / "s.json"
    res = CliRunner().invoke(
        cli,
        [
            "scan",
            str(SEATTLE / "spd_alpr_2021-10-01_04.csv.gz"),
            "--layers",
            str(SEATTLE / "schools.toml"),
            "--timezone",
            "America/Los_Angeles",
            "--summary",
            str(s),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(s.read_text())
    assert doc["reads_in"] == 35_486
    assert doc["rejected_by_reason"] == {"missing_position": 8_768}
    assert doc["reads_flagged"] > 0


def test_summary_label_counts_equal_a_plain_count(monkeypatch):
    """Label counts are summed in Arrow and folded in once; with the pending rows forced
    to compact after every batch they still equal a row-by-row count (issue #5)."""
    from collections import Counter

    import pyarrow as pa

    from geofence import report

    monkeypatch.setattr(report, "_PENDING_ROWS", 1)
    rng = np.random.default_rng(7)
    sites = pa.array([f"S{i}" for i in range(50)])
    summary, want_site, want_cam = report.Summary(), Counter(), Counter()
    for n in (0, 1, 37, 500):
        code = rng.integers(0, 50, n)
        cams = [None if k % 7 == 0 else f"CAM-{k % 11}" for k in rng.integers(0, 100, n)]
        site = pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int32)), sites)
        summary.add(np.zeros(n, np.int8), np.ones(n, bool), site, site, pa.array(cams), cams)
        want_site.update(sites.take(pa.array(code)).to_pylist())
        want_cam.update("(none)" if c is None else c for c in cams)
    doc = summary.counts()
    assert doc["reads_flagged"] == 538
    assert summary.flagged_by_site == want_site
    assert summary.flagged_by_camera == want_cam
    assert summary.flagged_by_agency == want_cam
    assert sum(doc["flagged_by_category"].values()) == 538


def test_batches_sized_by_matches_and_split_output_keep_the_bytes(world, tmp_path, monkeypatch):
    """Batches resized from their matches per read, and output written in pieces of a
    few matches (issue #5: memory at dense sites), give the bytes of one fixed batch."""
    import geofence.scan as gscan

    fixed, fixed_s = tmp_path / "fixed.csv", tmp_path / "fixed.json"
    args = ["--format", "csv", "--deterministic"]
    assert (
        _scan(
            world, "--out", str(fixed), "--summary", str(fixed_s), "--batch-size", "5000", *args
        ).exit_code
        == 0
    )

    sizes = []
    real = gscan.scan_batches

    def counting(batches, engine):
        for res in real(batches, engine):
            sizes.append(len(res.batch))
            yield res

    monkeypatch.setattr(gscan, "scan_batches", counting)
    monkeypatch.setattr(gscan, "SCAN_BATCH", 400)
    monkeypatch.setattr(gscan, "MIN_BATCH", 50)
    monkeypatch.setattr(gscan, "BATCH_MATCHES", 30)
    monkeypatch.setattr(gscan, "OUTPUT_PAIRS", 7)
    out, summ = tmp_path / "adaptive.csv", tmp_path / "adaptive.json"
    assert _scan(world, "--out", str(out), "--summary", str(summ), *args).exit_code == 0
    # a first batch of MIN_BATCH reads starts the output stage early (#13); the next
    # ones are sized from the matches per read
    assert sizes[0] == 50 and len(set(sizes[1:-1])) > 1
    assert sum(sizes) == world["n"]
    assert out.read_bytes() == fixed.read_bytes()
    assert summ.read_bytes() == fixed_s.read_bytes()


def test_batch_size_rule():
    from geofence.scan import BATCH_MATCHES, MIN_BATCH, SCAN_BATCH, _batch_size

    assert _batch_size(0, 1000) == SCAN_BATCH  # nothing matched: the largest batch
    assert _batch_size(800, 1000) == SCAN_BATCH  # sparse (10k sites): unchanged
    assert _batch_size(8 * 1000, 1000) == BATCH_MATCHES // 8  # dense (100k sites)
    assert _batch_size(10**9, 1000) == MIN_BATCH
