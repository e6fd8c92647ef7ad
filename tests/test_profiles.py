"""Format profiles and vendor read formats (issue #8): ``geofence.profiles``.

Real data: the Seattle sample in ``sample_data/seattle`` and, when ``../shared`` is
beside the checkout, the vendor's documented OpenALPR samples (not redistributed: no
licence). Everything else is made here, from the field names of the vendor documentation;
expected values are read back from the documents with the standard ``json`` module, not
from geofence.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import zoneinfo
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import shapely
from click.testing import CliRunner

from geofence import profiles as P
from geofence.cli import cli
from geofence.errors import ReadFormatError, ResourceLimitError, UsageError
from geofence.model import NO_TIME, REASON_CODE, REJECT_REASONS
from geofence.reads import open_reads

ROOT = Path(__file__).resolve().parents[1]
SEATTLE = ROOT / "sample_data/seattle/spd_alpr_2021-10-01_04.csv.gz"
SHARED = ROOT.parent / "shared/data/openalpr-json-schema"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared/data/openalpr-json-schema not present"
)
BOM = b"\xef\xbb\xbf"
LAT0, LON0 = 47.6320, -122.3530
CROP = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="  # stands where a base64 JPEG would be


def us_of_ms(ms: int) -> int:
    return int(ms) * 1000


def read_all(stream) -> dict:
    """Every batch of a stream, concatenated (arrays and the columns table)."""
    with stream:
        batches = list(stream)
    out = {
        k: np.concatenate([getattr(b, k) for b in batches]) if batches else np.zeros(0)
        for k in ("row", "lon", "lat", "time_us", "reason")
    }
    out["columns"] = pa.concat_tables([b.columns for b in batches]) if batches else None
    out["stream"] = stream
    out["batches"] = batches
    return out


def reasons(r: dict) -> list[str]:
    return [REJECT_REASONS[c] for c in r["reason"].tolist()]


def group_doc(
    i: int, *, lat=LAT0, lon=LON0, epoch_ms=1_727_769_600_000, preview=None, **extra
) -> dict:
    """An alpr_group document with the fields of the vendor's "JSON Group Results"."""
    doc = {
        "version": 2,
        "data_type": "alpr_group",
        "epoch_start": epoch_ms + i * 1000,
        "epoch_end": epoch_ms + i * 1000 + 900,
        "agent_uid": "agent-1",
        "camera_id": 100 + i % 3,
        "best_uuid": f"agent-1-{100 + i % 3}-{epoch_ms + i * 1000}",
        "best_plate_number": f"TST{i:04d}",
        "best_region": "us-wa",
        "best_confidence": 90.5,
        "travel_direction": 12.5,
        "gps_latitude": lat,
        "gps_longitude": lon,
        "vehicle_crop_jpeg": CROP,
        "best_plate": {"plate": f"TST{i:04d}", "plate_crop_jpeg": CROP, "region": "us-wa"},
        "candidates": [{"plate": f"TST{i:04d}", "confidence": 90.5}],
    }
    if preview is not None:
        doc["is_preview"] = preview
    doc.update(extra)
    return doc


def heartbeat_doc(ts_ms: int, streams: list[tuple]) -> dict:
    return {
        "data_type": "heartbeat",
        "agent_uid": "agent-1",
        "timestamp": ts_ms,
        "video_streams": [
            {
                "camera_id": c,
                "camera_name": name,
                "gps_latitude": lat,
                "gps_longitude": lon,
                "last_update": ts_ms,
            }
            for c, name, lon, lat in streams
        ],
    }


def results_doc(n: int = 2, epoch_ms: int = 1_727_769_661_000) -> dict:
    return {
        "version": 2,
        "data_type": "alpr_results",
        "epoch_time": epoch_ms,
        "uuid": f"agent-1-101-{epoch_ms}",
        "camera_id": 101,
        "agent_uid": "agent-1",
        "results": [
            {
                "plate": f"RES{k}",
                "confidence": 91.0,
                "plate_index": k,
                "region": "us-wa",
                "plate_crop_jpeg": CROP,
            }
            for k in range(n)
        ],
    }


def write(tmp_path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def jsonl(docs) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


# ---------------------------------------------------------------------------------------
# The Seattle log: uwchr-spd reproduces the reader as the README quick start runs it


def test_uwchr_spd_reproduces_the_quick_start_reading():
    a = read_all(P.open_profile_reads(SEATTLE, "uwchr-spd"))
    b = read_all(open_reads(SEATTLE, timezone="America/Los_Angeles"))
    for k in ("row", "lon", "lat", "time_us", "reason"):
        np.testing.assert_array_equal(a[k], b[k])
    assert [x.raw[x.offsets[0] : x.offsets[-1]] for x in a["batches"]] == [
        x.raw[x.offsets[0] : x.offsets[-1]] for x in b["batches"]
    ]
    for name in ("plate", "timestamp", "camera_id"):
        assert a["columns"].column(name).equals(b["columns"].column(name))
    # SOURCE.md of the shared copy: 35,486 reads, 8,768 with NA positions
    assert len(a["row"]) == 35_486
    assert reasons(a).count("missing_position") == 8_768
    cols = a["columns"]
    ok = a["reason"] == 0
    assert set(cols.column("position_source").filter(pa.array(ok)).to_pylist()) == {"geocoded"}
    assert cols.column("position_source").filter(pa.array(~ok)).null_count == int((~ok).sum())
    assert set(cols.column("camera_type").to_pylist()) == {"mobile"}
    assert a["stream"].profile["name"] == "uwchr-spd"


def test_uwchr_spd_scan_summary_matches_the_timezone_run(tmp_path):
    layers = [
        str(ROOT / "sample_data/seattle/schools.toml"),
        str(ROOT / "sample_data/seattle/hospitals.toml"),
    ]
    base = [
        "scan",
        str(SEATTLE),
        *(arg for p in layers for arg in ("--layers", p)),
        "--deterministic",
        "-q",
    ]
    r1 = CliRunner().invoke(
        cli, [*base, "--profile", "uwchr-spd", "--summary", str(tmp_path / "a.json")]
    )
    r2 = CliRunner().invoke(
        cli, [*base, "--timezone", "America/Los_Angeles", "--summary", str(tmp_path / "b.json")]
    )
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    for k in (
        "reads_in",
        "reads_clean",
        "reads_flagged",
        "reads_rejected",
        "rejected_by_reason",
        "flagged_by_category",
    ):
        assert a[k] == b[k]
    assert a["reads_in"] == a["reads_clean"] + a["reads_flagged"] + a["reads_rejected"]
    assert a["parameters"]["timezone"] == "America/Los_Angeles"  # the profile's zone
    assert a["inputs"][0]["profile"]["name"] == "uwchr-spd"


def test_explicit_timezone_overrides_the_profile(tmp_path):
    p = write(
        tmp_path,
        "spd.csv",
        "dt|device|plate_hash|lon|lat\n10/01/2021 - 00:02:08|D1|h1|-122.3|47.6\n",
    )
    la = read_all(P.open_profile_reads(p, "uwchr-spd"))
    utc = read_all(P.open_profile_reads(p, "uwchr-spd", timezone="UTC"))
    local = dt.datetime(2021, 10, 1, 0, 2, 8, tzinfo=zoneinfo.ZoneInfo("America/Los_Angeles"))
    assert la["time_us"][0] == int(local.timestamp()) * 1_000_000
    assert (
        utc["time_us"][0]
        == int(dt.datetime(2021, 10, 1, 0, 2, 8, tzinfo=dt.UTC).timestamp()) * 1_000_000
    )


# ---------------------------------------------------------------------------------------
# OpenALPR: the vendor's documented samples (when ../shared is present), with and without BOM


@needs_shared
@pytest.mark.parametrize("variant", ["plain", "bom", "bom+gzip"])
def test_openalpr_group_vendor_sample(tmp_path, variant):
    raw = (SHARED / "alpr_group_sample.json").read_bytes()
    doc = json.loads(raw)
    data = (BOM + raw) if "bom" in variant else raw
    if "gzip" in variant:
        data = gzip.compress(data)
    p = write(tmp_path, "group.json", data)
    r = read_all(P.open_profile_reads(p, "openalpr-group", keep_raw=False))
    assert r["stream"].bom == ("bom" in variant)
    assert reasons(r) == [""]
    assert r["lat"][0] == doc["gps_latitude"] and r["lon"][0] == doc["gps_longitude"]
    assert r["time_us"][0] == us_of_ms(doc["epoch_start"])
    row = r["columns"].to_pylist()[0]
    assert row["plate"] == doc["best_plate_number"]
    assert row["read_id"] == doc["best_uuid"]
    assert row["plate_region"] == doc["best_region"]
    assert row["camera_id"] == str(doc["camera_id"])
    assert row["agent"] == doc["agent_uid"]
    assert float(row["direction"]) == doc["travel_direction"]
    assert float(row["confidence"]) == doc["best_confidence"]
    assert row["position_source"] == "gps"
    assert not any("jpeg" in c for c in r["columns"].column_names)
    assert r["stream"].sha256 == hashlib.sha256(data).hexdigest()


@needs_shared
@pytest.mark.parametrize("bom", [False, True])
def test_openalpr_results_vendor_sample(tmp_path, bom):
    raw = (SHARED / "alpr_results_sample.json").read_bytes()
    doc = json.loads(raw)
    p = write(tmp_path, "results.json", (BOM if bom else b"") + raw)
    r = read_all(P.open_profile_reads(p, "openalpr-results", keep_raw=False))
    res = doc["results"]
    assert len(r["row"]) == len(res)
    assert reasons(r) == ["missing_position"] * len(res)  # a frame has no position
    assert r["columns"].column("plate").to_pylist() == [x["plate"] for x in res]
    assert r["columns"].column("read_id").to_pylist() == [
        f"{doc['uuid']}:{x['plate_index']}" for x in res
    ]
    assert list(r["time_us"]) == [us_of_ms(doc["epoch_time"])] * len(res)
    assert any("carries no positions" in n for n in r["stream"].notes)


@needs_shared
@pytest.mark.parametrize("bom", [False, True])
def test_openalpr_heartbeat_vendor_sample_camera_table(tmp_path, bom):
    raw = (SHARED / "heartbeat_sample.json").read_bytes()
    doc = json.loads(raw)
    p = write(tmp_path, "hb.json", (BOM if bom else b"") + raw)
    out = tmp_path / "cams.csv"
    res = CliRunner().invoke(cli, ["reads", "cameras", str(p), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["camera_id", "lon", "lat"]
    vs = doc["video_streams"][0]
    cam, lon, lat = lines[1].split(",")[:3]
    assert (cam, float(lon), float(lat)) == (
        str(vs["camera_id"]),
        vs["gps_longitude"],
        vs["gps_latitude"],
    )


@needs_shared
def test_parse_openalpr_on_vendor_bodies():
    body = BOM + (SHARED / "alpr_group_sample.json").read_bytes()
    b = P.parse_openalpr(body)
    assert len(b) == 1 and b.reason[0] == 0
    assert b.columns.column("plate").to_pylist() == [json.loads(body[3:])["best_plate_number"]]
    cams = P.parse_openalpr_heartbeat((SHARED / "heartbeat_sample.json").read_bytes())
    assert cams.column("camera_id").to_pylist() == ["1234"]
    with pytest.raises(ReadFormatError, match="not a read"):
        P.parse_openalpr((SHARED / "heartbeat_sample.json").read_bytes())


# ---------------------------------------------------------------------------------------
# OpenALPR documents made here: containers, rules of the profile, counts


def _group_docs() -> list:
    return [
        group_doc(0),
        group_doc(1, lat=0, lon=0),  # no GPS fix
        group_doc(2, preview=True),
        group_doc(3, preview=False),
        group_doc(4, epoch_start="soon"),  # a time that is not epoch milliseconds
        group_doc(5, lat="NA"),
        heartbeat_doc(1_727_769_600_000, []),  # another data_type: skipped
        [1, 2],  # not an object: malformed
        group_doc(6, lat=95.0),
    ]


def _expected_reasons() -> list[str]:
    return [
        "",
        "missing_position",
        "",
        "",
        "bad_timestamp",
        "missing_position",
        "malformed_row",
        "position_out_of_range",
    ]


@pytest.mark.parametrize("layout", ["lines", "array", "documents", "documents-pretty"])
def test_openalpr_group_containers_give_the_same_reads(tmp_path, layout):
    docs = _group_docs()
    if layout == "lines":
        text = jsonl(docs)
    elif layout == "array":
        text = json.dumps(docs, indent=1)
    elif layout == "documents":
        text = "".join(json.dumps(d) for d in docs)  # concatenated, no separator
    else:
        text = "\n".join(json.dumps(d, indent=2) for d in docs)
    r = read_all(
        P.open_profile_reads(write(tmp_path, "g.json", text), "openalpr-group", keep_raw=False)
    )
    assert reasons(r) == _expected_reasons()
    assert list(r["row"]) == list(range(1, 9))
    cols = r["columns"]
    assert cols.column("preview").to_pylist()[2:4] == ["true", "false"]
    # crops never copied out: no column holds them
    for c in cols.columns:
        assert CROP not in [v for v in c.to_pylist() if isinstance(v, str)]
    assert r["columns"].column("plate").to_pylist()[6] is None  # malformed row: no values
    assert r["time_us"][0] == us_of_ms(docs[0]["epoch_start"])
    notes = " ".join(r["stream"].notes)
    assert "heartbeat 1" in notes and "preview" in notes
    assert r["stream"].layout == ("documents" if layout.startswith("documents") else layout)


def test_json_lines_keeps_going_after_a_broken_line(tmp_path):
    docs = [group_doc(i) for i in range(4)]
    lines = [json.dumps(d) for d in docs]
    lines[1] = lines[1][:40]  # cut short
    text = "\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n"  # and a blank line
    r = read_all(
        P.open_profile_reads(write(tmp_path, "g.jsonl", text), "openalpr-group", keep_raw=False)
    )
    assert reasons(r) == ["", "malformed_row", "", ""]


def test_zero_zero_is_null_island_without_the_profile_rule(tmp_path):
    text = (
        (ROOT / "layers/profiles/openalpr-group.toml")
        .read_text()
        .replace("zero_is_missing = true", "zero_is_missing = false")
    )
    prof = write(
        tmp_path, "g.toml", text.replace('name = "openalpr-group"', 'name = "group-strict"')
    )
    r = read_all(
        P.open_profile_reads(
            write(tmp_path, "g.json", jsonl([group_doc(1, lat=0, lon=0)])), prof, keep_raw=False
        )
    )
    assert reasons(r) == ["null_island"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_incremental_json_values_any_chunking(chunk):
    docs = [group_doc(i) for i in range(3)] + [
        {"n": 12345678901234567890},
        {"s": 'a\u00e9\u4e2d"}{'},
    ]
    text = json.dumps(docs).encode("utf-8")
    chunks = iter([text[i : i + chunk] for i in range(0, len(text), chunk)])
    got = list(P._json_values(chunks, "utf-8", 1 << 20, "t", array=True))
    assert got == docs
    text = "\n  ".join(json.dumps(d) for d in docs).encode("utf-8") + b"123"
    chunks = iter([text[i : i + chunk] for i in range(0, len(text), chunk)])
    assert list(P._json_values(chunks, "utf-8", 1 << 20, "t", array=False)) == [*docs, 123]


def test_broken_json_document_is_one_error(tmp_path):
    p = write(
        tmp_path, "g.json", json.dumps(group_doc(0), indent=2) + '\n{"data_type": "alpr_group", '
    )
    with pytest.raises(ReadFormatError, match="not valid JSON near line"):
        read_all(P.open_profile_reads(p, "openalpr-group", keep_raw=False))
    p = write(tmp_path, "h.json", "[" + json.dumps(group_doc(0)))
    with pytest.raises(ReadFormatError, match="not closed"):
        read_all(P.open_profile_reads(p, "openalpr-group", keep_raw=False))


def test_json_document_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "MAX_DOCUMENT_BYTES", 1000)
    big = group_doc(0, vehicle_crop_jpeg="A" * 5000)
    p = write(tmp_path, "g.json", json.dumps([big]))
    with pytest.raises(ResourceLimitError, match="over the limit of 1,000"):
        read_all(P.open_profile_reads(p, "openalpr-group", keep_raw=False, max_line_bytes=100))


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_batch_and_chunk_sizes_never_change_results(tmp_path, monkeypatch, batch_size):
    monkeypatch.setattr(P, "_CHUNK_RECORDS", 4)
    docs = [
        group_doc(i, lat=0 if i % 5 == 0 else LAT0, lon=0 if i % 5 == 0 else LON0)
        for i in range(23)
    ]
    p = write(tmp_path, "g.jsonl", jsonl(docs))
    r = read_all(P.open_profile_reads(p, "openalpr-group", keep_raw=False, batch_size=batch_size))
    assert list(r["row"]) == list(range(1, 24))
    assert reasons(r) == ["missing_position" if i % 5 == 0 else "" for i in range(23)]
    assert r["columns"].column("plate").to_pylist() == [d["best_plate_number"] for d in docs]


def test_counts_add_up_in_scan(tmp_path):
    sq = shapely.Point(LON0, LAT0).buffer(0.0005)
    sites = write(
        tmp_path,
        "sites.geojson",
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"site_id": "s1", "name": "School", "category": "school"},
                        "geometry": shapely.geometry.mapping(sq),
                    }
                ],
            }
        ),
    )
    p = write(tmp_path, "g.jsonl", jsonl([*_group_docs(), group_doc(9, lat=LAT0 + 0.05)]))
    res = CliRunner().invoke(
        cli,
        [
            "scan",
            str(p),
            "--profile",
            "openalpr-group",
            "--layers",
            str(sites),
            "--summary",
            str(tmp_path / "s.json"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["reads_in"] == 9 == s["reads_clean"] + s["reads_flagged"] + s["reads_rejected"]
    assert s["reads_clean"] == 1 and s["reads_flagged"] == 3
    want = {r: _expected_reasons().count(r) for r in _expected_reasons() if r}
    assert s["rejected_by_reason"] == want


def test_results_positioned_by_a_camera_table_from_heartbeats(tmp_path):
    hb = write(
        tmp_path,
        "hb.json",
        json.dumps(
            [
                heartbeat_doc(1000, [(101, "north", LON0, LAT0), (102, "nofix", 0, 0)]),
                heartbeat_doc(2000, [(101, "north", LON0 + 0.001, LAT0)]),  # moved: the latest wins
            ]
        ),
    )
    cams = P.write_camera_table([hb], tmp_path / "cams.csv")
    assert cams.without_position == {"102": "missing_position"}
    assert cams.moved == ["101"]
    rows = (tmp_path / "cams.csv").read_text().splitlines()
    assert rows[1].split(",")[:3] == ["101", repr(LON0 + 0.001), repr(LAT0)]
    r = read_all(
        P.open_profile_reads(
            write(tmp_path, "f.json", json.dumps(results_doc())), "openalpr-results", keep_raw=False
        )
    )
    assert r["columns"].column("camera_id").to_pylist() == [
        "101",
        "101",
    ]  # what a camera table joins on


def test_heartbeat_profile_is_not_for_scan(tmp_path):
    p = write(tmp_path, "hb.json", json.dumps(heartbeat_doc(1, [])))
    with pytest.raises(UsageError, match="reads cameras"):
        P.open_profile_reads(p, "openalpr-heartbeat", keep_raw=False)


# ---------------------------------------------------------------------------------------
# Broken profiles and missing fields: one error, exit 1


BROKEN = [
    ("name = 'x'\n[container\n", "not valid TOML"),
    ("name = 'x'\ncolour = 'red'\n", "unknown key"),
    ("name = 'x'\n[fields]\nlat='a'\nlon='b'\nspeed = 'c'\n", "unknown field 'speed'"),
    ("name = 'x'\n[container]\ndelimiter = '||'\n[fields]\nlat='a'\nlon='b'\n", "one character"),
    (
        "name = 'x'\n[fields]\nlat='a'\nlon='b'\n[timestamp]\nformat = 'dd.mm.yyyy'\n",
        "strptime pattern",
    ),
    (
        "name = 'x'\n[fields]\nlat='a'\nlon='b'\n[timestamp]\nunit = 'ms'\n",
        "goes with format = 'epoch'",
    ),
    ("name = 'x'\n[fields]\nplate='p'\n", "needs lat and lon"),
    ("name = 'x'\n[container]\ntype = 'xml'\n[fields]\nlat='a'\nlon='b'\n", "records"),
    (
        "name = 'x'\ndrop = ['*_jpeg']\n[container]\ntype='json'\n[fields]\nlat='a'\nlon='b'\nplate='crop_jpeg'\n",
        "drop list",
    ),
    (
        "name = 'x'\n[container]\nencoding = 'klingon'\n[fields]\nlat='a'\nlon='b'\n",
        "not a known encoding",
    ),
    ("name = 'X Y'\n", "name"),
    ("name = 'x'\n[fields]\nlat='a'\nlon='b'\n[timestamp]\ntimezone = 'Mars/Base'\n", "IANA"),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_broken_profiles(tmp_path, text, message):
    p = write(tmp_path, "bad.toml", text)
    with pytest.raises(UsageError, match=message):
        P.load_profile(p)
    log = write(tmp_path, "r.csv", "a,b\n1,2\n")
    res = CliRunner().invoke(cli, ["scan", str(log), "--profile", str(p), "--layers", str(log)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geofence: error: profile bad.toml")


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(UsageError, match="uwchr-spd"):
        P.load_profile("no-such-vendor")


def test_profile_naming_a_missing_column(tmp_path):
    log = write(
        tmp_path,
        "spd.csv",
        "dt|device|plate|lon|lat\n10/01/2021 - 00:02:08|D1|ZZSECRET1|-122.3|47.6\n",
    )
    with pytest.raises(ReadFormatError) as exc:
        P.open_profile_reads(log, "uwchr-spd")
    msg = str(exc.value)
    assert "profile uwchr-spd" in msg and "field plate" in msg and "'plate_hash'" in msg
    assert "dt, device, plate, lon, lat" in msg  # the columns found
    res = CliRunner().invoke(
        cli,
        [
            "scan",
            str(log),
            "--profile",
            "uwchr-spd",
            "--layers",
            str(SEATTLE.parent / "schools.toml"),
        ],
    )
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert "field plate" in res.output


def test_missing_column_error_never_shows_a_data_row(tmp_path):
    # no header: the first row is data and must not reach the message
    log = write(tmp_path, "spd.csv", "10/01/2021 - 00:02:08|D1|ZZSECRET1|-122.3|47.6\n")
    with pytest.raises(ReadFormatError) as exc:
        P.open_profile_reads(log, "uwchr-spd")
    assert "ZZSECRET" not in str(exc.value) and "header" in str(exc.value)


def test_json_profile_naming_a_missing_key(tmp_path):
    doc = group_doc(0)
    del doc["gps_latitude"]
    with pytest.raises(ReadFormatError) as exc:
        P.open_profile_reads(
            write(tmp_path, "g.json", json.dumps(doc)), "openalpr-group", keep_raw=False
        )
    msg = str(exc.value)
    assert "profile openalpr-group" in msg and "field lat" in msg and "gps_longitude" in msg
    assert "TST0000" not in msg  # keys only, never values


def test_optional_field_may_be_absent(tmp_path):
    r = read_all(
        P.open_profile_reads(
            write(tmp_path, "g.json", json.dumps(group_doc(0))), "openalpr-group", keep_raw=False
        )
    )
    assert r["columns"].column("preview").to_pylist() == [None]  # is_preview is optional


# ---------------------------------------------------------------------------------------
# --columns overrides a profile's field


def test_columns_override_a_delimited_field(tmp_path):
    log = write(
        tmp_path,
        "spd.csv",
        "dt|device|plate_hash|alt_plate|lon|lat|region\n10/01/2021 - 00:02:08|D1|h1|h2|-122.3|47.6|WA\n",
    )
    a = read_all(
        P.open_profile_reads(
            log, "uwchr-spd", columns={"plate": "alt_plate", "plate_region": "region"}
        )
    )
    assert a["columns"].column("plate").to_pylist() == ["h2"]
    assert a["columns"].column("plate_region").to_pylist() == ["WA"]
    res = CliRunner().invoke(
        cli,
        [
            "scan",
            str(log),
            "--profile",
            "uwchr-spd",
            "--columns",
            "plate=alt_plate",
            "--layers",
            str(SEATTLE.parent / "schools.toml"),
            "--format",
            "csv",
            "-o",
            "-",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    with pytest.raises(UsageError, match="unknown field"):
        P.open_profile_reads(log, "uwchr-spd", columns={"speed": "x"})


def test_columns_override_a_json_path(tmp_path):
    doc = group_doc(0, extra_pos={"lat": LAT0 + 1, "lon": LON0 + 1})
    p = write(tmp_path, "g.json", json.dumps(doc))
    r = read_all(
        P.open_profile_reads(
            p,
            "openalpr-group",
            keep_raw=False,
            columns={"lat": "extra_pos.lat", "lon": "extra_pos.lon"},
        )
    )
    assert (r["lat"][0], r["lon"][0]) == (LAT0 + 1, LON0 + 1)
    with pytest.raises(UsageError, match="never copies"):
        P.open_profile_reads(
            p, "openalpr-group", keep_raw=False, columns={"plate": "vehicle_crop_jpeg"}
        )


# ---------------------------------------------------------------------------------------
# Value rules a profile declares: markers, time formats, encodings, BOM, XML


def _profile(tmp_path, body: str, name: str = "t") -> Path:
    return write(tmp_path, f"{name}.toml", f'name = "{name}"\n' + body)


def test_extra_null_markers(tmp_path):
    prof = _profile(
        tmp_path,
        '[container]\nnull_markers = ["-", "NA"]\n[fields]\nlat="y"\nlon="x"\nplate="p"\ntimestamp="time"\n',
    )
    log = write(
        tmp_path,
        "r.csv",
        "y,x,p,time\n-,1,-,2025-01-01T00:00:00Z\n1,1,A,-\n1,1,NA,x\n abc ,1,B,2025-01-01T00:00:00Z\n",
    )
    r = read_all(P.open_profile_reads(log, prof))
    assert reasons(r) == ["missing_position", "missing_timestamp", "bad_timestamp", "bad_position"]
    assert r["columns"].column("plate").to_pylist() == [None, "A", None, "B"]
    plain = read_all(open_reads(log))  # without the profile "-" is a bad value
    assert reasons(plain)[:2] == ["bad_position", "bad_timestamp"]


def test_strptime_time_format_delimited(tmp_path):
    # the "yyyy:MM:dd" date form the issue names for Genetec exports, in local time
    prof = _profile(
        tmp_path,
        '[fields]\nlat="y"\nlon="x"\ntimestamp="t"\n[timestamp]\nformat = "%Y:%m:%d %H:%M:%S"\ntimezone = "America/New_York"\n',
    )
    cells = [
        "2024:07:04 12:30:00",
        "2024:02:30 01:00:00",
        "",
        "2024:03:10 02:30:00",
        "2024:11:03 01:30:00",
        "2024-07-04T12:30:00Z",
    ]
    log = write(tmp_path, "r.csv", "y,x,t\n" + "".join(f"40.7,-74.0,{c}\n" for c in cells))
    r = read_all(P.open_profile_reads(log, prof))
    # 02/30 does not exist; 02:30 on 2024-03-10 is in the spring-forward gap; an ISO cell is not the form
    assert reasons(r) == [
        "",
        "bad_timestamp",
        "missing_timestamp",
        "bad_timestamp",
        "",
        "bad_timestamp",
    ]
    ny = zoneinfo.ZoneInfo("America/New_York")
    assert (
        r["time_us"][0] == int(dt.datetime(2024, 7, 4, 12, 30, tzinfo=ny).timestamp()) * 1_000_000
    )
    # fall-back hour: the earlier instant (EDT), as the reader does
    assert (
        r["time_us"][4]
        == int(dt.datetime(2024, 11, 3, 1, 30, fold=0, tzinfo=ny).timestamp()) * 1_000_000
    )
    assert r["columns"].column("timestamp").to_pylist()[0] == "2024-07-04T16:30:00Z"
    assert r["time_us"][1] == NO_TIME


def test_epoch_microseconds_delimited(tmp_path):
    prof = _profile(
        tmp_path,
        '[fields]\nlat="y"\nlon="x"\ntimestamp="t"\n[timestamp]\nformat = "epoch"\nunit = "us"\n',
    )
    log = write(tmp_path, "r.csv", "y,x,t\n1,1,1727769600123456\n1,1,nope\n")
    r = read_all(P.open_profile_reads(log, prof))
    assert reasons(r) == ["", "bad_timestamp"]
    assert r["time_us"][0] == 1_727_769_600_123_456


def test_epoch_seconds_declared_in_json(tmp_path):
    prof = _profile(
        tmp_path,
        '[container]\ntype="json"\n[fields]\nlat="lat"\nlon="lon"\ntimestamp="t"\n[timestamp]\nformat="epoch"\nunit="s"\n',
    )
    # 1.7e12 "seconds" would be the year 55,000: declared seconds are not guessed as ms
    p = write(
        tmp_path,
        "r.jsonl",
        jsonl([{"lat": 1, "lon": 1, "t": 1_700_000_000}, {"lat": 1, "lon": 1, "t": 1.7e15}]),
    )
    r = read_all(P.open_profile_reads(p, prof, keep_raw=False))
    assert reasons(r) == ["", "bad_timestamp"]
    assert r["time_us"][0] == 1_700_000_000_000_000


def test_non_utf8_encoding(tmp_path):
    prof = _profile(
        tmp_path,
        '[container]\nencoding = "cp1252"\n[fields]\nlat="y"\nlon="x"\ncamera_name="cam"\n',
    )
    data = "y,x,cam\n1,1,Caf\u00e9 \u20ac\n".encode("cp1252")
    log = write(tmp_path, "r.csv", data)
    r = read_all(P.open_profile_reads(log, prof, keep_raw=False))
    assert r["columns"].column("camera_name").to_pylist() == ["Caf\u00e9 \u20ac"]
    assert r["stream"].sha256 == hashlib.sha256(data).hexdigest()  # of the stored bytes
    with pytest.raises(UsageError, match="UTF-8"):
        P.open_profile_reads(log, prof, keep_raw=True)


@pytest.mark.parametrize(
    ("rule", "bom", "ok"),
    [
        ("required", False, False),
        ("required", True, True),
        ("forbidden", True, False),
        ("optional", True, True),
    ],
)
def test_bom_rules(tmp_path, rule, bom, ok):
    prof = _profile(tmp_path, f'[container]\nbom = "{rule}"\n[fields]\nlat="y"\nlon="x"\n')
    log = write(tmp_path, "r.csv", (BOM if bom else b"") + b"y,x\n1,1\n")
    if ok:
        assert len(read_all(P.open_profile_reads(log, prof))["row"]) == 1
    else:
        with pytest.raises(ReadFormatError, match="byte order mark"):
            P.open_profile_reads(log, prof)


XML = """<?xml version="1.0" encoding="UTF-8"?>
<Export xmlns="urn:example:reads">
  <Header><Site>North</Site></Header>
  <Reads>
    <Read id="r1"><Plate>XML001</Plate><UTCDate>2024:10:01 08:00:00</UTCDate>
      <GPS><Latitude>47.6320</Latitude><Longitude>-122.3530</Longitude></GPS><Camera name="Cam A"/></Read>
    <Read id="r2"><Plate>XML002</Plate><UTCDate>2024:10:01 08:00:61</UTCDate>
      <GPS><Latitude>47.6321</Latitude><Longitude>-122.3531</Longitude></GPS><Camera name="Cam A"/></Read>
    <Read id="r3"><Plate></Plate><UTCDate>2024:10:01 08:02:00</UTCDate>
      <GPS><Latitude></Latitude><Longitude>-122.3531</Longitude></GPS></Read>
  </Reads>
</Export>
"""
XML_PROFILE = """[container]
type = "xml"
records = "Read"
[fields]
read_id = "@id"
plate = "Plate"
timestamp = "UTCDate"
lat = "GPS/Latitude"
lon = "GPS/Longitude"
camera_id = "Camera/@name"
[timestamp]
format = "%Y:%m:%d %H:%M:%S"
timezone = "UTC"
"""


def test_xml_records(tmp_path):
    prof = _profile(tmp_path, 'optional = ["camera_id"]\n' + XML_PROFILE, "xml-reads")
    r = read_all(P.open_profile_reads(write(tmp_path, "r.xml", XML), prof, keep_raw=False))
    assert reasons(r) == ["", "bad_timestamp", "missing_position"]
    assert r["columns"].column("read_id").to_pylist() == ["r1", "r2", "r3"]
    assert r["columns"].column("plate").to_pylist() == ["XML001", "XML002", None]
    assert r["columns"].column("camera_id").to_pylist() == ["Cam A", "Cam A", None]
    assert (
        r["time_us"][0] == int(dt.datetime(2024, 10, 1, 8, tzinfo=dt.UTC).timestamp()) * 1_000_000
    )
    assert (r["lat"][0], r["lon"][0]) == (47.6320, -122.3530)


def test_xml_errors(tmp_path):
    prof = _profile(tmp_path, XML_PROFILE, "xml-reads")
    with pytest.raises(ReadFormatError, match="field camera_id"):
        P.open_profile_reads(
            write(tmp_path, "r.xml", XML.replace(' name="Cam A"', "")), prof, keep_raw=False
        )
    with pytest.raises(ReadFormatError, match="not well-formed XML"):
        read_all(
            P.open_profile_reads(
                write(tmp_path, "s.xml", XML[: XML.index('<Read id="r2"')] + "<Read"),
                prof,
                keep_raw=False,
            )
        )


# ---------------------------------------------------------------------------------------
# The sharing filter and verify with a profile


def test_filter_and_verify_with_a_delimited_profile(tmp_path):
    sq = shapely.Point(-122.3, 47.6).buffer(0.0005)
    sites = write(
        tmp_path,
        "sites.geojson",
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"site_id": "s1", "name": "School", "category": "school"},
                        "geometry": shapely.geometry.mapping(sq),
                    }
                ],
            }
        ),
    )
    rows = [
        "10/01/2021 - 00:02:08|D1|h1|-122.3|47.6",
        "10/01/2021 - 00:03:08|D1|h2|-122.2|47.6",
        "10/01/2021 - 00:04:08|D1|h3|NA|NA",
    ]
    log = write(
        tmp_path, "spd.csv", "dt|device|plate_hash|lon|lat\r\n" + "\r\n".join(rows) + "\r\n"
    )
    out = tmp_path / "shared.csv"
    args = [
        "filter",
        str(log),
        "--profile",
        "uwchr-spd",
        "--layers",
        str(sites),
        "--recipient",
        "King County SO",
        "--recipient-type",
        "state-public",
        "--recipient-state",
        "WA",
        "--sender-state",
        "WA",
        "--purpose",
        "case 1",
        "--user",
        "jdoe",
        "-o",
        str(out),
        "--withheld",
        str(tmp_path / "w.csv"),
        "--manifest",
        str(tmp_path / "m.json"),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == ("dt|device|plate_hash|lon|lat\r\n" + rows[1] + "\r\n").encode()
    assert json.loads((tmp_path / "m.json").read_text())["input"]["profile"]["name"] == "uwchr-spd"
    res = CliRunner().invoke(
        cli,
        [
            "verify",
            str(out),
            "--manifest",
            str(tmp_path / "m.json"),
            "--layers",
            str(sites),
            "--profile",
            "uwchr-spd",
        ],
    )
    assert res.exit_code == 0, res.output


def test_filter_refuses_json_records(tmp_path):
    p = write(tmp_path, "g.jsonl", jsonl([group_doc(0)]))
    res = CliRunner().invoke(
        cli,
        [
            "filter",
            str(p),
            "--profile",
            "openalpr-group",
            "--layers",
            str(SEATTLE.parent / "schools.toml"),
            "--recipient",
            "X",
            "--recipient-type",
            "state-public",
            "--recipient-state",
            "WA",
            "--sender-state",
            "WA",
            "--purpose",
            "p",
            "--user",
            "u",
            "-o",
            str(tmp_path / "o"),
            "--withheld",
            str(tmp_path / "w"),
            "--manifest",
            str(tmp_path / "m"),
        ],
    )
    assert res.exit_code == 1
    assert "byte for byte" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------
# Sniffing and the reads command group


def test_sniff_seattle_proposes_a_profile_that_reads_like_uwchr_spd(tmp_path):
    found = P.sniff(SEATTLE)
    assert found.matches == ["uwchr-spd"]
    assert 'delimiter = "|"' in found.toml and 'timestamp = "dt"' in found.toml
    # the first NA position is past the part sniffed; in a small file it is seen
    small = write(
        tmp_path,
        "s.csv",
        "lat,lon,time\n47.6,-122.3,2025-01-01T00:00:00Z\nNA,NA,2025-01-01T00:00:00Z\n",
    )
    assert 'null_markers = ["NA"]' in P.sniff(small).toml
    prof = write(tmp_path, "sniffed.toml", found.toml)
    a = read_all(
        P.open_profile_reads(SEATTLE, prof, timezone="America/Los_Angeles", keep_raw=False)
    )
    b = read_all(P.open_profile_reads(SEATTLE, "uwchr-spd", keep_raw=False))
    for k in ("lon", "lat", "time_us", "reason"):
        np.testing.assert_array_equal(a[k], b[k])


def test_sniff_json_and_xml(tmp_path):
    found = P.sniff(write(tmp_path, "g.jsonl", jsonl([group_doc(0), group_doc(1)])))
    assert "openalpr-group" in found.matches and 'layout = "lines"' in found.toml
    assert 'lat = "gps_latitude"' in found.toml and 'unit = "ms"' in found.toml
    P.load_profile(write(tmp_path, "g.toml", found.toml))
    found = P.sniff(write(tmp_path, "f.json", json.dumps(results_doc())))
    assert 'records = "results"' in found.toml and 'timestamp = "$.epoch_time"' in found.toml
    assert P.load_profile(write(tmp_path, "f.toml", found.toml)).position == "camera"
    found = P.sniff(write(tmp_path, "r.xml", XML))
    assert (
        'records = "Read"' in found.toml
        and 'plate = "Plate"' in found.toml
        and 'read_id = "@id"' in found.toml
    )
    assert "XML001" not in found.toml  # names, never values


def test_sniff_headerless_file_names_no_cells(tmp_path):
    p = write(
        tmp_path,
        "r.csv",
        "ZZSECRET1,47.6,-122.3,2025-01-01T00:00:00Z\nZZSECRET2,47.6,-122.3,2025-01-01T00:00:00Z\n",
    )
    res = CliRunner().invoke(cli, ["reads", "sniff", str(p)])
    assert res.exit_code == 1 and "ZZSECRET" not in res.output and "header" in res.output


def test_reads_profiles_list_and_show():
    res = CliRunner().invoke(cli, ["reads", "profiles", "list"])
    assert res.exit_code == 0
    names = [line.split()[0] for line in res.output.splitlines()]
    assert names == sorted(
        ["generic-csv", "openalpr-group", "openalpr-heartbeat", "openalpr-results", "uwchr-spd"]
    )
    res = CliRunner().invoke(cli, ["reads", "profiles", "show", "uwchr-spd"])
    assert (
        res.exit_code == 0 and res.output == (ROOT / "layers/profiles/uwchr-spd.toml").read_text()
    )


def test_every_shipped_profile_reads_its_sample():
    """Each shipped profile names a sample in the repository, and reads it without error."""
    for prof in P.list_profiles():
        assert prof.sample, prof.name
        path = ROOT / prof.sample
        assert path.is_file(), prof.sample
        if prof.kind == "cameras":
            assert P.camera_table([path], profile=prof).table.num_rows >= 1
        else:
            r = read_all(P.open_profile_reads(path, prof, keep_raw=False))
            assert len(r["row"]) >= 1
            assert r["reason"].max() < REASON_CODE["no_time_for_time_bound_fence"]


def test_generic_csv_is_the_plain_reader(tmp_path):
    log = write(
        tmp_path, "r.csv", "Latitude;Longitude;Plate;Timestamp\n47.6;-122.3;ABC;1727769600\n"
    )
    a = read_all(P.open_profile_reads(log, "generic-csv"))
    b = read_all(open_reads(log))
    for k in ("row", "lon", "lat", "time_us", "reason"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["columns"].column("plate").to_pylist() == ["ABC"]


def test_in_memory_batches_take_no_profile():
    from geofence.scan import iter_reads

    with pytest.raises(UsageError, match="in-memory"):
        iter_reads(pa.table({"lat": [1.0], "lon": [1.0]}), profile="generic-csv")


def test_stdin_through_a_profile(monkeypatch):
    data = jsonl([group_doc(0), group_doc(1)]).encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    r = read_all(P.open_profile_reads("-", "openalpr-group", keep_raw=False))
    assert len(r["row"]) == 2 and r["stream"].path_label == "<stdin>"
