"""OpenStreetMap import benchmark (issue #8): ``geofence layers import-osm`` against GDAL's OSM
driver (pyogrio) on a generated multi-million-node PBF, and against OSMnx
``features_from_xml`` on OSM XML. Same files, same run, one child process per tool.

The city is generated from a seed: a grid of buildings (most ``building=yes``, some
``building=church|school``, a few percent with an ``amenity``, some ``healthcare=*``),
school grounds around ``building=school`` buildings (merged by geofence), multipolygon
campuses with a split outer ring and a hole, tagged POI nodes (many of them cafés and
restaurants that are no site), a street grid, a few unclosed playground ways, bow-tie
kindergartens and relations with a missing member.

Each tool's sites are compared by OSM id and category: geofence lists every OSM id a site
stands for (``osm_ids``), the peers give one feature per object, categorised here with the
same tag table (``geofence.layers.match_osm_tags``). GDAL is given an ``osmconf.ini`` with
the table's keys as attributes and as polygon keys (its default reads a ``healthcare=*``
building as a line). Wall time and peak RSS are measured as in ``benchmarks/run.py``.

Examples
--------
::

    python benchmarks/osm_import.py --nodes 3M --xml-nodes 300k --repeat 2
    python benchmarks/osm_import.py --nodes 50k --xml-nodes 20k --skip osmnx   # smoke

OSMnx is not a dependency of geofence: ``pip install osmnx`` for its rows (skipped, with
a note, when it is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from generate import count_label, parse_count  # noqa: E402
from run import child_env, machine_info, measure, warm  # noqa: E402

DATA_TIME = "2025-01-01T00:00:00Z"
BASE_LON, BASE_LAT = -122.50, 37.50
CELL = 0.0004  # degrees between building origins (~35-44 m)
SIZE = 0.0002  # building edge, degrees
AMENITIES = [
    "school", "hospital", "clinic", "place_of_worship", "kindergarten", "library",
    "community_centre", "restaurant", "cafe", "bank", "pharmacy", "fuel",
]  # fmt: skip
POI_AMENITIES = [*AMENITIES, "restaurant", "cafe", "cafe", "bench", "post_box", "parking"]


# --------------------------------------------------------------------------------------
# The generated city


def _opl_tags(tags: dict) -> str:
    # OPL escapes anything but plain characters as %xxxx%; names here are plain words.
    return "T" + ",".join(f"{k}={v.replace(' ', '%20%')}" for k, v in tags.items())


def generate_city(out_dir: Path, n_nodes: int, seed: int, xml: bool = False) -> Path:
    """Write a seeded city of about ``n_nodes`` nodes as ``city-<n>-s<seed>.osm.pbf`` (or ``.osm``)."""
    import numpy as np
    import osmium

    name = f"city-{count_label(n_nodes)}-s{seed}.{'osm' if xml else 'osm.pbf'}"
    target = out_dir / name
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_build = max(100, int(n_nodes / 4.6))
    side = int(np.ceil(np.sqrt(n_build)))
    nodes: list[str] = []
    ways: list[str] = []
    rels: list[str] = []
    nid = [0]
    wid = [0]

    def node(x: float, y: float, tags: dict | None = None) -> int:
        nid[0] += 1
        t = f" {_opl_tags(tags)}" if tags else " T"
        nodes.append(f"n{nid[0]} v1 t{DATA_TIME} x{x:.7f} y{y:.7f}{t}")
        return nid[0]

    def way(refs: list[int], tags: dict | None = None, way_id: int | None = None) -> int:
        if way_id is None:
            wid[0] += 1
            way_id = wid[0]
        t = f" {_opl_tags(tags)}" if tags else " T"
        ways.append(f"w{way_id} v1 t{DATA_TIME} N{','.join(f'n{r}' for r in refs)}{t}")
        return way_id

    def ring(x: float, y: float, s: float, tags=None, bowtie=False) -> int:
        a, b, c, d = node(x, y), node(x + s, y), node(x + s, y + s), node(x, y + s)
        return way([a, c, b, d, a] if bowtie else [a, b, c, d, a], tags)

    cats = rng.random(n_build)
    amen = rng.integers(0, len(AMENITIES), n_build)
    # Jitter: real coordinates are not a perfect grid (and GDAL's PBF reader refuses blocks
    # that compress "too well", its guard against decompression bombs).
    jitter = rng.random((n_build, 2)) * (CELL - SIZE) * 0.9
    for i in range(n_build):
        gx, gy = divmod(i, side)
        x, y = BASE_LON + gx * CELL + jitter[i, 0], BASE_LAT + gy * CELL + jitter[i, 1]
        r = cats[i]
        tags = {"building": "yes"}
        if r < 0.005:
            tags = {"building": "church"}
        elif r < 0.008:
            tags = {"building": "school"}
        elif r < 0.03:
            tags = {"building": "yes", "amenity": AMENITIES[amen[i]], "name": f"Place {i}"}
        elif r < 0.032:
            tags = {"building": "yes", "healthcare": "doctor"}
        elif r < 0.0322:
            tags = {"amenity": "kindergarten"}
            ring(x, y, SIZE, tags, bowtie=True)
            continue
        ring(x, y, SIZE, tags)
        if gx % 20 == 0 and gy % 20 == 0:
            # School grounds around 3x3 cells (buildings inside stay separate objects).
            ring(x - 0.00005, y - 0.00005, 3 * CELL, {"amenity": "school", "name": f"Grounds {i}"})
    # Campuses: multipolygons with the outer ring split over two ways and a hole.
    n_campus = max(2, n_build // 5000)
    rel_id = 0
    for k in range(n_campus):
        x, y = BASE_LON + rng.random() * side * CELL, BASE_LAT + rng.random() * side * CELL
        s = 8 * CELL
        a, b, c, d = node(x, y), node(x + s, y), node(x + s, y + s), node(x, y + s)
        w1, w2 = way([a, b, c]), way([c, d, a])
        hole = ring(x + 3 * CELL, y + 3 * CELL, CELL)
        rel_id += 1
        members = f"Mw{w1}@outer,w{w2}@outer,w{hole}@inner"
        rels.append(
            f"r{rel_id} v1 t{DATA_TIME} {members} {_opl_tags({'type': 'multipolygon', 'amenity': 'university', 'name': f'Campus {k}'})}"
        )
    # Relations with a member missing from the extract.
    for k in range(max(1, n_campus // 10)):
        x, y = BASE_LON + rng.random() * side * CELL, BASE_LAT + rng.random() * side * CELL
        w = way([node(x, y), node(x + CELL, y), node(x + CELL, y + CELL)])
        rel_id += 1
        rels.append(
            f"r{rel_id} v1 t{DATA_TIME} Mw{w}@outer,w{10**9 + k}@outer {_opl_tags({'type': 'multipolygon', 'amenity': 'courthouse'})}"
        )
    # POI nodes, and a few unclosed playground ways.
    n_poi = n_nodes // 100
    px = BASE_LON + rng.random(n_poi) * side * CELL
    py = BASE_LAT + rng.random(n_poi) * side * CELL
    kinds = rng.integers(0, len(POI_AMENITIES) + 2, n_poi)
    for x, y, k in zip(px, py, kinds, strict=True):
        if k == len(POI_AMENITIES):
            node(x, y, {"healthcare": "physiotherapist"})
        elif k == len(POI_AMENITIES) + 1:
            node(x, y, {"social_facility": "food_bank"})
        else:
            node(x, y, {"amenity": POI_AMENITIES[k]})
    for _ in range(max(1, n_nodes // 100_000)):
        x, y = BASE_LON + rng.random() * side * CELL, BASE_LAT + rng.random() * side * CELL
        way([node(x, y), node(x + CELL, y), node(x + CELL, y + CELL)], {"leisure": "playground"})
    # Street grid: every 10th cell line, nodes at crossings shared between streets.
    step = 10
    lines = range(0, side + 1, step)
    wobble = rng.random((len(lines), len(lines), 2)) * CELL * 0.2
    cross = {
        (i, j): node(
            BASE_LON + i * CELL - CELL / 4 + wobble[a, b, 0],
            BASE_LAT + j * CELL - CELL / 4 + wobble[a, b, 1],
        )
        for a, i in enumerate(lines)
        for b, j in enumerate(lines)
    }
    for i in lines:
        way([cross[(i, j)] for j in lines], {"highway": "residential"})
        way([cross[(j, i)] for j in lines], {"highway": "residential"})
    opl = out_dir / f"{name}.opl"
    opl.write_text("\n".join([*nodes, *ways, *rels]) + "\n")
    header = osmium.io.Header()
    header.set("osmosis_replication_timestamp", DATA_TIME)
    tmp = out_dir / f".{name}.partial"
    with osmium.SimpleWriter(
        osmium.io.File(str(tmp), "osm" if xml else "pbf"), header=header, overwrite=True
    ) as writer:
        osmium.apply(str(opl), writer)
    opl.unlink()
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------------------
# Peers (run as children of this script)


def _table():
    from geofence.osm import _Rules

    return _Rules.load(None, building_hints=True, categories=None)


def _categorise(frame, id_column: str, prefix: str, rules) -> list[list[str]]:
    from geofence.layers import match_osm_tags

    for k in rules.keys:
        if k not in frame.columns:
            frame[k] = None
    cats = match_osm_tags(frame[list(rules.keys)], rules.rules)
    ids = frame[id_column].astype("string")
    return [
        [f"{prefix}{i}", c]
        for i, c in zip(ids, cats, strict=True)
        if c is not None and i is not None
    ]


def peer_gdal(pbf: str, out: str, conf: str) -> None:
    """GDAL's OSM driver through pyogrio: points, lines, multipolygons with the table's keys."""
    os.environ["OSM_CONFIG_FILE"] = conf
    import pyogrio

    rules = _table()
    t0 = time.perf_counter()
    sites = []
    n_features = 0
    for layer, id_cols in (
        ("points", ["osm_id"]),
        ("lines", ["osm_id"]),
        ("multipolygons", ["osm_id", "osm_way_id"]),
    ):
        # GDAL launders "social_facility:for" to "social_facility_for".
        fields = set(pyogrio.read_info(pbf, layer=layer)["fields"])
        names = {k: n for k in rules.keys for n in (k, k.replace(":", "_")) if n in fields}
        where = " OR ".join(f'"{n}" IS NOT NULL' for n in names.values())
        frame = pyogrio.read_dataframe(
            pbf, layer=layer, columns=[*id_cols, *names.values()], where=where
        )
        frame = frame.rename(columns={n: k for k, n in names.items()})
        n_features += len(frame)
        if layer == "multipolygons":
            rel = frame[frame["osm_id"].notna()]
            way = frame[frame["osm_id"].isna()]
            sites += _categorise(rel.copy(), "osm_id", "r", rules)
            sites += _categorise(way.copy(), "osm_way_id", "w", rules)
        else:
            sites += _categorise(frame, "osm_id", "n" if layer == "points" else "w", rules)
    Path(out).write_text(
        json.dumps(
            {"sites": sites, "features": n_features, "inner_seconds": time.perf_counter() - t0}
        )
    )


def peer_osmnx(xml: str, out: str) -> None:
    """OSMnx ``features_from_xml`` with every key of the tag table."""
    import osmnx as ox

    rules = _table()
    t0 = time.perf_counter()
    gdf = ox.features_from_xml(xml, tags=dict.fromkeys(rules.keys, True))
    frame = gdf.reset_index()
    sites = []
    for kind, prefix in (("node", "n"), ("way", "w"), ("relation", "r")):
        part = frame[frame["element"] == kind].copy()
        sites += _categorise(part, "id", prefix, rules)
    Path(out).write_text(
        json.dumps(
            {"sites": sites, "features": len(frame), "inner_seconds": time.perf_counter() - t0}
        )
    )


def gdal_config(path: Path) -> Path:
    """GDAL's osmconf.ini with the tag table's keys as attributes and as polygon keys."""
    import pyogrio

    rules = _table()
    text = (Path(pyogrio.get_gdal_data_path()) / "osmconf.ini").read_text()
    out = []
    for line in text.splitlines():
        if line.startswith("closed_ways_are_polygons="):
            line += "," + ",".join(k for k in rules.keys if k not in line)
        elif line.startswith("attributes="):
            have = line.split("=", 1)[1].split(",")
            line += "," + ",".join(k for k in rules.keys if k not in have)
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return path


# --------------------------------------------------------------------------------------
# Runner


def _geofence_ids(path: Path) -> set[tuple[str, str]]:
    import pandas as pd

    frame = pd.read_parquet(path, columns=["category", "osm_ids"])
    return {
        (i, c)
        for c, ids in zip(frame["category"], frame["osm_ids"], strict=True)
        for i in ids.split(";")
    }


def _peer_ids(path: Path) -> set[tuple[str, str]]:
    return {(i, c) for i, c in json.loads(path.read_text())["sites"]}


def _compare(ref: set, other: set) -> dict:
    both = len(ref & other)
    return {"both": both, "only_geofence": len(ref - other), "only_peer": len(other - ref)}


def run(args) -> dict:
    env, removed = child_env()
    data = Path(args.data)
    outdir = data / "osm-out"
    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # Generated in a child: a forked child starts with its parent's resident pages, which
    # would count in every tool's ru_maxrss if the runner itself had built the city.
    paths = []
    for n, fmt in ((args.nodes, "pbf"), (args.xml_nodes, "xml")):
        res = subprocess.run(
            [sys.executable, __file__, "generate", str(data), str(n), str(args.seed), fmt],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        paths.append(Path(res.stdout.strip()))
    pbf, xml = paths
    print(
        f"generated {pbf.name} ({pbf.stat().st_size / 2**20:.1f} MB) and {xml.name} "
        f"({xml.stat().st_size / 2**20:.1f} MB) in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    conf = gdal_config(outdir / "osmconf.ini")
    me = [sys.executable, str(Path(__file__).resolve())]
    gf = [sys.executable, "-m", "geofence", "layers", "import-osm"]
    tools = {
        "geofence-pbf": (
            [*gf, str(pbf), "-o", str(outdir / "geofence-pbf.parquet"), "--building-hints", "-q"],
            pbf,
        ),
        "gdal-pbf": (
            [*me, "peer", "gdal", str(pbf), str(outdir / "gdal-pbf.json"), str(conf)],
            pbf,
        ),
        "geofence-xml": (
            [*gf, str(xml), "-o", str(outdir / "geofence-xml.parquet"), "--building-hints", "-q"],
            xml,
        ),
        "osmnx-xml": ([*me, "peer", "osmnx", str(xml), str(outdir / "osmnx-xml.json")], xml),
    }
    results: dict = {
        "nodes": args.nodes, "xml_nodes": args.xml_nodes, "seed": args.seed,
        "pbf_mb": pbf.stat().st_size / 2**20, "xml_mb": xml.stat().st_size / 2**20,
        "machine": machine_info(env), "blas_vars_unset": sorted(removed), "tools": {},
    }  # fmt: skip
    for name, (cmd, src) in tools.items():
        if name.split("-")[0] in args.skip:
            continue
        if name.startswith("osmnx"):
            try:
                import osmnx  # noqa: F401
            except ImportError:
                results["tools"][name] = {"skipped": "osmnx is not installed (pip install osmnx)"}
                continue
        warm([src])
        best = None
        for _ in range(args.repeat):
            m = measure(cmd, env, outdir / name)
            if m["returncode"] != 0:
                best = m
                break
            if best is None or m["seconds"] < best["seconds"]:
                best = m
        best["command"] = " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)
        best.pop("stdout", None)
        results["tools"][name] = best
        print(
            f"{name}: {best['seconds']:.2f} s, peak {best['peak_rss_mb']:.0f} MB, rc {best['returncode']}",
            file=sys.stderr,
        )
    t = results["tools"]
    for ours, peer in (("geofence-pbf", "gdal-pbf"), ("geofence-xml", "osmnx-xml")):
        a, b = t.get(ours, {}), t.get(peer, {})
        if a.get("returncode") == 0 and b.get("returncode") == 0:
            b["same_sites"] = _compare(
                _geofence_ids(outdir / f"{ours}.parquet"), _peer_ids(outdir / f"{peer}.json")
            )
            b["speed_ratio"] = b["seconds"] / a["seconds"]  # > 1: geofence is faster
            b["memory_ratio"] = a["peak_rss_mb"] / b["peak_rss_mb"]  # < 1: geofence uses less
            b["inner_seconds"] = json.loads((outdir / f"{peer}.json").read_text())["inner_seconds"]
    return results


def markdown(res: dict) -> str:
    rows = [
        "| tool | input | seconds | peak RSS MB | peer ÷ geofence time | geofence ÷ peer memory | same sites (both / only geofence / only peer) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in res["tools"].items():
        if "skipped" in r:
            rows.append(f"| {name} | | skipped: {r['skipped']} | | | | |")
            continue
        inp = (
            f"PBF {count_label(res['nodes'])} nodes"
            if name.endswith("pbf")
            else f"XML {count_label(res['xml_nodes'])} nodes"
        )
        ratio = f"{r['speed_ratio']:.2f}×" if "speed_ratio" in r else ""
        mem = f"{r['memory_ratio']:.2f}" if "memory_ratio" in r else ""
        same = (
            "/".join(str(r["same_sites"][k]) for k in ("both", "only_geofence", "only_peer"))
            if "same_sites" in r
            else ""
        )
        rows.append(
            f"| {name} | {inp} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {ratio} | {mem} | {same} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:
        data, n, seed, fmt = argv[1:]
        print(generate_city(Path(data), int(n), int(seed), xml=fmt == "xml"))
        return 0
    if argv[:1] == ["peer"]:
        kind, *rest = argv[1:]
        {"gdal": peer_gdal, "osmnx": peer_osmnx}[kind](*rest)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--nodes", type=parse_count, default=parse_count("3M"), help="nodes in the PBF city (3M)"
    )
    p.add_argument(
        "--xml-nodes",
        type=parse_count,
        default=parse_count("300k"),
        help="nodes in the XML city (300k)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest is kept")
    p.add_argument("--skip", default="", help="comma-separated: geofence, gdal, osmnx")
    p.add_argument(
        "--data", default=str(HERE / "data"), help="where the cities are generated (git-ignored)"
    )
    p.add_argument(
        "--json", default=None, help="write every number here (default DATA/osm-results.json)"
    )
    args = p.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    res = run(args)
    path = Path(args.json or Path(args.data) / "osm-results.json")
    path.write_text(json.dumps(res, indent=2, default=str))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
