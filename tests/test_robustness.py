"""Hostile and broken inputs, crashes mid-run, deterministic and private outputs (issue #6).

The corpus (``CORPUS``) is a table of broken inputs, each made in code, with the outcome
the project promises for it (see ``tests/broken/README.md``):

* ``("error", exit_code, [substrings])``: the command fails with one non-empty line on
  stderr, ``geofence: error: ...``, naming the file, row/feature, field and a fix; no
  traceback (``-v`` shows one), no plate, and no file at any final output path. A
  substring given as a tuple means "any of these".
* ``("rejected", {reason: count}, reads_in[, note])``: the scan succeeds and the summary
  counts every read once: ``reads_in == clean + flagged + rejected`` with the rejected
  reads by reason; ``note`` must appear in ``inputs[0].notes``.
* ``("layer", {"sites": n, "repaired": n, "rejected": n}, [substrings])``: ``geofence
  layers check --json`` loads the layer and reports what it repaired or rejected.

Decisions recorded here: future (2999) and ancient (1900) timestamps are valid times and
are accepted; duplicate ``read_id``s are separate reads, each counted once; an unbalanced
quote runs (RFC 4180) to the end of the file and makes one ``malformed_row``.

The crash tests run ``python -m geofence`` as a subprocess, SIGKILL it at several points
(reads fed through stdin, held open so a run can never finish before it is killed), and
check that no output appears at a final path and that two complete reruns give the same
bytes.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geofence.cli import cli
from geofence.errors import GeofenceError

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "layers" / "policies"
LAT0, LON0 = 37.80, -122.27
HEADER = "read_id,plate,timestamp,lat,lon,camera_id,agency"
SECRET = "ZZSECRET"  # every plate of every input starts with this: it must never reach stderr
TS = "2025-03-01T12:00:00Z"
OUTPUTS = (
    "out.geojson",
    "summary.json",
    "rejects.csv",
    "shared.csv",
    "withheld.csv",
    "manifest.json",
)


# --------------------------------------------------------------------------------------
# Inputs made in code


def row(i: int = 1, lat="37.8", lon="-122.27", ts=TS, sep=",", extra: tuple = ()) -> str:
    """One read (flagged: at the school of ``sites``) with a distinctive plate."""
    return sep.join([f"r{i}", f"{SECRET}{i}", ts, str(lat), str(lon), "C1", "OPD", *extra])


def csv_bytes(*rows: str, header: str = HEADER, nl: str = "\n") -> bytes:
    return (nl.join([header, *rows]) + nl).encode()


def feature(geometry, site_id="s1", category="school") -> dict:
    props = {"site_id": site_id, "name": "Site", "category": category}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def collection(*features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def square(lon=LON0, lat=LAT0, half=0.001) -> list:
    return [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]


def polygon(ring) -> dict:
    return {"type": "Polygon", "coordinates": [ring]}


def circle(n: int) -> list:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.column_stack([LON0 + 0.001 * np.cos(t), LAT0 + 0.001 * np.sin(t)]).tolist()
    return [*ring, ring[0]]


def writes(name: str, data: bytes | str | Callable[[], bytes | str]) -> Callable[[Path], None]:
    """A ``make_input``: write ``data`` (or what calling it gives) to ``d / name``."""

    def make(d: Path) -> None:
        value = data() if callable(data) else data
        path = d / name
        if isinstance(value, str):
            path.write_text(value, encoding="utf-8")
        else:
            path.write_bytes(value)

    return make


def truncated_gzip() -> bytes:
    rng = np.random.default_rng(5)
    lats = LAT0 + rng.uniform(-0.05, 0.05, 20_000)
    data = csv_bytes(*(row(i, f"{v:.7f}") for i, v in enumerate(lats)))
    packed = gzip.compress(data)
    return packed[: len(packed) * 2 // 3]


def corrupt_gzip() -> bytes:
    packed = bytearray(gzip.compress(csv_bytes(*(row(i) for i in range(2000)))))
    packed[40:60] = b"\x00" * 20
    return bytes(packed)


def layer_file(name: str, *, crs: str | None, coords: list) -> Callable[[Path], None]:
    """A GeoPackage or Shapefile with one polygon, with or without a CRS."""

    def make(d: Path) -> None:
        import geopandas as gpd
        import shapely

        gdf = gpd.GeoDataFrame(
            {"site_id": ["s1"], "name": ["Site"], "category": ["school"]},
            geometry=[shapely.Polygon(coords)],
            crs=crs,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "'crs' was not provided": that is the point
            gdf.to_file(d / name)

    return make


def deep_geometry_collection(levels: int = 1000) -> str:
    inner = json.dumps(polygon(square()))
    geom = '{"type":"GeometryCollection","geometries":[' * levels + inner + "]}" * levels
    props = '{"site_id":"s1","name":"Site","category":"school"}'
    return (
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":'
        + props
        + ',"geometry":'
        + geom
        + "}]}"
    )


def pack_with(old: str, new: str) -> Callable[[], str]:
    return lambda: (POLICIES / "dhs-2021.toml").read_text(encoding="utf-8").replace(old, new, 1)


RULES_OK = """state = "ZZ"
title = "Test state"

[[rule]]
id = "public-only"
kind = "allow_only_types"
types = ["state-public"]
citation = "Test Code 1"
"""


def load_rules_of(name: str) -> Callable[[Path], None]:
    """A corpus ``args``: load a recipient rule file with the library (no CLI flag exists)."""

    def call(d: Path) -> None:
        from geofence.jurisdictions import load_rules

        load_rules(d / name)

    return call


# --------------------------------------------------------------------------------------
# The corpus


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # reads | layers | pack | rules | cli
    make_input: Callable[[Path], None]
    args: tuple | Callable[[Path], None]  # CLI arguments ({d}, {sites}) or a library call
    expected: tuple


def scan(name: str, *extra: str) -> tuple:
    """``geofence scan`` of ``d/name`` with every output file."""
    return (
        "scan",
        f"{{d}}/{name}",
        "--layers",
        "{sites}",
        "--out",
        "{d}/out.geojson",
        "--summary",
        "{d}/summary.json",
        "--rejects",
        "{d}/rejects.csv",
        *extra,
    )


def scan_layer(name: str, *extra: str) -> tuple:
    """``geofence scan`` of a good read log against the layer ``d/name``."""
    return (
        "scan",
        "{d}/ok.csv",
        "--layers",
        f"{{d}}/{name}",
        "--out",
        "{d}/out.geojson",
        "--summary",
        "{d}/summary.json",
        *extra,
    )


def both(*makers: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        for m in makers:
            m(d)

    return make


def ok_reads_and(*makers) -> Callable[[Path], None]:
    return both(writes("ok.csv", csv_bytes(row(1), row(2, lat="37.9"))), *makers)


FILTER_ARGS = (
    "--recipient",
    "Test SO",
    "--recipient-type",
    "state-public",
    "--recipient-state",
    "WA",
    "--sender-state",
    "WA",
    "--purpose",
    "burglary 25-1",
    "--user",
    "jdoe",
)


def filter_of(name: str) -> tuple:
    return (
        "filter",
        f"{{d}}/{name}",
        "--layers",
        "{sites}",
        *FILTER_ARGS,
        "-o",
        "{d}/shared.csv",
        "--withheld",
        "{d}/withheld.csv",
        "--manifest",
        "{d}/manifest.json",
    )


R = "rejected"
E = "error"
MB = 1 << 20
BIG_CELL_1MB = "A" * (MB - 200)  # a row just under the default 1 MiB line limit
BIG_CELL_2MB = "A" * (2 * MB)

CORPUS: list[Case] = [
    # ---- reads: whole-file problems
    Case("empty_file", "reads", writes("reads.csv", b""), scan("reads.csv"),
         (E, 1, ["reads.csv", "empty", "header"])),
    Case("header_only", "reads", writes("reads.csv", csv_bytes()), scan("reads.csv"), (R, {}, 0)),
    Case("header_only_no_newline", "reads", writes("reads.csv", HEADER.encode()), scan("reads.csv"),
         (R, {}, 0)),
    Case("truncated_gzip", "reads", writes("reads.csv.gz", truncated_gzip), scan("reads.csv.gz"),
         (E, 1, ["reads.csv.gz", "truncated", "re-copy"])),
    Case("corrupt_gzip", "reads", writes("reads.csv.gz", corrupt_gzip), scan("reads.csv.gz"),
         (E, 1, ["reads.csv.gz", "corrupt", "re-copy"])),
    Case("utf16_file", "reads", writes("reads.csv", "\ufeff".encode("utf-16-le") + csv_bytes(row()).decode().encode("utf-16-le")),
         scan("reads.csv"), (E, 1, ["reads.csv", "UTF-16"])),
    Case("zip_file", "reads", writes("reads.csv", b"PK\x03\x04" + b"\x00" * 40), scan("reads.csv"),
         (E, 1, ["reads.csv", "zip"])),
    Case("header_not_utf8", "reads", writes("reads.csv", b"read_id,pl\xe4te,timestamp,lat,lon\nr1,ZZSECRET1,2025-03-01T12:00:00Z,37.8,-122.27\n"),
         scan("reads.csv"), (E, 1, ["reads.csv", "header", "UTF-8", "re-save"])),
    Case("missing_lat_column", "reads",
         writes("reads.csv", csv_bytes("r1,ZZSECRET1,2025-03-01T12:00:00Z,-122.27,C1,OPD", header="read_id,plate,timestamp,lon,camera_id,agency")),
         scan("reads.csv"), (E, 1, ["reads.csv", "latitude", "--columns lat="])),
    Case("headerless_file", "reads", writes("reads.csv", (row(1) + "\n" + row(2) + "\n").encode()),
         scan("reads.csv"), (E, 1, ["reads.csv", "header", "--columns"])),
    Case("columns_names_missing_column", "reads", writes("reads.csv", csv_bytes(row())),
         scan("reads.csv", "--columns", "lat=Y"), (E, 1, ["reads.csv", "lat", "'Y'"])),
    Case("unknown_timezone", "reads", writes("reads.csv", csv_bytes(row())),
         scan("reads.csv", "--timezone", "Mars/Olympus_Mons"), (E, 1, ["Mars/Olympus_Mons", "IANA"])),
    Case("missing_reads_file", "reads", lambda d: None, scan("nope.csv"), (E, 1, ["nope.csv", "no such file"])),
    # ---- reads: delimiters, encodings, quoting, field counts
    Case("semicolons_with_decimal_commas", "reads",
         writes("reads.csv", csv_bytes(row(1, "37,8", "-122,27", sep=";"), row(2, "37,9", "-122,27", sep=";"), header=HEADER.replace(",", ";"))),
         scan("reads.csv"), (R, {"bad_position": 2}, 2)),
    Case("semicolons_with_decimal_points", "reads",
         writes("reads.csv", csv_bytes(row(1, sep=";"), header=HEADER.replace(",", ";"))), scan("reads.csv"), (R, {}, 1)),
    Case("mixed_delimiters", "reads", writes("reads.csv", csv_bytes(row(1, sep="\t"), row(2), row(3, sep="|"))),
         scan("reads.csv"), (R, {"malformed_row": 2}, 3)),
    Case("utf8_bom", "reads", writes("reads.csv", b"\xef\xbb\xbf" + csv_bytes(row(1), row(2))), scan("reads.csv"), (R, {}, 2)),
    Case("crlf_line_endings", "reads", writes("reads.csv", csv_bytes(row(1), row(2), nl="\r\n")), scan("reads.csv"), (R, {}, 2)),
    Case("bare_cr_inside_row", "reads", writes("reads.csv", csv_bytes(row(1), "r2,ZZSECRET2,2025-03-01\rT12:00:00Z,37.8,-122.27,C1,OPD")),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("row_not_utf8", "reads",
         writes("reads.csv", csv_bytes(row(1)) + b"r2,ZZSECRET\xff\xfe2,2025-03-01T12:00:00Z,37.8,-122.27,C1,OPD\n"),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("latin1_agency", "reads",
         writes("reads.csv", csv_bytes(row(1)) + b"r2,ZZSECRET2,2025-03-01T12:00:00Z,37.8,-122.27,C1,Polic\xeda\n"),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("unbalanced_quote_last_row", "reads", writes("reads.csv", csv_bytes(row(1), 'r2,"ZZSECRET2,2025-03-01T12:00:00Z,37.8,-122.27,C1,OPD')),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("unbalanced_quote_runs_to_end_of_file", "reads",
         writes("reads.csv", csv_bytes(row(1), 'r2,"ZZSECRET2,2025-03-01T12:00:00Z,37.8,-122.27,C1,OPD', row(3), row(4))),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("quote_inside_unquoted_field", "reads", writes("reads.csv", csv_bytes(row(1), 'r2,ZZ"SECRET2,2025-03-01T12:00:00Z,37.8,-122.27,C1,OPD"')),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("missing_field", "reads", writes("reads.csv", csv_bytes(row(1), "r2,ZZSECRET2,2025-03-01T12:00:00Z,37.8,-122.27,C1")),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("extra_field", "reads", writes("reads.csv", csv_bytes(row(1), row(2, extra=("surplus",)))),
         scan("reads.csv"), (R, {"malformed_row": 1}, 2)),
    Case("garbage_lines", "reads", writes("reads.csv", csv_bytes(row(1), "hello world", "\x00\x01\x02 binary", "{\"json\": true}", row(2))),
         scan("reads.csv"), (R, {"malformed_row": 3}, 5)),
    Case("delimiters_only_row", "reads", writes("reads.csv", csv_bytes(row(1), ",,,,,,")), scan("reads.csv"),
         (R, {"missing_position": 1}, 2)),
    Case("blank_lines_are_not_reads", "reads", writes("reads.csv", csv_bytes(row(1), "", "", row(2), "")),
         scan("reads.csv"), (R, {}, 2, "blank line")),
    # ---- reads: coordinates
    Case("nan_coordinates", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "NaN", "NaN"), row(3, "nan", "-122.27"))),
         scan("reads.csv"), (R, {"missing_position": 2}, 3)),
    Case("inf_coordinates", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "inf", "-122.27"), row(3, "37.8", "-Infinity"))),
         scan("reads.csv"), (R, {"bad_position": 2}, 3)),
    Case("na_coordinates", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "NA", "NA"), row(3, "N/A", "null"))),
         scan("reads.csv"), (R, {"missing_position": 2}, 3)),
    Case("empty_coordinates", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "", ""), row(3, " ", "-122.27"))),
         scan("reads.csv"), (R, {"missing_position": 2}, 3)),
    Case("non_numeric_coordinates", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "north", "-122.27"), row(3, "0x25", "-122.27"), row(4, "37.8.1", "-122.27"))),
         scan("reads.csv"), (R, {"bad_position": 3}, 4)),
    Case("out_of_range_coordinates", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "91", "-122.27"), row(3, "37.8", "-190"), row(4, "-90.0001", "0.5"))),
         scan("reads.csv"), (R, {"position_out_of_range": 3}, 4)),
    Case("swapped_coordinates", "reads", writes("reads.csv", csv_bytes(row(1, "-122.27", "37.8"), row(2, "-122.28", "37.81"))),
         scan("reads.csv"), (R, {"position_out_of_range": 2}, 2, "swapped")),
    Case("null_island", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "0", "0"), row(3, "0.0", "-0.0"))),
         scan("reads.csv"), (R, {"null_island": 2}, 3)),
    Case("absurdly_long_numbers", "reads", writes("reads.csv", csv_bytes(row(1), row(2, "3" + "7" * 400, "-122.27"), row(3, "37." + "8" * 5000, "-122.27"), row(4, "1e400", "1"))),
         scan("reads.csv"), (R, {"bad_position": 3}, 4)),
    # ---- reads: times
    Case("future_and_ancient_timestamps_accepted", "reads", writes("reads.csv", csv_bytes(row(1, ts="2999-12-31T23:59:59Z"), row(2, ts="1900-01-01T00:00:00Z"), row(3, ts="1970-01-01T00:00:00Z"))),
         scan("reads.csv"), (R, {}, 3)),
    Case("unparseable_timestamps", "reads", writes("reads.csv", csv_bytes(row(1), row(2, ts="yesterday"), row(3, ts="2025-13-45T99:00:00Z"), row(4, ts="2025-02-30T12:00:00Z"))),
         scan("reads.csv"), (R, {"bad_timestamp": 3}, 4)),
    Case("empty_timestamp", "reads", writes("reads.csv", csv_bytes(row(1), row(2, ts=""))), scan("reads.csv"),
         (R, {"missing_timestamp": 1}, 2)),
    Case("epoch_nanoseconds", "reads", writes("reads.csv", csv_bytes(row(1, ts="1740830400"), row(2, ts="1740830400000000000"))),
         scan("reads.csv"), (R, {"bad_timestamp": 1}, 2)),
    # ---- reads: duplicates and sizes
    Case("duplicate_read_ids", "reads", writes("reads.csv", csv_bytes(row(1), row(1), row(1, lat="37.9"))), scan("reads.csv"), (R, {}, 3)),
    Case("line_of_1mb_within_limit", "reads", writes("reads.csv", lambda: csv_bytes(row(1), row(2, extra=())[:-3] + BIG_CELL_1MB)),
         scan("reads.csv"), (R, {}, 2)),
    Case("line_of_2mb_over_limit", "reads", writes("reads.csv", lambda: csv_bytes(row(1), row(2), row(3)[:-3] + BIG_CELL_2MB, row(4))),
         scan("reads.csv"), (E, 1, ["reads.csv", "row 3", "1,048,576", ("max-line-bytes", "max_line_bytes")])),
    Case("line_of_2mb_over_limit_filter", "reads", writes("reads.csv", lambda: csv_bytes(row(1), row(2), row(3)[:-3] + BIG_CELL_2MB)),
         filter_of("reads.csv"), (E, 1, ["reads.csv", "row 3", ("max-line-bytes", "max_line_bytes")])),
    # ---- layers
    Case("bow_tie_polygon_repaired", "layers",
         writes("bowtie.geojson", collection(feature(polygon([[-122.271, 37.799], [-122.269, 37.801], [-122.269, 37.799], [-122.271, 37.801], [-122.271, 37.799]])))),
         ("layers", "check", "--json", "{d}/bowtie.geojson"), ("layer", {"sites": 1, "repaired": 1, "rejected": 0}, ["Self-intersection"])),
    Case("empty_geometry_rejected", "layers",
         writes("sites.geojson", collection(feature({"type": "Polygon", "coordinates": []}, "empty"), feature(polygon(square()), "ok"))),
         ("layers", "check", "--json", "{d}/sites.geojson"), ("layer", {"sites": 1, "repaired": 0, "rejected": 1}, ["empty geometry"])),
    Case("null_geometry_rejected", "layers", writes("sites.geojson", collection(feature(None, "none"), feature(polygon(square()), "ok"))),
         ("layers", "check", "--json", "{d}/sites.geojson"), ("layer", {"sites": 1, "repaired": 0, "rejected": 1}, ["no geometry"])),
    Case("unsupported_geometry_rejected", "layers",
         writes("sites.geojson", collection(feature({"type": "MultiPoint", "coordinates": [[LON0, LAT0], [LON0, LAT0 + 0.01]]}, "mp"), feature(polygon(square()), "ok"))),
         ("layers", "check", "--json", "{d}/sites.geojson"), ("layer", {"sites": 1, "repaired": 0, "rejected": 1}, ["MultiPoint"])),
    Case("geopackage_without_crs", "layers", ok_reads_and(layer_file("nocrs.gpkg", crs=None, coords=square())),
         scan_layer("nocrs.gpkg"), (E, 1, ["nocrs.gpkg", "no CRS", "--crs"])),
    Case("shapefile_without_crs", "layers", ok_reads_and(layer_file("nocrs.shp", crs=None, coords=square())),
         scan_layer("nocrs.shp"), (E, 1, ["nocrs.shp", "no CRS", "--crs"])),
    Case("projected_coordinates_declared_wgs84", "layers",
         ok_reads_and(layer_file("wrongcrs.gpkg", crs="EPSG:4326", coords=square(565_000, 4_184_000, 100))),
         scan_layer("wrongcrs.gpkg"), (E, 1, ["wrongcrs.gpkg", "feature s1", "outside", "--crs"])),
    Case("projected_coordinates_in_geojson", "layers",
         ok_reads_and(writes("utm.geojson", collection(feature(polygon(square(565_000, 4_184_000, 100)))))),
         scan_layer("utm.geojson"), (E, 1, ["utm.geojson", "feature s1", "outside", "--crs"])),
    Case("unknown_crs_given", "layers", ok_reads_and(layer_file("nocrs.gpkg", crs=None, coords=square())),
         scan_layer("nocrs.gpkg", "--crs", "EPSG:999999"), (E, 1, ["nocrs.gpkg", "EPSG:999999", "EPSG:2926"])),
    Case("geometry_collection_nested_1000_levels", "layers", ok_reads_and(writes("deep.geojson", deep_geometry_collection)),
         scan_layer("deep.geojson"), (E, 1, ["deep.geojson", "nested"])),
    Case("json_nested_100k_levels", "layers", ok_reads_and(writes("deep.geojson", "[" * 100_000 + "]" * 100_000)),
         scan_layer("deep.geojson"), (E, 1, ["deep.geojson", "GeoJSON"])),
    Case("vertices_over_max_vertices_option", "layers", writes("big.geojson", lambda: collection(feature(polygon(circle(2000))))),
         ("layers", "check", "{d}/big.geojson", "--max-vertices", "1000"), (E, 1, ["big.geojson", "feature s1", "2,001", "1,000", "--max-vertices"])),
    Case("vertices_over_default_guard_in_scan", "layers", ok_reads_and(writes("big.geojson", lambda: collection(feature(polygon(circle(60_000)))))),
         scan_layer("big.geojson"), (E, 1, ["big.geojson", "feature s1", "60,001", "50,000", "max-vertices"])),
    Case("features_over_max_features", "layers", writes("two.geojson", collection(feature(polygon(square()), "a"), feature(polygon(square(LON0 + 0.01)), "b"))),
         ("layers", "check", "{d}/two.geojson", "--max-features", "1"), (E, 1, ["two.geojson", "--max-features"])),
    Case("zero_features", "layers", ok_reads_and(writes("zero.geojson", collection())),
         scan_layer("zero.geojson"), (E, 1, ["zero.geojson", ("no features", "0 features", "zero features", "no sites")])),
    Case("unknown_category", "layers", ok_reads_and(writes("cat.geojson", collection(feature(polygon(square()), category="spaceport")))),
         scan_layer("cat.geojson"), (E, 1, ["cat.geojson", "feature 1", "spaceport", "category", "--category"])),
    Case("duplicate_site_ids", "layers", ok_reads_and(writes("dup.geojson", collection(feature(polygon(square()), "a"), feature(polygon(square(LON0 + 0.01)), "a")))),
         scan_layer("dup.geojson"), (E, 1, ["duplicate site_id", "dup.geojson", "--columns site_id"])),
    Case("layer_not_json", "layers", ok_reads_and(writes("bad.geojson", "{not json")), scan_layer("bad.geojson"),
         (E, 1, ["bad.geojson", "GeoJSON"])),
    Case("missing_layer_file", "layers", ok_reads_and(), scan_layer("nope.geojson"), (E, 1, ["nope.geojson", "no such file"])),
    # ---- policy packs
    Case("malformed_toml_pack", "pack", ok_reads_and(writes("bad.toml", 'name = "bad"\ntitle = \n')),
         ("scan", "{d}/ok.csv", "--layers", "{sites}", "--policy", "{d}/bad.toml"), (E, 1, ["bad.toml", "TOML", "line 2"])),
    Case("pack_with_negative_distance", "pack", ok_reads_and(writes("neg.toml", pack_with("near = 150.0", "near = -150.0"))),
         ("scan", "{d}/ok.csv", "--layers", "{sites}", "--policy", "{d}/neg.toml"), (E, 1, ["neg.toml", "tiers_m.near", "-150", ">= 0"])),
    Case("pack_with_unknown_category", "pack", ok_reads_and(writes("cat.toml", pack_with("[categories.school]", "[categories.spaceport]"))),
         ("scan", "{d}/ok.csv", "--layers", "{sites}", "--policy", "{d}/cat.toml"), (E, 1, ["cat.toml", "spaceport"])),
    Case("pack_not_utf8", "pack", ok_reads_and(writes("latin.toml", b'name = "caf\xe9"\n')),
         ("scan", "{d}/ok.csv", "--layers", "{sites}", "--policy", "{d}/latin.toml"), (E, 1, ["latin.toml", "UTF-8"])),
    Case("unknown_pack_name", "pack", ok_reads_and(), ("scan", "{d}/ok.csv", "--layers", "{sites}", "--policy", "ice-2099"),
         (E, 1, ["ice-2099", "dhs-2021"])),
    Case("negative_distance_override", "pack", ok_reads_and(), ("scan", "{d}/ok.csv", "--layers", "{sites}", "--distance", "school=-5"),
         (E, 1, ["school", ">= 0"])),
    # ---- recipient rule files (no CLI flag points at one: the library is called)
    Case("rules_unknown_recipient_type", "rules", writes("zz.toml", RULES_OK.replace('"state-public"', '"martian"')),
         load_rules_of("zz.toml"), (E, 1, ["zz.toml", "rule 1", "public-only", "martian", "types", "state-public"])),
    Case("rules_unknown_kind", "rules", writes("zz.toml", RULES_OK.replace("allow_only_types", "allow_everyone")),
         load_rules_of("zz.toml"), (E, 1, ["zz.toml", "rule 1", "allow_everyone", "allow_only_types"])),
    Case("rules_malformed_toml", "rules", writes("zz.toml", RULES_OK + "[[rule]\n"), load_rules_of("zz.toml"),
         (E, 1, ["zz.toml", "TOML", "line"])),
    Case("rules_bad_state", "rules", writes("zz.toml", RULES_OK.replace('"ZZ"', '"Zed"')), load_rules_of("zz.toml"),
         (E, 1, ["zz.toml", "state", "two-letter"])),
    # ---- files the CLI opens itself
    Case("pseudonymize_key_file_missing", "cli", writes("reads.csv", csv_bytes(row())),
         scan("reads.csv", "--pseudonymize-plates", "{d}/nokey"), (E, 1, ["nokey", ("no such file", "not found")])),
    Case("pseudonymize_key_too_short", "cli", both(writes("reads.csv", csv_bytes(row())), writes("short.key", b"abc")),
         scan("reads.csv", "--pseudonymize-plates", "{d}/short.key"), (E, 1, ["short.key", "16 bytes"])),
    Case("output_directory_is_a_file", "cli", both(writes("reads.csv", csv_bytes(row())), writes("afile", b"x")),
         ("scan", "{d}/reads.csv", "--layers", "{sites}", "--out", "{d}/afile/out.geojson"), (E, 1, ["afile", "out.geojson"])),
    Case("verify_manifest_missing", "cli", writes("shared.csv", csv_bytes(row())),
         ("verify", "{d}/shared.csv", "--manifest", "{d}/manifest.json"), (E, 1, ["manifest.json", ("no such file", "not found")])),
    Case("verify_manifest_not_json", "cli", both(writes("shared.csv", csv_bytes(row())), writes("manifest.json", "{nope")),
         ("verify", "{d}/shared.csv", "--manifest", "{d}/manifest.json"), (E, 1, ["manifest.json", "JSON"])),
]  # fmt: skip


def test_corpus_is_large_and_ids_are_unique():
    assert len(CORPUS) >= 40
    assert len({c.id for c in CORPUS}) == len(CORPUS)


# --------------------------------------------------------------------------------------
# Running a case


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Path:
    """One school, a 220 m square around (LON0, LAT0)."""
    path = tmp_path_factory.mktemp("sites") / "sites.geojson"
    path.write_text(collection(feature(polygon(square()), "sch")))
    return path


def _invoke(args: list[str], monkeypatch, **kw):
    # The CLI looks at sys.argv for -v (to re-raise errors); make it see these arguments,
    # not pytest's (`pytest -v` would otherwise turn every error into a traceback).
    monkeypatch.setattr(sys, "argv", ["geofence", *args])
    return CliRunner().invoke(cli, args, **kw)


def _uncaught(res) -> str | None:
    """The traceback a real process would print, or None (SystemExit is a clean exit)."""
    exc = res.exception
    if exc is None or isinstance(exc, SystemExit):
        return None
    return "".join(traceback.format_exception(exc))


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _assert_one_line_error(stderr: str, code: int, exit_code: int, wanted: list) -> None:
    lines = _error_lines(stderr)
    assert exit_code != 0
    assert "Traceback" not in stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("geofence: error: "), line
    assert SECRET not in line, f"a plate reached stderr: {line}"
    for want in wanted:
        alts = want if isinstance(want, tuple) else (want,)
        assert any(a in line for a in alts), f"{alts} not in: {line}"
    assert exit_code == code, f"exit code {exit_code}, expected {code}: {line}"


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_corpus(case: Case, sites, tmp_path, monkeypatch):
    d = tmp_path
    case.make_input(d)
    kind = case.expected[0]

    if callable(case.args):  # a library call: format the error as the CLI would
        try:
            case.args(d)
        except GeofenceError as exc:
            stderr, code = f"geofence: error: {exc}\n", exc.exit_code
        else:
            pytest.fail("no error raised")
        _assert_one_line_error(stderr, case.expected[1], code, case.expected[2])
        return

    args = [a.format(d=d, sites=sites) for a in case.args]
    inputs = {p.name for p in d.iterdir()}  # files the case made are inputs, not outputs
    res = _invoke(args, monkeypatch)
    tb = _uncaught(res)
    assert tb is None, f"uncaught exception (a traceback without -v):\n{tb}"
    assert SECRET not in res.stderr

    if kind == E:
        _assert_one_line_error(res.stderr, case.expected[1], res.exit_code, case.expected[2])
        left = [p.name for p in d.iterdir() if p.name in OUTPUTS and p.name not in inputs]
        assert not left, f"output files at the final path after an error: {left}"
        partial = [p.name for p in d.iterdir() if ".partial-" in p.name]
        assert not partial, f"temporary files left after a clean error: {partial}"
    elif kind == R:
        reasons, reads_in = case.expected[1], case.expected[2]
        assert res.exit_code == 0, res.stderr
        doc = json.loads((d / "summary.json").read_text())
        assert doc["reads_in"] == reads_in
        assert doc["reads_in"] == doc["reads_clean"] + doc["reads_flagged"] + doc["reads_rejected"]
        assert doc["rejected_by_reason"] == reasons
        assert doc["reads_rejected"] == sum(reasons.values())
        assert doc["inputs"][0]["rows"] == reads_in
        if len(case.expected) > 3:
            notes = " ".join(doc["inputs"][0]["notes"])
            assert case.expected[3] in notes, notes
        if reasons:
            rejects = (d / "rejects.csv").read_bytes()
            assert rejects.count(b"\n") >= 1 + sum(reasons.values())  # header + every rejected row
    elif kind == "layer":
        want, texts = case.expected[1], case.expected[2]
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        src = doc["sources"][0]
        got = {
            "sites": doc["sites"],
            "repaired": len(src["repaired"]),
            "rejected": len(src["rejected"]),
        }
        assert got == want
        for t in texts:
            assert t in res.stdout
    else:  # pragma: no cover
        raise AssertionError(kind)


def test_bow_tie_is_counted_in_layers_check_text(tmp_path, monkeypatch):
    bow = [
        [-122.271, 37.799],
        [-122.269, 37.801],
        [-122.269, 37.799],
        [-122.271, 37.801],
        [-122.271, 37.799],
    ]
    path = tmp_path / "bowtie.geojson"
    path.write_text(collection(feature(polygon(bow))))
    res = _invoke(["layers", "check", str(path)], monkeypatch)
    assert res.exit_code == 0
    assert "repaired 1" in res.stdout and "repaired s1: make_valid" in res.stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-vertices", "100000"), ("--max-line-bytes", str(4 * MB))],
    ids=["max-vertices", "max-line-bytes"],
)
def test_scan_accepts_the_guard_option_its_error_names(option, value, sites, tmp_path, monkeypatch):
    """A guard's error tells the user to raise a limit: ``scan`` must take that option.

    (``layers check`` has ``--max-vertices``; the issue asks for configurable guards.)
    """
    reads = tmp_path / "reads.csv"
    layer = sites
    if option == "--max-vertices":  # a 60,001-vertex site, over the default 50,000
        reads.write_bytes(csv_bytes(row(1), row(2)))
        layer = tmp_path / "big.geojson"
        layer.write_text(collection(feature(polygon(circle(60_000)))))
    else:  # a 2 MiB row, over the default 1 MiB
        reads.write_bytes(csv_bytes(row(1), row(2)[:-3] + BIG_CELL_2MB))
    res = _invoke(["scan", str(reads), "--layers", str(layer), option, value, "-q"], monkeypatch)
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------------------
# Subprocesses: -v, Ctrl-C, closed pipes, SIGKILL


def _geofence(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "geofence", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _run(*args, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geofence", *map(str, args)],
        capture_output=True,
        timeout=timeout,
        **kw,
    )


def test_verbose_shows_traceback_and_default_does_not(sites, tmp_path):
    reads = tmp_path / "reads.csv"
    reads.write_bytes(
        csv_bytes("r1,ZZSECRET1,2025-03-01T12:00:00Z,-122.27", header="read_id,plate,timestamp,lon")
    )
    quiet = _run("scan", reads, "--layers", sites)
    loud = _run("scan", reads, "--layers", sites, "-v")
    assert quiet.returncode == 1 and b"Traceback" not in quiet.stderr
    assert len(_error_lines(quiet.stderr.decode())) == 1
    assert loud.returncode != 0 and b"Traceback" in loud.stderr
    assert b"ReadFormatError" in loud.stderr


def test_verbose_error_traceback_has_no_plate(sites, tmp_path):
    """With -v the traceback carries the error message: it must not carry a plate either."""
    reads = tmp_path / "reads.csv"
    reads.write_bytes((row(1) + "\n" + row(2) + "\n").encode())  # no header row
    res = _run("scan", reads, "--layers", sites, "-v")
    assert res.returncode != 0
    assert SECRET.encode() not in res.stderr, res.stderr.decode()[-500:]


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict:
    """300,000 reads (~21 MB) around the school; every 997th without a position."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    n = 300_000
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(6)
    idx = pa.array(np.arange(n))
    lat = pc.cast(pa.array(np.round(LAT0 + rng.uniform(-0.03, 0.03, n), 6)), pa.string())
    lat = pc.if_else(pa.array(np.arange(n) % 997 == 5), pa.scalar("NA"), lat)
    table = pa.table(
        {
            "read_id": pc.cast(idx, pa.string()),
            "plate": pc.binary_join_element_wise(
                SECRET, pc.cast(pc.bit_wise_and(idx, 1023), pa.string()), ""
            ),
            "timestamp": pa.array(np.full(n, TS)),
            "lat": lat,
            "lon": pa.array(np.round(LON0 + rng.uniform(-0.03, 0.03, n), 6)),
            "camera_id": pa.array(np.full(n, "C1")),
            "agency": pa.array(np.full(n, "OPD")),
        }
    )
    path = d / "big.csv"
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="none"))
    return {"path": path, "n": n, "data": path.read_bytes()}


def _feed(proc: subprocess.Popen, data: bytes, close: bool) -> threading.Thread:
    """Write ``data`` to the process's stdin in a thread; close it (EOF) only if ``close``."""

    def run():
        try:
            for i in range(0, len(data), 1 << 20):
                proc.stdin.write(data[i : i + (1 << 20)])
            proc.stdin.flush()
            if close:
                proc.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass  # killed while we were writing

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait_for(cond, timeout=60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.005)


def _partials(d: Path, name: str) -> list[Path]:
    return [p for p in d.iterdir() if p.name.startswith(f".{name}.partial-")]


def _kill_points(args: list, d: Path, data: bytes, first_output: str, finals: list[Path]) -> None:
    """SIGKILL ``geofence ARGS`` (reading stdin) at several points; no final file may appear.

    stdin is never closed, so a run cannot finish before it is killed.
    """
    for point in ("0.3s", "1s", "2s", "streaming", "before-end"):
        proc = _geofence(*args, stdin=subprocess.PIPE, cwd=d)
        try:
            if point.endswith("s") and point[0].isdigit():
                _feed(proc, data, close=False)
                time.sleep(float(point[:-1]))
            elif point == "streaming":  # as soon as the first output file is open
                _feed(proc, data, close=False)
                _wait_for(lambda p=proc: _partials(d, first_output) or p.poll() is not None)
            else:  # everything but the end of input: the reader waits for EOF
                _feed(proc, data, close=False).join(60)
                time.sleep(1.0)
            if point in ("streaming", "before-end"):
                assert _partials(d, first_output), f"{point}: no output was being written"
            assert proc.poll() is None, f"{point}: ended early: {proc.stderr.read().decode()}"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(30)
            proc.stdout.close()
            proc.stderr.close()
            if not proc.stdin.closed:
                proc.stdin.close()
        present = [p.name for p in finals if p.exists()]
        assert not present, f"killed at {point}: files at the final path: {present}"


@pytest.mark.slow
def test_sigkill_scan_leaves_no_output_and_reruns_are_identical(big, sites, tmp_path):
    names = ["out.geojson", "summary.json", "rejects.csv"]
    killed = tmp_path / "killed"
    killed.mkdir()
    finals = [killed / n for n in names]

    def args(src, d: Path) -> list:
        return [
            "scan",
            src,
            "--layers",
            sites,
            "--out",
            d / "out.geojson",
            "--summary",
            d / "summary.json",
            "--rejects",
            d / "rejects.csv",
            "--deterministic",
            "-q",
        ]

    _kill_points(args("-", killed), killed, big["data"], "out.geojson", finals)
    runs = []
    # the first rerun writes where the killed runs left their temporary files
    for d in (killed, tmp_path / "run1"):
        d.mkdir(exist_ok=True)
        res = _run(*args(big["path"], d), cwd=d)
        assert res.returncode == 0, res.stderr.decode()
        assert b"Traceback" not in res.stderr
        runs.append({n: (d / n).read_bytes() for n in names})
    assert runs[0] == runs[1]
    doc = json.loads(runs[0]["summary.json"])
    assert (
        doc["reads_in"]
        == big["n"]
        == doc["reads_clean"] + doc["reads_flagged"] + doc["reads_rejected"]
    )
    assert doc["rejected_by_reason"] == {"missing_position": len(range(5, big["n"], 997))}


@pytest.mark.slow
def test_sigkill_filter_leaves_no_output_and_reruns_are_identical(big, sites, tmp_path):
    names = ["shared.csv", "withheld.csv", "manifest.json"]
    killed = tmp_path / "killed"
    killed.mkdir()
    finals = [killed / n for n in names]

    def args(src, d: Path) -> list:
        return [
            "filter",
            src,
            "--layers",
            sites,
            *FILTER_ARGS,
            "-o",
            d / "shared.csv",
            "--withheld",
            d / "withheld.csv",
            "--manifest",
            d / "manifest.json",
            "--deterministic",
            "-q",
        ]

    _kill_points(args("-", killed), killed, big["data"], "shared.csv", finals)
    runs = []
    for d in (killed, tmp_path / "run1"):
        d.mkdir(exist_ok=True)
        res = _run(*args(big["path"], d), cwd=d)
        assert res.returncode == 0, res.stderr.decode()
        assert b"Traceback" not in res.stderr
        runs.append({n: (d / n).read_bytes() for n in names})
    assert runs[0] == runs[1]
    doc = json.loads(runs[0]["manifest.json"])
    assert doc["counts"]["reads_in"] == big["n"]
    assert doc["counts"]["reads_shared"] + doc["counts"]["reads_withheld"] == big["n"]


def _assert_interrupted(proc: subprocess.Popen, finals: list[Path]) -> None:
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert "Traceback" not in text, text[-1500:]
    assert _error_lines(text) == ["geofence: interrupted"], text[-1500:]
    assert proc.returncode == 130
    assert not [p.name for p in finals if p.exists()]


@pytest.mark.slow
def test_ctrl_c_mid_scan_exits_130_with_one_line(big, sites, tmp_path):
    finals = [tmp_path / "out.geojson", tmp_path / "summary.json"]
    proc = _geofence(
        "scan",
        big["path"],
        "--layers",
        sites,
        "--out",
        finals[0],
        "--summary",
        finals[1],
        cwd=tmp_path,
    )
    _wait_for(lambda: _partials(tmp_path, "out.geojson") or proc.poll() is not None)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc, finals)


def test_ctrl_c_during_startup_exits_130_with_one_line(sites, tmp_path):
    """Ctrl-C while Python is still importing is Ctrl-C too."""
    reads = tmp_path / "reads.csv"
    reads.write_bytes(csv_bytes(row(1)))
    # A one-read scan is mostly imports: a signal at a third of its whole time lands in
    # them on a slow or a fast machine (a fixed 0.3 s came after the end on a warm one).
    t0 = time.perf_counter()
    assert (
        _run("scan", reads, "--layers", sites, "--out", tmp_path / "warm.geojson").returncode == 0
    )
    whole_s = time.perf_counter() - t0
    finals = [tmp_path / "out.geojson"]
    proc = _geofence("scan", reads, "--layers", sites, "--out", finals[0], cwd=tmp_path)
    time.sleep(whole_s / 3)
    proc.send_signal(signal.SIGINT)
    _assert_interrupted(proc, finals)


def test_closed_pipe_ends_quietly(big, sites, tmp_path):
    proc = _geofence(
        "scan",
        big["path"],
        "--layers",
        sites,
        "--out",
        "-",
        "--format",
        "geojsonseq",
        "-q",
        cwd=tmp_path,
    )
    head = proc.stdout.read(100)
    proc.stdout.close()  # `| head -c 100`
    err = proc.stderr.read().decode()
    proc.wait(60)
    assert head.startswith(b"\x1e{")
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert proc.returncode == 0, err


# --------------------------------------------------------------------------------------
# Privacy and determinism (in process)


@pytest.fixture
def world(sites, tmp_path) -> dict:
    """Flagged, clean and rejected reads, all with distinctive plates."""
    reads = tmp_path / "reads.csv"
    rows = [row(i, lat=f"{LAT0 + (i % 7) * 0.002:.4f}") for i in range(1, 60)]
    rows += [
        row(60, "NA", "NA"),
        row(61, ts="not a time"),
        row(62, "0", "0"),
        "r63,ZZSECRET63,broken",
    ]
    reads.write_bytes(csv_bytes(*rows))
    return {"reads": reads, "sites": sites, "d": tmp_path}


def _filter_args(world, d: Path, src=None) -> list[str]:
    return [
        "filter",
        str(src or world["reads"]),
        "--layers",
        str(world["sites"]),
        *FILTER_ARGS,
        "-o",
        str(d / "shared.csv"),
        "--withheld",
        str(d / "withheld.csv"),
        "--manifest",
        str(d / "manifest.json"),
    ]


@pytest.mark.parametrize("verbosity", [[], ["-v"]], ids=["default", "-v"])
def test_plates_never_reach_stderr(world, verbosity, monkeypatch):
    d = world["d"]
    runs = {
        "scan": [
            "scan",
            str(world["reads"]),
            "--layers",
            str(world["sites"]),
            "--out",
            str(d / "o.geojson"),
            "--rejects",
            str(d / "rej.csv"),
        ],
        "filter": _filter_args(world, d),
    }
    for name, args in runs.items():
        res = _invoke([*args, *verbosity], monkeypatch)
        assert res.exit_code == 0, (name, res.output)
        assert SECRET not in res.stderr, (name, res.stderr)
    res = _invoke(
        [
            "verify",
            str(d / "shared.csv"),
            "--manifest",
            str(d / "manifest.json"),
            "--layers",
            str(world["sites"]),
            *verbosity,
        ],
        monkeypatch,
    )
    assert res.exit_code == 0, res.output
    assert SECRET not in res.stderr
    # verify of a tampered file: findings name rows, never plates
    shared = (d / "shared.csv").read_bytes().replace(b"37.8020", b"37.8000")
    (d / "tampered.csv").write_bytes(shared + row(99).encode() + b"\n")
    res = _invoke(
        [
            "verify",
            str(d / "tampered.csv"),
            "--manifest",
            str(d / "manifest.json"),
            "--layers",
            str(world["sites"]),
            *verbosity,
        ],
        monkeypatch,
    )
    assert res.exit_code == 5
    assert SECRET not in res.stderr, res.stderr


BAD_PRIVATE_INPUTS = {
    "headerless": (row(1) + "\n").encode(),
    "over_line_limit": csv_bytes(row(1), row(2)[:-3] + BIG_CELL_2MB),
    "unbalanced_quote": csv_bytes(row(1), 'r2,"ZZSECRET2",2025,"37.8,-122.27,C1,OPD'),
    "plate_in_coordinate": csv_bytes(row(1), row(2, lat="ZZSECRET2")),
    "plate_in_time": csv_bytes(row(1), row(2, ts="ZZSECRET2")),
}


@pytest.mark.parametrize("command", ["scan", "filter"])
@pytest.mark.parametrize("name", list(BAD_PRIVATE_INPUTS))
def test_plates_never_reach_stderr_on_bad_input(name, command, world, sites, tmp_path, monkeypatch):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(BAD_PRIVATE_INPUTS[name])
    if command == "scan":
        args = ["scan", str(path), "--layers", str(sites), "--rejects", str(tmp_path / "rej.csv")]
    else:
        args = _filter_args(world, tmp_path, path)
    res = _invoke(args, monkeypatch)
    assert _uncaught(res) is None, _uncaught(res)
    assert SECRET not in res.stderr, res.stderr


def _scan_outputs(world, d: Path, fmt: str, monkeypatch, *extra) -> dict:
    d.mkdir()
    args = [
        "scan",
        str(world["reads"]),
        "--layers",
        str(world["sites"]),
        "--out",
        str(d / "out"),
        "--format",
        fmt,
        "--summary",
        str(d / "summary.json"),
        "--rejects",
        str(d / "rejects.csv"),
        *extra,
    ]
    res = _invoke(args, monkeypatch)
    assert res.exit_code == 0, res.output
    return {n: (d / n).read_bytes() for n in ("out", "summary.json", "rejects.csv")}


@pytest.mark.parametrize("fmt", ["geojson", "geojsonseq", "csv"])
def test_deterministic_scan_is_byte_identical(world, fmt, tmp_path, monkeypatch):
    a = _scan_outputs(world, tmp_path / "a", fmt, monkeypatch, "--deterministic")
    b = _scan_outputs(
        world, tmp_path / "b", fmt, monkeypatch, "--deterministic", "--batch-size", "7"
    )
    assert a == b


def test_without_deterministic_only_the_run_time_differs(world, tmp_path, monkeypatch):
    a = _scan_outputs(world, tmp_path / "a", "geojson", monkeypatch)
    b = _scan_outputs(world, tmp_path / "b", "geojson", monkeypatch)
    assert a["out"] == b["out"] and a["rejects.csv"] == b["rejects.csv"]
    sa, sb = json.loads(a["summary.json"]), json.loads(b["summary.json"])
    differ = {k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k)}
    assert differ <= {"generated_at", "elapsed_s"}


def test_deterministic_filter_is_byte_identical(world, tmp_path, monkeypatch):
    outs = []
    for k in ("a", "b"):
        d = tmp_path / k
        d.mkdir()
        res = _invoke([*_filter_args(world, d), "--deterministic"], monkeypatch)
        assert res.exit_code == 0, res.output
        outs.append(
            {n: (d / n).read_bytes() for n in ("shared.csv", "withheld.csv", "manifest.json")}
        )
    assert outs[0] == outs[1]
    assert SECRET.encode() not in outs[0]["manifest.json"]
