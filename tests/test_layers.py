"""Site layers: formats, geometry handling, CRS, ids, categories and guards (issue #2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from click.testing import CliRunner

from geofence.cli import cli
from geofence.errors import CRSError, LayerError, ResourceLimitError
from geofence.layers import load_layers, match_osm_tags

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"

# A square with a square hole, and a two-part multipolygon, near West Oakland.
OUTER = [(-122.300, 37.800), (-122.290, 37.800), (-122.290, 37.810), (-122.300, 37.810)]
HOLE = [(-122.297, 37.803), (-122.293, 37.803), (-122.293, 37.807), (-122.297, 37.807)]
POLY_WITH_HOLE = shapely.Polygon(OUTER, [HOLE])
MULTI = shapely.MultiPolygon(
    [shapely.box(-122.28, 37.80, -122.279, 37.801), shapely.box(-122.27, 37.80, -122.269, 37.801)]
)
HOLE_CENTRE = (-122.295, 37.805)  # inside the hole: not part of the site

VECTOR_FORMATS = {
    "geojson": ("GeoJSON", ".geojson"),
    "gpkg": ("GPKG", ".gpkg"),
    "shp": ("ESRI Shapefile", ".shp"),
    "fgb": ("FlatGeobuf", ".fgb"),
    "parquet": (None, ".parquet"),
}


def _polygons_frame(crs="EPSG:4326") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "site_id": ["campus", "two-part"],
            "name": ["Campus with courtyard", "Split clinic"],
            "category": ["school", "medical"],
        },
        geometry=[POLY_WITH_HOLE, MULTI],
        crs=crs,
    )


def _write(frame: gpd.GeoDataFrame, path: Path, driver: str | None) -> Path:
    if driver is None:
        frame.to_parquet(path)
    else:
        frame.to_file(path, driver=driver)
    return path


def _write_csv(path: Path, rows: list[dict], *, delimiter=",", bom=False) -> Path:
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("fmt", sorted(VECTOR_FORMATS))
def test_vector_formats_keep_polygons_holes_and_multipolygons(tmp_path, fmt):
    driver, ext = VECTOR_FORMATS[fmt]
    path = _write(_polygons_frame(), tmp_path / f"sites{ext}", driver)
    layer = load_layers(path)
    sites = layer.sites.set_index("site_id")
    assert list(layer.sites.columns) == ["site_id", "name", "category", "source", "geometry"]
    assert layer.sites.crs.to_epsg() == 4326
    assert sites.loc["campus", "category"] == "school"
    assert sites.loc["two-part", "name"] == "Split clinic"
    assert set(layer.sites["source"]) == {path.name}
    campus = sites.loc["campus", "geometry"]
    # Some formats store every polygon as a MultiPolygon (FlatGeobuf, Shapefile): compare
    # the shapes, not the container type.
    assert campus.geom_type in ("Polygon", "MultiPolygon")
    assert campus.equals(POLY_WITH_HOLE)
    assert shapely.get_num_interior_rings(shapely.get_parts(campus)).tolist() == [1]
    assert not campus.contains(shapely.Point(HOLE_CENTRE))
    split = sites.loc["two-part", "geometry"]
    assert split.geom_type == "MultiPolygon" and len(split.geoms) == 2
    src = layer.sources[0]
    assert (src.features_in, src.sites_loaded, src.repaired, src.rejected) == (2, 2, [], [])
    assert len(src.sha256) == 64


@pytest.mark.parametrize("fmt", ["csv", "tsv", "csv_bom", "csv_gz"])
def test_delimited_formats_make_points(tmp_path, fmt):
    rows = [
        {
            "Site Name": "Prescott School",
            "Physical Address: Latitude": "37.8082",
            "Physical Address: Longitude": "-122.2990",
            "category": "school",
        },
        {
            "Site Name": "West Side Baptist",
            "Physical Address: Latitude": "37.8072",
            "Physical Address: Longitude": "-122.3004",
            "category": "worship",
        },
    ]
    delimiter = "\t" if fmt == "tsv" else ","
    path = _write_csv(
        tmp_path / f"sites.{'tsv' if fmt == 'tsv' else 'csv'}",
        rows,
        delimiter=delimiter,
        bom=fmt == "csv_bom",
    )
    if fmt == "csv_gz":
        import gzip

        gz = tmp_path / "sites.csv.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    layer = load_layers(path)
    assert layer.sites["name"].tolist() == ["Prescott School", "West Side Baptist"]
    assert layer.sites["category"].tolist() == ["school", "worship"]
    # Points stay points: the engine grows them by the category footprint (issue #2).
    assert set(layer.sites.geom_type) == {"Point"}
    assert layer.sites.geometry.x.tolist() == [-122.2990, -122.3004]
    assert layer.sites.geometry.y.tolist() == [37.8082, 37.8072]
    assert layer.sites["site_id"].tolist() == ["sites:1", "sites:2"]


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        ("latitude", "longitude"),
        ("LAT", "LON"),
        ("Y", "X"),
        ("lat", "lng"),
        ("Facility Latitude", "Facility Longitude"),
    ],
)
def test_coordinate_columns_found_by_common_names(tmp_path, lat, lon):
    path = _write_csv(tmp_path / "s.csv", [{lat: "47.6", lon: "-122.3", "name": "a"}])
    point = load_layers(path, category="school").sites.geometry.iloc[0]
    assert (point.x, point.y) == (-122.3, 47.6)


def test_coordinate_column_overrides(tmp_path):
    # Two plausible pairs: the override decides, and the other pair is ignored.
    path = _write_csv(
        tmp_path / "s.csv",
        [{"lat_a": "47.6", "lon_a": "-122.3", "lat_b": "10", "lon_b": "10", "site": "A"}],
    )
    layer = load_layers(
        path, category="school", columns={"lat": "lat_b", "lon": "lon_b", "name": "site"}
    )
    point = layer.sites.geometry.iloc[0]
    assert (point.x, point.y, layer.sites["name"].iloc[0]) == (10.0, 10.0, "A")


def test_ambiguous_or_missing_coordinate_columns_are_errors(tmp_path):
    path = _write_csv(
        tmp_path / "s.csv", [{"Home Latitude": "1", "Work Latitude": "2", "longitude": "3"}]
    )
    with pytest.raises(
        LayerError,
        match=r"s\.csv: several \(Home Latitude, Work Latitude\) latitude column.*--columns lat=",
    ):
        load_layers(path, category="school")
    path = _write_csv(tmp_path / "t.csv", [{"where": "x"}])
    with pytest.raises(LayerError, match=r"t\.csv: no latitude column found"):
        load_layers(path, category="school")


def test_points_and_lines_in_a_vector_layer_are_kept_as_they_are(tmp_path):
    route = shapely.LineString([(-122.27, 37.80), (-122.26, 37.81)])
    frame = gpd.GeoDataFrame(
        {
            "category": ["worship", "demonstration", "demonstration"],
            "start": [None, "2024-05-01T10:00", "2024-05-02T10:00"],
            "end": [None, "2024-05-01T14:00", None],
        },
        geometry=[
            shapely.Point(-122.3, 37.8),
            route,
            shapely.MultiLineString([route.coords, [(0, 0), (1, 1)]]),
        ],
        crs=4326,
    )
    path = _write(frame, tmp_path / "mixed.gpkg", "GPKG")
    sites = load_layers(path).sites
    assert sites.geom_type.tolist() == ["Point", "LineString", "MultiLineString"]
    assert shapely.equals_exact(sites.geometry.iloc[1], route, tolerance=0)
    assert sites["start"].tolist() == [None, "2024-05-01T10:00", "2024-05-02T10:00"]
    assert sites["end"].tolist() == [None, "2024-05-01T14:00", None]
    assert "timezone" not in sites.columns  # pass-through columns only when present


# --------------------------------------------------------------------------------------
# Geometry problems


def test_bow_tie_polygon_is_repaired_and_counted(tmp_path):
    bow_tie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    assert not bow_tie.is_valid
    frame = gpd.GeoDataFrame(
        {"site_id": ["bow"], "category": ["school"]}, geometry=[bow_tie], crs=4326
    )
    layer = load_layers(_write(frame, tmp_path / "bow.geojson", "GeoJSON"))
    geom = layer.sites.geometry.iloc[0]
    assert geom.is_valid and geom.geom_type in ("Polygon", "MultiPolygon")
    # The two triangles of a unit-square bow tie cover a quarter each.
    assert geom.area == pytest.approx(0.5)
    assert geom.covers(shapely.Point(0.2, 0.5)) and geom.covers(shapely.Point(0.8, 0.5))
    assert layer.sources[0].repaired == [("bow", "make_valid: Self-intersection[0.5 0.5]")]


def test_polygon_that_repairs_to_nothing_is_rejected(tmp_path):
    flat = shapely.Polygon([(0, 0), (1, 0), (2, 0), (0, 0)])  # zero area
    frame = gpd.GeoDataFrame(
        {"site_id": ["flat", "ok"], "category": ["school"] * 2},
        geometry=[flat, shapely.box(0, 0, 1, 1)],
        crs=4326,
    )
    layer = load_layers(_write(frame, tmp_path / "flat.gpkg", "GPKG"))
    assert layer.sites["site_id"].tolist() == ["ok"]
    [(feature, reason)] = layer.sources[0].rejected
    assert feature == "flat" and "has no area after make_valid" in reason


def test_null_empty_and_unsupported_geometries_are_rejected_with_reasons(tmp_path):
    features = [
        {
            "type": "Feature",
            "properties": {"site_id": "null", "category": "school"},
            "geometry": None,
        },
        {
            "type": "Feature",
            "properties": {"site_id": "empty", "category": "school"},
            "geometry": {"type": "Polygon", "coordinates": []},
        },
        {
            "type": "Feature",
            "properties": {"site_id": "pts", "category": "school"},
            "geometry": {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]},
        },
        {
            "type": "Feature",
            "properties": {"site_id": "good", "category": "school"},
            "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
        },
    ]
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    layer = load_layers(path)
    assert layer.sites["site_id"].tolist() == ["good"]
    reasons = dict(layer.sources[0].rejected)
    assert reasons["null"] == "no geometry (null)"
    assert reasons["empty"] == "empty geometry"
    assert reasons["pts"].startswith("MultiPoint geometry is not supported")
    assert layer.sources[0].features_in == 4


def test_blank_and_bad_csv_coordinates_are_rejected(tmp_path):
    rows = [
        {"lat": "", "lon": "-122.3"},
        {"lat": "NA", "lon": "NA"},
        {"lat": "47.6 N", "lon": "-122.3"},
        {"lat": "47.6", "lon": "-122.3"},
    ]
    layer = load_layers(_write_csv(tmp_path / "r.csv", rows), category="school")
    assert layer.sites["site_id"].tolist() == ["r:4"]
    assert layer.sources[0].rejected == [
        ("r:1", "no latitude ('lat' is empty)"),
        ("r:2", "no latitude ('lat' is empty)"),
        ("r:3", "latitude '47.6 N' is not a number"),
    ]


@pytest.mark.parametrize(("lat", "lon"), [("95", "-122"), ("47", "-190")])
def test_out_of_range_coordinates_are_an_error_naming_file_and_feature(tmp_path, lat, lon):
    rows = [{"id": "a", "lat": "47", "lon": "-122"}, {"id": "b", "lat": lat, "lon": lon}]
    with pytest.raises(
        LayerError,
        match=r"^far\.csv: feature far:b: coordinate .* is outside lon -180\.\.180 / lat -90\.\.90",
    ):
        load_layers(_write_csv(tmp_path / "far.csv", rows), category="school")


_NAN, _INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (shapely.Point(_NAN, 10), r"\(nan, 10\) is not a finite number"),
        (shapely.Point(10, _INF), r"\(10, inf\) is not a finite number"),
        (shapely.LineString([(0, 0), (1, -_INF)]), r"\(1, -inf\) is not a finite number"),
        (shapely.LineString([(0, 0), (_NAN, 1), (1, 1)]), r"\(nan, 1\) is not a finite"),
        (shapely.Polygon([(0, 0), (1, 0), (_NAN, 1), (0, 0)]), r"\(nan, 1\) is not a finite"),
        (shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, _INF, 3)]), r"\(inf, 2"),
        (shapely.Point(180.000001, 0), r"\(180, 0\) is outside lon -180\.\.180"),
        (shapely.box(179.5, 0, 180.5, 1), r"\(180.5, 0\) is outside lon"),
        (shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 89, 3, 90.5)]), ".* is out"),
    ],
    ids=["nan", "inf", "line-inf", "line-nan", "polygon-nan", "multi-inf", "lon", "box", "multi"],
)
def test_non_finite_or_out_of_range_coordinates_are_an_error(tmp_path, bad, problem):
    """A bad coordinate of any geometry type is one clear error naming its feature, also
    where GEOS finds the polygon invalid and cannot repair it (NaN)."""
    path = tmp_path / "odd.parquet"
    gpd.GeoDataFrame(
        {"site_id": ["a", "b", "c"], "category": ["school"] * 3},
        geometry=[shapely.Point(-122, 47), bad, shapely.Point(-122, 46)],
        crs="EPSG:4326",
    ).to_parquet(path)
    with pytest.raises(LayerError, match=r"^odd\.parquet: feature b: coordinate " + problem):
        load_layers(path)


# --------------------------------------------------------------------------------------
# CRS


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_file_without_crs_needs_crs_option(tmp_path):
    frame = gpd.GeoDataFrame(
        {"site_id": ["a"], "category": ["school"]}, geometry=[shapely.Point(550_000, 4_185_000)]
    )
    path = _write(frame, tmp_path / "nocrs.shp", "ESRI Shapefile")
    assert not path.with_suffix(".prj").exists()
    with pytest.raises(
        CRSError, match=r"^nocrs\.shp: the Shapefile file has no CRS; give it with --crs"
    ):
        load_layers(path)
    layer = load_layers(path, crs="EPSG:32610")
    assert layer.sources[0].crs == "EPSG:32610 (given)"
    assert layer.sites.geometry.iloc[0].x == pytest.approx(-122.43, abs=0.01)


def test_geojson_and_csv_without_crs_are_taken_as_wgs84(tmp_path):
    path = tmp_path / "plain.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"category": "school"},
                        "geometry": {"type": "Point", "coordinates": [-122.3, 47.6]},
                    }
                ],
            }
        )
    )
    point = load_layers(path).sites.geometry.iloc[0]
    assert (point.x, point.y) == (-122.3, 47.6)


@pytest.mark.parametrize("epsg", [32610, 2926])
def test_projected_layer_lands_at_the_right_lon_lat(tmp_path, epsg):
    # Known lon/lat -> projected with pyproj directly; the loader must undo it.
    lonlat = np.array([[-122.3321, 47.6062], [-122.2711, 37.8044], [-122.4194, 37.7749]])
    fwd = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    x, y = fwd.transform(lonlat[:, 0], lonlat[:, 1])
    frame = gpd.GeoDataFrame(
        {"category": ["school"] * 3}, geometry=shapely.points(x, y), crs=f"EPSG:{epsg}"
    )
    layer = load_layers(_write(frame, tmp_path / "projected.gpkg", "GPKG"))
    got = shapely.get_coordinates(layer.sites.geometry.to_numpy())
    np.testing.assert_allclose(got, lonlat, atol=1e-7, rtol=0)
    assert layer.sources[0].crs == f"EPSG:{epsg}"


def test_utm_central_meridian_maps_to_minus_123(tmp_path):
    # Independent of pyproj's forward direction: in UTM zone 10N, easting 500 000 m is
    # the central meridian, 123 degrees W, at every northing.
    frame = gpd.GeoDataFrame(
        {"category": ["school"] * 2},
        geometry=shapely.points([500_000, 500_000], [0, 4_200_000]),
        crs=32610,
    )
    layer = load_layers(_write(frame, tmp_path / "utm.fgb", "FlatGeobuf"))
    np.testing.assert_allclose(layer.sites.geometry.x, [-123.0, -123.0], atol=1e-9)
    # FlatGeobuf stores features in spatial-index order, so look for the equator point.
    assert layer.sites.geometry.y.abs().min() == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------
# Ids


def test_duplicate_site_ids_are_an_error_naming_them(tmp_path):
    frame = gpd.GeoDataFrame(
        {"site_id": ["a", "b", "a"], "category": ["school"] * 3},
        geometry=shapely.points([0, 1, 2], [0, 1, 2]),
        crs=4326,
    )
    with pytest.raises(LayerError, match=r"duplicate site_id in the layers: a \(dups\.geojson\)"):
        load_layers(_write(frame, tmp_path / "dups.geojson", "GeoJSON"))


def test_duplicate_site_ids_across_files(tmp_path):
    frame = gpd.GeoDataFrame(
        {"site_id": ["x"], "category": ["school"]}, geometry=[shapely.Point(0, 0)], crs=4326
    )
    one = _write(frame, tmp_path / "one.geojson", "GeoJSON")
    two = _write(frame, tmp_path / "two.geojson", "GeoJSON")
    with pytest.raises(LayerError, match=r"x \(one\.geojson\), x \(two\.geojson\)"):
        load_layers([one, two])


def test_id_columns_are_prefixed_by_file_so_objectids_do_not_collide(tmp_path):
    # HIFLD hospitals and places of worship both number OBJECTID from 1.
    a = _write_csv(tmp_path / "hospitals.csv", [{"OBJECTID": "1", "lat": "1", "lon": "1"}])
    b = _write_csv(tmp_path / "worship.csv", [{"OBJECTID": "1", "lat": "2", "lon": "2"}])
    layer = load_layers([a, b], category="school")
    assert layer.sites["site_id"].tolist() == ["hospitals:1", "worship:1"]


def test_generated_ids_are_stable_and_leading_zeros_kept(tmp_path):
    rows = [
        {"CDSCode": "01611190130229", "lat": "37.8", "lon": "-122.2"},
        {"CDSCode": "01612590130146", "lat": "37.7", "lon": "-122.2"},
    ]
    path = _write_csv(tmp_path / "cde.csv", rows)
    first = load_layers(path, category="school").sites["site_id"].tolist()
    assert first == ["cde:01611190130229", "cde:01612590130146"]
    assert load_layers(path, category="school").sites["site_id"].tolist() == first


# --------------------------------------------------------------------------------------
# Categories


def test_category_column_with_unknown_ids_is_an_error(tmp_path):
    path = _write_csv(
        tmp_path / "c.csv",
        [
            {"lat": "1", "lon": "1", "category": "school"},
            {"lat": "1", "lon": "2", "category": "shcool"},
        ],
    )
    with pytest.raises(
        LayerError, match=r"c\.csv: feature 2: column 'category' holds 'shcool', not category ids"
    ):
        load_layers(path)


def test_file_without_category_needs_one(tmp_path):
    path = _write_csv(tmp_path / "u.csv", [{"lat": "1", "lon": "1"}])
    with pytest.raises(LayerError, match=r"u\.csv: cannot tell the sites' category.*--category"):
        load_layers(path)
    with pytest.raises(LayerError, match="'playground' is not a category id"):
        load_layers(path, category="playground")


def test_hifld_type_columns_are_mapped_and_unknown_values_rejected(tmp_path):
    rows = [
        {
            "ID": "1",
            "NAME": "General",
            "TYPE": "GENERAL ACUTE CARE",
            "NAICS_CODE": "622110",
            "BEDS": "1",
            "TRAUMA": "",
            "LATITUDE": "37.8",
            "LONGITUDE": "-122.2",
        },
        {
            "ID": "2",
            "NAME": "Psych",
            "TYPE": "psychiatric",
            "NAICS_CODE": "622210",
            "BEDS": "1",
            "TRAUMA": "",
            "LATITUDE": "37.8",
            "LONGITUDE": "-122.3",
        },
        {
            "ID": "3",
            "NAME": "Vet",
            "TYPE": "VETERINARY",
            "NAICS_CODE": "541940",
            "BEDS": "1",
            "TRAUMA": "",
            "LATITUDE": "37.8",
            "LONGITUDE": "-122.4",
        },
    ]
    layer = load_layers(_write_csv(tmp_path / "Hospitals.csv", rows, bom=True))
    assert layer.sites["category"].tolist() == ["medical", "medical"]
    assert layer.sources[0].rejected == [
        ("Hospitals:3", "TYPE value 'VETERINARY' is not in category map hifld-hospitals")
    ]


def test_osm_tags_are_matched_first_rule_wins():
    tags = pd.DataFrame(
        {
            "amenity": [
                "social_facility",
                "social_facility",
                "school",
                None,
                "pharmacy",
                "kindergarten",
            ],
            "social_facility": ["day_care", "shelter", None, None, None, None],
            "building": [None, None, "church", "synagogue", None, None],
        }
    )
    # policy.md A: day_care -> childcare, shelter -> social services; amenity beats the
    # weaker building fallback; pharmacy is deliberately unmapped.
    assert match_osm_tags(tags).tolist() == [
        "childcare",
        "social_services",
        "school",
        "worship",
        None,
        "childcare",
    ]


def test_osm_tag_columns_in_a_layer_are_used(tmp_path):
    frame = gpd.GeoDataFrame(
        {
            "osm_id": ["1", "2"],
            "name": ["Playground", "Cafe"],
            "amenity": [None, "cafe"],
            "leisure": ["playground", None],
        },
        geometry=[shapely.box(0, 0, 1, 1), shapely.Point(2, 2)],
        crs=4326,
    )
    layer = load_layers(_write(frame, tmp_path / "osm.gpkg", "GPKG"))
    assert layer.sites[["site_id", "category"]].values.tolist() == [["osm:1", "children_gather"]]
    assert layer.sources[0].rejected == [("osm:2", "no OSM tag of layers/osm_tags.toml matches")]


# --------------------------------------------------------------------------------------
# Layer definitions and guards


def test_layer_definition_toml(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_csv(
        data / "kinds.csv",
        [
            {"kind": "clinics", "n": "A", "y": "37.5", "x": "-122.3"},
            {"kind": "parks", "n": "B", "y": "37.6", "x": "-122.3"},
        ],
    )
    definition = tmp_path / "kinds.toml"
    definition.write_text(
        'path = "data/kinds.csv"\n'
        '[columns]\nname = "n"\n'
        '[category_map]\ncolumn = "kind"\nvalues = { clinics = "medical" }\n'
    )
    # --category given for bare files must not relabel a definition's sites.
    layer = load_layers([definition], category="school")
    assert layer.sites[["name", "category", "source"]].values.tolist() == [
        ["A", "medical", "kinds.csv"]
    ]
    assert layer.sources[0].rejected == [
        ("kinds:2", "kind value 'parks' is not in category map kinds.category_map")
    ]


def test_layer_definition_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('path = "x.csv"\ncolour = "red"\n')
    with pytest.raises(LayerError, match=r"layer definition bad\.toml: colour: unknown key"):
        load_layers(bad)
    bad.write_text('path = "missing.csv"\ncategory = "school"\n')
    with pytest.raises(LayerError, match=r"bad\.toml: path: missing\.csv not found"):
        load_layers(bad)


def test_vertex_and_feature_guards(tmp_path):
    circle = shapely.Point(0, 0).buffer(1, quad_segs=64)  # 257 vertices
    frame = gpd.GeoDataFrame(
        {"site_id": ["c"], "category": ["school"]}, geometry=[circle], crs=4326
    )
    path = _write(frame, tmp_path / "circle.geojson", "GeoJSON")
    with pytest.raises(
        ResourceLimitError,
        match=r"circle\.geojson: feature c has 257 vertices, more than the limit of 100 per site; .*--max-vertices",
    ):
        load_layers(path, max_vertices_per_site=100)
    rows = [{"lat": "1", "lon": str(i)} for i in range(5)]
    with pytest.raises(ResourceLimitError, match=r"more than 4 features .*--max-features"):
        load_layers(_write_csv(tmp_path / "many.csv", rows), category="school", max_features=4)
    assert len(load_layers(tmp_path / "many.csv", category="school", max_features=5)) == 5


def test_missing_file(tmp_path):
    with pytest.raises(LayerError, match="no such file"):
        load_layers(tmp_path / "nope.geojson")


# --------------------------------------------------------------------------------------
# Sample data and `geofence layers check`


def _csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_layers_check_on_seattle_sample():
    seattle = SAMPLE / "seattle"
    result = CliRunner().invoke(
        cli, ["layers", "check", "--json", *sorted(map(str, seattle.glob("*.toml")))]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # Expected counts read from the files with the csv/json modules, not with geofence.
    preschools = _csv_rows(seattle / "seattle_preschool_program_sites.csv")
    blank = [r for r in preschools if not r["Physical Address: Latitude"].strip()]
    schools = json.loads((seattle / "seattle_public_schools.geojson").read_text())["features"]
    hospitals = _csv_rows(seattle / "king_county_hospitals.csv")
    assert report["categories"] == {
        "school": len(schools),
        "childcare": len(preschools) - len(blank),
        "medical": len(hospitals),
    }
    by_file = {s["file"]: s for s in report["sources"]}
    assert len(by_file["seattle_preschool_program_sites.csv"]["rejected"]) == len(blank) >= 1
    west, south, east, north = report["extent"]
    assert -123 < west < east < -121 and 47 < south < north < 48


def test_layers_check_on_oakland_sample_text_output():
    oakland = SAMPLE / "oakland"
    paths = [*sorted(map(str, oakland.glob("*.toml"))), str(oakland / "osm_sites.geojson")]
    result = CliRunner().invoke(cli, ["layers", "check", *paths])
    assert result.exit_code == 0, result.output
    worship = _csv_rows(oakland / "places_of_worship.csv")
    osm = json.loads((oakland / "osm_sites.geojson").read_text())["features"]
    osm_worship = sum(f["properties"]["category"] == "worship" for f in osm)
    assert f"worship           {len(worship) + osm_worship}" in result.output
    assert "extent (EPSG:4326 lon/lat):" in result.output
    # The OSM extract has a relation with an inner ring (UC Hall): its hole survives.
    layer = load_layers(oakland / "osm_sites.geojson")
    uc_hall = layer.sites.set_index("site_id").loc["osm:relation/3830591", "geometry"]
    assert len(uc_hall.interiors) == 1


def test_layers_check_errors_exit_1(tmp_path):
    path = _write_csv(tmp_path / "u.csv", [{"lat": "1", "lon": "1"}])
    result = CliRunner().invoke(cli, ["layers", "check", str(path)])
    assert result.exit_code == 1
    assert "u.csv: cannot tell the sites' category" in result.output
    result = CliRunner().invoke(cli, ["layers", "check", str(path), "--category", "school"])
    assert result.exit_code == 0 and "school            1" in result.output


def test_geoparquet_read_by_pyarrow_equals_geopandas_read(tmp_path, monkeypatch):
    """The WKB GeoParquet fast path loads what geopandas.read_parquet loads (issue #10)."""
    import dataclasses

    import geofence.layers as layers_mod

    merc = gpd.GeoDataFrame(
        {
            "name": ["a", None, "c", "d"],
            "OBJECTID": [1, 2, 3, 4],
            "value": [1.5, None, 3.0, 4.0],
            "category": ["school", "school", "medical", "worship"],
        },
        geometry=[
            shapely.Point(-13600000, 6000000),
            shapely.box(-13600000, 6000000, -13599000, 6001000),
            None,
            shapely.Polygon(  # a bow tie: repaired
                [
                    (-13600000, 6000000),
                    (-13599000, 6001000),
                    (-13599000, 6000000),
                    (-13600000, 6001000),
                ]
            ),
        ],
        crs="EPSG:3857",
        index=[10, 11, 12, 13],
    )
    merc.to_parquet(tmp_path / "merc.parquet")
    merc.to_crs(4326).to_parquet(tmp_path / "wgs.parquet")
    merc.to_crs(4326).set_crs(None, allow_override=True).to_parquet(tmp_path / "nocrs.parquet")
    points = merc.to_crs(4326).iloc[[0]]  # GeoArrow encodings hold one geometry type
    points.to_parquet(tmp_path / "native.parquet", geometry_encoding="geoarrow")
    calls = []
    fast = layers_mod._read_geoparquet_wkb

    def counted(path):
        out = fast(path)
        calls.append(out is not None)
        return out

    def load(name):
        layer = load_layers(tmp_path / name, crs="EPSG:4326" if name == "nocrs.parquet" else None)
        s = layer.sites
        return (
            {c: s[c].astype(object).tolist() for c in s.columns if c != "geometry"},
            shapely.to_wkb(s.geometry.values).tolist(),
            [dataclasses.asdict(x) for x in layer.sources],
        )

    names = ["merc.parquet", "wgs.parquet", "nocrs.parquet", "native.parquet"]
    monkeypatch.setattr(layers_mod, "_read_geoparquet_wkb", counted)
    by_pyarrow = {n: load(n) for n in names}
    assert calls == [True, True, True, False]  # GeoArrow-encoded files go to geopandas
    monkeypatch.setattr(layers_mod, "_read_geoparquet_wkb", lambda path: None)
    by_geopandas = {n: load(n) for n in names}
    assert by_pyarrow == by_geopandas
    attrs, _wkb, sources = by_pyarrow["merc.parquet"]
    assert attrs["site_id"] == ["merc:1", "merc:2", "merc:4"]
    assert sources[0]["crs"] == "EPSG:3857" and len(sources[0]["repaired"]) == 1
    assert sources[0]["rejected"] == [("merc:3", "no geometry (null)")]
