"""Extract tagged sensitive-site features from the OSMnx test extracts (issue #2).

Run from the repository root::

    python sample_data/oakland/extract_osm.py [OSM_DIR]

OSM_DIR defaults to ``../shared/data/osmnx-oakland-sf-osm``. Reads Overpass responses 1
(Piedmont / north-east Oakland buildings) and 2 (San Francisco, Inner Sunset buildings)
and ``West-Oakland.osm.bz2``; keeps every node, way and multipolygon relation whose tags
match a rule of ``layers/osm_tags.toml`` (first matching rule gives the category); builds
polygons from closed ways and multipolygon relations with shapely (inner rings become
holes) and points from nodes; writes ``osm_sites.geojson`` next to this script.

This is a small, faithful extraction for sample data, not an OSM importer (a later
issue): route relations, untagged member ways and unclosed tagged ways are skipped.
Data (c) OpenStreetMap contributors, ODbL 1.0.
"""

from __future__ import annotations

import bz2
import gzip
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from geofence.layers import match_osm_tags

HERE = Path(__file__).resolve().parent
KEPT_TAGS = (
    "name",
    "amenity",
    "building",
    "leisure",
    "landuse",
    "healthcare",
    "religion",
    "social_facility",
)


def _overpass(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(gzip.decompress(path.read_bytes()))
    nodes = {e["id"]: (e["lon"], e["lat"]) for e in data["elements"] if e["type"] == "node"}
    return nodes, data["elements"]


def _osm_xml(path: Path) -> tuple[dict, list[dict]]:
    root = ET.fromstring(bz2.decompress(path.read_bytes()))
    nodes, elements = {}, []
    for el in root:
        tags = {t.get("k"): t.get("v") for t in el.findall("tag")}
        if el.tag == "node":
            nodes[int(el.get("id"))] = (float(el.get("lon")), float(el.get("lat")))
            elements.append(
                {
                    "type": "node",
                    "id": int(el.get("id")),
                    "lon": float(el.get("lon")),
                    "lat": float(el.get("lat")),
                    "tags": tags,
                }
            )
        elif el.tag == "way":
            elements.append(
                {
                    "type": "way",
                    "id": int(el.get("id")),
                    "nodes": [int(n.get("ref")) for n in el.findall("nd")],
                    "tags": tags,
                }
            )
        elif el.tag == "relation":
            members = [
                {"type": m.get("type"), "ref": int(m.get("ref")), "role": m.get("role")}
                for m in el.findall("member")
            ]
            elements.append(
                {"type": "relation", "id": int(el.get("id")), "members": members, "tags": tags}
            )
    return nodes, elements


def _ring(way: dict, nodes: dict):
    coords = [nodes[n] for n in way["nodes"] if n in nodes]
    if len(coords) < 4 or way["nodes"][0] != way["nodes"][-1]:
        return None
    return shapely.linearrings(coords)


def _member_polygons(relation: dict, role: str, ways: dict, nodes: dict):
    lines = [
        shapely.linestrings([nodes[n] for n in ways[m["ref"]]["nodes"] if n in nodes])
        for m in relation["members"]
        if m["type"] == "way" and m["role"] == role and m["ref"] in ways
    ]
    return shapely.polygonize(lines) if lines else None


def _features(nodes: dict, elements: list[dict], source: str) -> list[dict]:
    ways = {e["id"]: e for e in elements if e["type"] == "way"}
    out = []
    for e in elements:
        tags = e.get("tags") or {}
        if not tags:
            continue
        geom = None
        if e["type"] == "node":
            geom = shapely.Point(e["lon"], e["lat"])
        elif e["type"] == "way":
            ring = _ring(e, nodes)
            geom = None if ring is None else shapely.polygons(ring)
        elif e["type"] == "relation" and tags.get("type") == "multipolygon":
            # Polygonize the member lines so that rings split over several ways join up.
            outer = _member_polygons(e, "outer", ways, nodes)
            inner = _member_polygons(e, "inner", ways, nodes)
            if outer is not None and not outer.is_empty:
                geom = (
                    outer if inner is None else shapely.difference(outer, shapely.union_all(inner))
                )
                geom = (
                    shapely.union_all(shapely.get_parts(geom))
                    if geom.geom_type == "GeometryCollection"
                    else geom
                )
        if geom is None or geom.is_empty:
            continue
        row = {"site_id": f"osm:{e['type']}/{e['id']}", "osm_source": source, "geometry": geom}
        row.update({k: tags.get(k) for k in KEPT_TAGS})
        row["_tags"] = tags
        out.append(row)
    return out


def main(osm_dir: Path) -> None:
    rows = []
    for n in (1, 2):
        nodes, elements = _overpass(osm_dir / f"overpass-response-{n}.json.gz")
        rows += _features(nodes, elements, f"overpass-response-{n}.json.gz")
    nodes, elements = _osm_xml(osm_dir / "West-Oakland.osm.bz2")
    rows += _features(nodes, elements, "West-Oakland.osm.bz2")
    # Match on every tag the element has, through the shipped table (the loader's own rules).
    tags = pd.DataFrame([r.pop("_tags") for r in rows])
    category = match_osm_tags(tags)
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    frame.insert(1, "category", category)
    frame = frame[frame["category"].notna()].reset_index(drop=True)
    frame["name"] = frame["name"].fillna("")
    out = HERE / "osm_sites.geojson"
    out.unlink(missing_ok=True)
    frame.to_file(out, driver="GeoJSON", COORDINATE_PRECISION=7)
    print(f"{out.name}: {len(frame)} features")
    print(frame.groupby(["category", frame.geometry.geom_type]).size().to_string())


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else HERE.parents[2] / "shared" / "data" / "osmnx-oakland-sf-osm"
    )
