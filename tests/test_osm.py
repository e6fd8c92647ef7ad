"""OpenStreetMap import (issue #8): every case of the issue in one fixture made in code,
written as OSM XML, PBF and Overpass JSON (``out body`` and ``out geom``), and the real
OSMnx Oakland extracts checked against counts made here with xml.etree / json."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr

import geopandas as gpd
import osmium
import pyogrio
import pytest
import shapely
from click.testing import CliRunner

from geofence.cli import cli
from geofence.errors import LayerError, UsageError
from geofence.layers import load_layers
from geofence.osm import ATTRIBUTION, import_osm, parse_bbox, read_osm

ROOT = Path(__file__).resolve().parents[1]
OAKLAND = ROOT / "sample_data" / "osm"
DATA_TIME = "2024-05-01T12:00:00Z"

# --------------------------------------------------------------------------------------
# The fixture: an element model written out in every format


class Model:
    """Nodes, ways and relations; nodes are made per coordinate and shared when repeated."""

    def __init__(self) -> None:
        self.nodes: dict[int, tuple[float, float, dict]] = {}
        self.ways: dict[int, tuple[list[int], dict]] = {}
        self.relations: dict[int, tuple[list[tuple[str, int, str]], dict]] = {}
        self._by_xy: dict[tuple[float, float], int] = {}

    def node(self, lon: float, lat: float, tags: dict | None = None, nid: int | None = None) -> int:
        key = (round(lon, 7), round(lat, 7))
        if tags is None and key in self._by_xy:
            return self._by_xy[key]
        nid = nid or 1000 + len(self.nodes)
        self.nodes[nid] = (key[0], key[1], tags or {})
        if not tags:
            self._by_xy[key] = nid
        return nid

    def way(self, wid: int, coords: list[tuple[float, float]], tags: dict | None = None) -> int:
        self.ways[wid] = ([self.node(x, y) for x, y in coords], tags or {})
        return wid

    def relation(self, rid: int, members: list[tuple[str, int, str]], tags: dict) -> int:
        self.relations[rid] = (members, tags)
        return rid

    def coords(self, wid: int) -> list[tuple[float, float]]:
        return [self.nodes[n][:2] for n in self.ways[wid][0]]

    # -- writers ------------------------------------------------------------------------

    def xml(self) -> str:
        def tags(t: dict) -> str:
            return "".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in t.items())

        out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
        out.append(f'<meta osm_base="{DATA_TIME}"/>')
        for nid, (lon, lat, t) in sorted(self.nodes.items()):
            out.append(f'<node id="{nid}" version="1" lat="{lat}" lon="{lon}">{tags(t)}</node>')
        for wid, (refs, t) in sorted(self.ways.items()):
            nds = "".join(f'<nd ref="{r}"/>' for r in refs)
            out.append(f'<way id="{wid}" version="1">{nds}{tags(t)}</way>')
        names = {"n": "node", "w": "way", "r": "relation"}
        for rid, (members, t) in sorted(self.relations.items()):
            ms = "".join(
                f'<member type="{names[k]}" ref="{r}" role="{role}"/>' for k, r, role in members
            )
            out.append(f'<relation id="{rid}" version="1">{ms}{tags(t)}</relation>')
        out.append("</osm>")
        return "\n".join(out)

    def overpass(self, geom: bool) -> dict:
        """Overpass JSON as `out body` (geom=False) or `out geom` (ways and relations
        carry their coordinates; only tagged nodes are listed)."""
        els = []
        for nid, (lon, lat, t) in sorted(self.nodes.items()):
            if geom and not t:
                continue
            el = {"type": "node", "id": nid, "lat": lat, "lon": lon}
            if t:
                el["tags"] = t
            els.append(el)
        member_only = {r for ms, _ in self.relations.values() for k, r, _ in ms if k == "w"}
        for wid, (refs, t) in sorted(self.ways.items()):
            if geom and wid in member_only and not t:
                continue  # out geom of a relation query: member ways come inside it
            el = {"type": "way", "id": wid, "nodes": refs}
            if geom:
                el["geometry"] = [{"lat": self.nodes[r][1], "lon": self.nodes[r][0]} for r in refs]
            if t:
                el["tags"] = t
            els.append(el)
        names = {"n": "node", "w": "way", "r": "relation"}
        for rid, (members, t) in sorted(self.relations.items()):
            ms = []
            for k, ref, role in members:
                m = {"type": names[k], "ref": ref, "role": role}
                if geom and k == "w" and ref in self.ways:
                    m["geometry"] = [
                        {"lat": self.nodes[r][1], "lon": self.nodes[r][0]}
                        for r in self.ways[ref][0]
                    ]
                ms.append(m)
            els.append({"type": "relation", "id": rid, "members": ms, "tags": t})
        return {
            "version": 0.6,
            "generator": "Overpass API (test)",
            "osm3s": {"timestamp_osm_base": DATA_TIME, "copyright": "ODbL"},
            "elements": els,
        }


def sq(x0: float, y0: float, size: float) -> list[tuple[float, float]]:
    """A closed square ring, counter-clockwise."""
    return [(x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size), (x0, y0)]


def cell(k: int) -> tuple[float, float]:
    """Each case in its own place, ~900 m apart, so no two cases touch."""
    return -122.30 + 0.01 * k, 37.80


def build_fixture() -> tuple[Model, dict[str, dict]]:
    """The issue's cases, each with the site it must give (with --building-hints)."""
    m = Model()
    exp: dict[str, dict] = {}

    def expect(site_id, category, geometry, osm_ids=None, name=""):
        exp[site_id] = {
            "category": category,
            "geometry": geometry,
            "osm_ids": osm_ids or site_id[4:],
            "name": name,
        }

    # 1. node POI
    x, y = cell(0)
    m.node(x, y, {"amenity": "place_of_worship", "name": "St Node"}, nid=1)
    expect("osm:n1", "worship", shapely.Point(x, y), name="St Node")

    # 2. closed way
    x, y = cell(1)
    m.way(1, sq(x, y, 0.002), {"amenity": "hospital", "name": "Closed Way Hospital"})
    expect("osm:w1", "medical", shapely.Polygon(sq(x, y, 0.002)), name="Closed Way Hospital")

    # 3. building in school grounds, and a school node inside them: one site, every id
    x, y = cell(2)
    m.way(2, sq(x, y, 0.004), {"amenity": "school", "name": "Grounds School"})
    m.way(3, sq(x + 0.001, y + 0.001, 0.001), {"building": "school"})
    m.node(x + 0.003, y + 0.003, {"amenity": "school", "name": "School Node"}, nid=2)
    expect("osm:w2", "school", shapely.Polygon(sq(x, y, 0.004)), "w2;n2;w3", "Grounds School")

    # 4. multipolygon: outer split over two ways, one hole
    x, y = cell(3)
    s = 0.004
    m.way(4, [(x, y), (x + s, y), (x + s, y + s)])
    m.way(5, [(x + s, y + s), (x, y + s), (x, y)])
    hole = sq(x + 0.001, y + 0.001, 0.002)
    m.way(6, hole)
    m.relation(
        1,
        [("w", 4, "outer"), ("w", 5, "outer"), ("w", 6, "inner")],
        {"type": "multipolygon", "amenity": "university", "name": "Split U"},
    )
    expect("osm:r1", "school", shapely.Polygon(sq(x, y, s), [hole]), name="Split U")

    # 5. two outers
    x, y = cell(4)
    m.way(7, sq(x, y, 0.001))
    m.way(8, sq(x + 0.002, y, 0.001))
    m.relation(
        2, [("w", 7, "outer"), ("w", 8, "outer")], {"type": "multipolygon", "leisure": "playground"}
    )
    expect(
        "osm:r2",
        "children_gather",
        shapely.MultiPolygon(
            [shapely.Polygon(sq(x, y, 0.001)), shapely.Polygon(sq(x + 0.002, y, 0.001))]
        ),
    )

    # 6. untagged relation: its tagged outer way is a site on its own, the relation is not
    x, y = cell(5)
    m.way(9, sq(x, y, 0.002), {"amenity": "library", "name": "Outer Way Library"})
    m.relation(3, [("w", 9, "outer")], {"type": "multipolygon"})
    expect("osm:w9", "library", shapely.Polygon(sq(x, y, 0.002)), name="Outer Way Library")

    # 7. unclosed way with a category tag: a line
    x, y = cell(6)
    line = [(x, y), (x + 0.002, y), (x + 0.002, y + 0.002)]
    m.way(10, line, {"leisure": "playground"})
    expect("osm:w10", "children_gather", shapely.LineString(line))

    # 8. missing member: kept as the member line that is there
    x, y = cell(7)
    half = [(x, y), (x + 0.002, y), (x + 0.002, y + 0.002)]
    m.way(11, half)
    m.relation(
        4,
        [("w", 11, "outer"), ("w", 999, "outer")],
        {"type": "multipolygon", "amenity": "courthouse"},
    )
    expect("osm:r4", "courthouse", shapely.LineString(half))

    # 9. bow-tie: both lobes kept
    x, y = cell(8)
    d = 0.002
    m.way(12, [(x, y), (x + d, y + d), (x + d, y), (x, y + d), (x, y)], {"amenity": "kindergarten"})
    c = (x + d / 2, y + d / 2)
    expect(
        "osm:w12",
        "childcare",
        shapely.MultiPolygon(
            [
                shapely.Polygon([(x, y), c, (x, y + d)]),
                shapely.Polygon([(x + d, y), (x + d, y + d), c]),
            ]
        ),
    )

    # 10. healthcare=* only
    x, y = cell(9)
    m.way(13, sq(x, y, 0.001), {"healthcare": "physiotherapist"})
    expect("osm:w13", "medical", shapely.Polygon(sq(x, y, 0.001)))

    # 11. type=boundary
    x, y = cell(10)
    m.way(14, sq(x, y, 0.003))
    m.relation(
        5, [("w", 14, "outer")], {"type": "boundary", "landuse": "religious", "name": "Abbey Land"}
    )
    expect("osm:r5", "worship", shapely.Polygon(sq(x, y, 0.003)), name="Abbey Land")

    # 12. inner ring touching the outer ring at one node: still a hole (valid OGC polygon)
    x, y = cell(11)
    outer = sq(x, y, 0.004)
    inner = [(x, y), (x + 0.002, y + 0.001), (x + 0.001, y + 0.002), (x, y)]
    m.way(15, outer)
    m.way(16, inner)
    m.relation(
        6,
        [("w", 15, "outer"), ("w", 16, "inner")],
        {"type": "multipolygon", "amenity": "social_facility", "social_facility": "shelter"},
    )
    expect("osm:r6", "social_services", shapely.Polygon(outer, [inner[::-1]]))

    # 13. two overlapping clinics: one site listing both ids, named by the larger
    x, y = cell(12)
    m.way(17, sq(x, y, 0.002), {"amenity": "clinic", "name": "Big Clinic"})
    m.way(18, sq(x + 0.001, y + 0.001, 0.0015), {"amenity": "clinic", "name": "Small Clinic"})
    expect(
        "osm:w17",
        "medical",
        shapely.union(
            shapely.Polygon(sq(x, y, 0.002)), shapely.Polygon(sq(x + 0.001, y + 0.001, 0.0015))
        ),
        "w17;w18",
        "Big Clinic",
    )

    # 14. social_facility=* without amenity (tag table extension) and a plain cafe (no site)
    x, y = cell(13)
    m.node(x, y, {"social_facility": "food_bank"}, nid=3)
    m.node(x + 0.001, y, {"amenity": "cafe"}, nid=4)
    expect("osm:n3", "social_services", shapely.Point(x, y))
    return m, exp


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory) -> tuple[dict[str, Path], dict]:
    model, expected = build_fixture()
    d = tmp_path_factory.mktemp("osm")
    paths = {"xml": d / "fixture.osm"}
    paths["xml"].write_text(model.xml(), encoding="utf-8")
    paths["xml.bz2"] = d / "fixture.osm.bz2"
    paths["xml.bz2"].write_bytes(bz2.compress(paths["xml"].read_bytes()))
    # PBF: the same objects through libosmium's writer, with the replication timestamp.
    paths["pbf"] = d / "fixture.osm.pbf"
    header = osmium.io.Header()
    header.set("osmosis_replication_timestamp", DATA_TIME)
    with osmium.SimpleWriter(str(paths["pbf"]), header=header) as writer:
        for obj in osmium.FileProcessor(str(paths["xml"])):
            writer.add(obj)
    paths["overpass-body"] = d / "body.json"
    paths["overpass-body"].write_text(json.dumps(model.overpass(geom=False), indent=1))
    paths["overpass-geom"] = d / "geom.json.gz"
    paths["overpass-geom"].write_bytes(
        gzip.compress(json.dumps(model.overpass(geom=True)).encode())
    )
    return paths, expected


def _sites(result) -> dict[str, dict]:
    return {r["site_id"]: r for r in result.sites.to_dict("records")}


def _same_shape(a, b) -> bool:
    """Same geometry type and the same point set (to 1e-7 degrees, OSM's precision)."""
    if shapely.get_type_id(a) != shapely.get_type_id(b):
        return False
    return (
        shapely.area(shapely.symmetric_difference(a, b)) < 1e-12
        and shapely.hausdorff_distance(a, b) < 2e-7
    )


# --------------------------------------------------------------------------------------
# Fixture: each case gives its expected site, in every input format


@pytest.mark.parametrize("fmt", ["xml", "xml.bz2", "pbf", "overpass-body", "overpass-geom"])
def test_every_case_gives_its_expected_site(fixture_files, fmt):
    paths, expected = fixture_files
    result = read_osm(paths[fmt], building_hints=True)
    got = _sites(result)
    assert sorted(got) == sorted(expected)
    for sid, exp in expected.items():
        site = got[sid]
        assert site["category"] == exp["category"], sid
        assert site["name"] == exp["name"], sid
        assert site["osm_ids"] == exp["osm_ids"], sid
        assert _same_shape(site["geometry"], exp["geometry"]), (sid, site["geometry"].wkt)
        assert site["data_timestamp"] == DATA_TIME
        assert site["license"] == "ODbL-1.0" and site["attribution"] == ATTRIBUTION
    # the notes say what was done, by id
    assert [r for r, _ in result.repaired] == ["osm:w12"]
    assert result.incomplete == [("osm:r4", ["w999"], "kept as member lines")]
    assert [sid for sid, _ in result.lines] == ["osm:w10"]
    assert result.merged == [("osm:w2", ["w2", "w3"]), ("osm:w17", ["w17", "w18"])]
    assert result.dropped == [("osm:n2", "osm:w2")]


def test_formats_give_identical_sites(fixture_files):
    paths, _ = fixture_files
    frames = {fmt: read_osm(p, building_hints=True).sites for fmt, p in paths.items()}
    ref = frames.pop("xml")
    for fmt, frame in frames.items():
        assert frame.drop(columns=["geometry", "source"]).equals(
            ref.drop(columns=["geometry", "source"])
        ), fmt
        assert list(shapely.to_wkb(frame.geometry.values)) == list(
            shapely.to_wkb(ref.geometry.values)
        ), fmt


def test_matched_tags_and_site_ids(fixture_files):
    paths, _ = fixture_files
    got = _sites(read_osm(paths["xml"], building_hints=True))
    assert json.loads(got["osm:r6"]["tags"]) == {
        "amenity": "social_facility",
        "social_facility": "shelter",
    }
    assert json.loads(got["osm:w13"]["tags"]) == {"healthcare": "physiotherapist"}
    assert got["osm:n1"]["source"] == "OpenStreetMap (fixture.osm)"


def test_building_hints_are_opt_in(fixture_files):
    paths, _ = fixture_files
    got = _sites(read_osm(paths["xml"]))
    assert got["osm:w2"]["osm_ids"] == "w2;n2"  # the building=school way is no site without hints
    assert "osm:w3" not in got


@pytest.mark.parametrize(
    ("mode", "present"),
    [("lines", True), ("skip", False)],
)
def test_incomplete_relation_modes(fixture_files, mode, present):
    paths, _ = fixture_files
    result = read_osm(paths["pbf"], incomplete=mode)
    assert ("osm:r4" in _sites(result)) is present
    assert [r for r, _, _ in result.incomplete] == ["osm:r4"]


def test_incomplete_error_lists_the_relation(fixture_files):
    paths, _ = fixture_files
    with pytest.raises(LayerError, match=r"osm:r4 \(missing w999\)"):
        read_osm(paths["xml"], incomplete="error")


def test_category_and_bbox_filters(fixture_files):
    paths, expected = fixture_files
    got = _sites(read_osm(paths["xml"], categories=["medical"], building_hints=True))
    assert sorted(got) == sorted(s for s, e in expected.items() if e["category"] == "medical")
    x, y = cell(2)
    got = _sites(read_osm(paths["xml"], bbox=(x - 0.0005, y - 0.0005, x + 0.0045, y + 0.0045)))
    assert sorted(got) == ["osm:w2"]


def test_unclosed_way_and_incomplete_relation_are_warned(fixture_files, caplog):
    paths, _ = fixture_files
    with caplog.at_level(logging.WARNING, logger="geofence.osm"):
        read_osm(paths["xml"])
    text = caplog.text
    assert "osm:w10: unclosed way with a category tag; kept as a line" in text
    assert "osm:r4: members missing from the input (w999)" in text


def test_summary_line(fixture_files):
    paths, expected = fixture_files
    line = read_osm(paths["xml"], building_hints=True).summary_line()
    assert line.startswith(
        f"{len(expected)} OSM sites (school 2, childcare 1, medical 3, worship 2, "
    )
    assert (
        "repaired 1, merged 4 into 2, dropped 1, incomplete 1 (osm:r4: kept as member lines), lines 1"
        in line
    )


def test_several_inputs_are_one_layer_without_repeats(fixture_files):
    paths, expected = fixture_files
    result = read_osm([paths["xml"], paths["pbf"]], building_hints=True)
    assert sorted(_sites(result)) == sorted(expected)
    assert [f["format"] for f in result.files] == ["xml", "pbf"]


# --------------------------------------------------------------------------------------
# Output: every layer format, loadable by the layer loader, ODbL recorded


@pytest.mark.parametrize("ext", [".geojson", ".gpkg", ".fgb", ".parquet"])
def test_written_layer_loads_with_its_sites_and_attribution(fixture_files, tmp_path, ext):
    paths, expected = fixture_files
    out = tmp_path / f"osm_sites{ext}"
    import_osm([paths["pbf"]], out, building_hints=True)
    layer = load_layers(out)
    assert sorted(layer.sites["site_id"]) == sorted(expected)
    cats = dict(zip(layer.sites["site_id"], layer.sites["category"], strict=True))
    assert cats == {s: e["category"] for s, e in expected.items()}
    source = layer.sources[0]
    assert source.attribution == ATTRIBUTION and source.license == "ODbL-1.0"
    assert not list(tmp_path.glob(".*partial*"))  # nothing left beside the output


def test_output_is_deterministic(fixture_files, tmp_path):
    paths, _ = fixture_files
    for ext in (".geojson", ".gpkg"):
        a, b = tmp_path / "a" / f"sites{ext}", tmp_path / "b" / f"sites{ext}"
        import_osm(paths["xml"], a)
        import_osm(paths["xml"], b)
        assert a.read_bytes() == b.read_bytes(), ext


def test_unknown_output_format_writes_nothing(fixture_files, tmp_path):
    paths, _ = fixture_files
    with pytest.raises(LayerError, match=r"sites\.txt: cannot tell the layer format"):
        import_osm(paths["xml"], tmp_path / "sites.txt")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello", r"not an OSM file"),
        (b'{"elements": [{"type": "node", "id": 1, "lat": 1, "lon": 1}', r"cut short or malformed"),
        (
            b'{"elements": [], "remark": "runtime error: Query timed out in \\"query\\""}',
            r"answer is incomplete",
        ),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(LayerError, match=message):
        read_osm(bad)


def test_bad_options(tmp_path):
    with pytest.raises(UsageError, match="--bbox"):
        parse_bbox("1,2,3")
    with pytest.raises(UsageError, match="S <= N"):
        parse_bbox("0,10,1,5")
    with pytest.raises(UsageError, match="incomplete"):
        read_osm(tmp_path / "x.osm", incomplete="guess")
    with pytest.raises(LayerError, match="no such file"):
        read_osm(tmp_path / "missing.osm")


# --------------------------------------------------------------------------------------
# CLI


def test_cli_import_osm_and_layers_check(fixture_files, tmp_path):
    paths, expected = fixture_files
    out = tmp_path / "sites.gpkg"
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "layers",
            "import-osm",
            str(paths["pbf"]),
            str(paths["overpass-geom"]),
            "-o",
            str(out),
            "--building-hints",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = [line for line in res.stderr.splitlines() if "OSM sites" in line]
    assert len(summary) == 1 and summary[0].startswith(f"geofence: {len(expected)} OSM sites")
    assert len(pyogrio.read_dataframe(out)) == len(expected)
    res = runner.invoke(cli, ["layers", "check", str(out)])
    assert res.exit_code == 0, res.output
    assert "ODbL" in res.output and ATTRIBUTION in res.output

    res = runner.invoke(
        cli, ["layers", "import-osm", str(paths["xml"]), "-o", str(out), "--incomplete", "error"]
    )
    assert res.exit_code == 1 and "osm:r4" in res.stderr
    res = runner.invoke(
        cli, ["layers", "import-osm", str(paths["xml"]), "-o", str(out), "--bbox", "1,2"]
    )
    assert res.exit_code != 0 and "--bbox" in res.output + res.stderr


# --------------------------------------------------------------------------------------
# Real data: the OSMnx Oakland extracts (sample_data/osm/, © OpenStreetMap contributors)


def _table_rules() -> list[tuple[str, list[tuple[str, set | None]]]]:
    """The shipped tag table, read here with tomllib (independent of geofence.layers)."""
    data = tomllib.loads((ROOT / "layers" / "osm_tags.toml").read_text(encoding="utf-8"))
    rules = []
    for r in data["rules"]:
        match = [
            (k, None if v == "*" else {v} if isinstance(v, str) else set(v))
            for k, v in r["match"].items()
        ]
        rules.append((r["category"], match))
    return rules


def _category(tags: dict, rules) -> str | None:
    for cat, match in rules:
        ok = True
        for k, values in match:
            v = (tags.get(k) or "").strip()
            if (
                not v
                or (values is None and v.lower() == "no")
                or (values is not None and v not in values)
            ):
                ok = False
                break
        if ok:
            return cat
    return None


def _expected_ids(elements: list[tuple[str, int, dict, bool]], rules) -> dict[str, set[str]]:
    """OSM ids per category of the objects that become sites (or are merged into one):
    tagged nodes, tagged ways, and tagged multipolygon/boundary relations."""
    out: dict[str, set[str]] = {}
    for kind, oid, tags, area_rel in elements:
        if kind == "r" and not area_rel:
            continue
        cat = _category(tags, rules)
        if cat:
            out.setdefault(cat, set()).add(f"{kind}{oid}")
    return out


def _xml_elements(path: Path) -> list[tuple[str, int, dict, bool]]:
    root = ET.fromstring(bz2.decompress(path.read_bytes()))
    out = []
    for el in root:
        if el.tag in ("node", "way", "relation"):
            tags = {t.get("k"): t.get("v") for t in el.findall("tag")}
            out.append(
                (
                    el.tag[0],
                    int(el.get("id")),
                    tags,
                    tags.get("type") in ("multipolygon", "boundary"),
                )
            )
    return out


def _json_elements(path: Path) -> list[tuple[str, int, dict, bool]]:
    data = json.loads(gzip.decompress(path.read_bytes()))
    out = []
    for el in data["elements"]:
        tags = el.get("tags", {})
        out.append(
            (el["type"][0], el["id"], tags, tags.get("type") in ("multipolygon", "boundary"))
        )
    return out


@pytest.mark.parametrize(
    ("name", "elements"),
    [
        ("West-Oakland.osm.bz2", _xml_elements),
        ("overpass-response-1.json.gz", _json_elements),
        ("overpass-response-2.json.gz", _json_elements),
    ],
)
def test_oakland_sites_account_for_every_tagged_object(name, elements):
    path = OAKLAND / name
    result = read_osm(path, building_hints=True)
    expected = _expected_ids(elements(path), _table_rules())
    assert expected, "the extract has sensitive-site tags"
    got: dict[str, set[str]] = {}
    for row in result.sites.itertuples():
        got.setdefault(row.category, set()).update(row.osm_ids.split(";"))
    assert got == expected
    # every site is an area or a point (these extracts have no broken or open sites) ...
    kinds = set(result.sites.geometry.geom_type)
    assert kinds <= {"Point", "Polygon", "MultiPolygon"}
    assert not result.incomplete and not result.lines
    # ... a valid one, and the file's timestamp is recorded
    assert result.sites.geometry.is_valid.all()
    assert result.sites["data_timestamp"].notna().all()


def test_oakland_counts_without_building_hints():
    """West Oakland (SOURCE.md): 2 places of worship, 1 school, 1 playground."""
    result = read_osm(OAKLAND / "West-Oakland.osm.bz2")
    counts = result.category_counts()
    xml_counts: dict[str, int] = {}
    rules = [r for r in _table_rules() if {k for k, _ in r[1]} != {"building"}]
    for _, _, tags, _ in _xml_elements(OAKLAND / "West-Oakland.osm.bz2"):
        if cat := _category(tags, rules):
            xml_counts[cat] = xml_counts.get(cat, 0) + 1
    assert (
        xml_counts["worship"] == 2
        and xml_counts["school"] == 1
        and xml_counts["children_gather"] == 1
    )
    assert sum(counts.values()) + len(result.dropped) + sum(
        len(i) - 1 for _, i in result.merged
    ) == sum(xml_counts.values())
    assert result.files[0]["format"] == "xml"


def test_oakland_layer_for_scan(tmp_path):
    out = tmp_path / "oakland_osm.geojson"
    result = import_osm(
        [*sorted(OAKLAND.glob("*.gz")), OAKLAND / "West-Oakland.osm.bz2"], out, building_hints=True
    )
    written = gpd.read_file(out)
    assert len(written) == len(result.sites) > 0
    assert (written["attribution"] == ATTRIBUTION).all()


def test_scan_summary_and_sharing_manifest_credit_osm(fixture_files, tmp_path):
    """ODbL 4.3: reports and manifests that use OSM sites say "© OpenStreetMap contributors"."""
    from geofence.hook import run_filter
    from geofence.jurisdictions import Recipient
    from geofence.scan import run_scan

    paths, _ = fixture_files
    layer = tmp_path / "osm.geojson"
    import_osm(paths["xml"], layer)
    x, y = cell(1)
    reads = tmp_path / "reads.csv"
    reads.write_text(f"plate,timestamp,lat,lon\nAAA,2024-05-02T10:00:00Z,{y + 0.001},{x + 0.001}\n")
    report = tmp_path / "report.geojson"
    summary = run_scan(
        [reads], [layer], out=report, summary=tmp_path / "summary.json", deterministic=True
    )
    assert summary["reads_flagged"] == 1
    assert summary["layers"][0]["attribution"] == ATTRIBUTION
    fc = json.loads(report.read_text())  # the GeoJSON report itself carries the credit
    assert fc["attribution"] == ATTRIBUTION and len(fc["features"]) == 1
    assert json.loads((tmp_path / "summary.json").read_text())["layers"][0]["license"] == "ODbL-1.0"
    doc = run_filter(
        reads,
        [layer],
        recipient=Recipient("Berkeley PD", "ca-public", "CA", "robbery 25-1"),
        user="jdoe",
        sender_state="CA",
        out=tmp_path / "shared.csv",
        withheld=tmp_path / "withheld.csv",
        manifest=tmp_path / "manifest.json",
        deterministic=True,
    )
    assert doc["layers"][0]["attribution"] == ATTRIBUTION
