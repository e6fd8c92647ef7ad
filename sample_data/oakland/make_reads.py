"""Make ``reads_synthetic.csv.gz``: a SYNTHETIC ALPR read log on real north Oakland streets.

Every read in the output is made up: plates, times, cameras, patrol cars and agencies are
invented by a seeded random generator. Only the street geometry is real. It comes from
OpenStreetMap: (c) OpenStreetMap contributors, available under the Open Database License
(ODbL 1.0, https://opendatacommons.org/licenses/odbl/), via an Overpass API response cached in
the OSMnx test data (north Oakland / Piedmont street network, OSM base 2017-10-20; see
``../shared/data/osmnx-oakland-sf-osm/SOURCE.md``). Positions derived from it (camera sites
and patrol positions along the streets) are a derived database under the ODbL: keep this
attribution with the file.

What it holds (about 20,000 reads over the week of 2025-03-03, UTC):

- about 70 % from 24 fixed cameras at intersections of the larger streets (every read of a
  camera has the camera's exact coordinates), busier by day than by night;
- about 30 % from 6 patrol cars driving shifts along the street network, one read every
  20-90 s, positions with ~3 m of GPS noise;
- a few deliberately bad rows so that rejects show: no position, ``N/A`` position, a latitude
  out of range, an impossible or unparsable timestamp.

Columns: ``read_id,plate,timestamp,lat,lon,camera_id,agency``; timestamps are ISO-8601 UTC
(``2025-03-04T12:34:56Z``). Camera and car ids start with ``SYN-`` and the agencies are
``Synthetic OPD`` / ``Synthetic PPD`` so that nobody mistakes a row for a real read.

Usage, from the repository root::

    python sample_data/oakland/make_reads.py
    python sample_data/oakland/make_reads.py PATH/TO/overpass-response-7.json.gz --out FILE

Re-running with the same seed writes a byte-identical file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
import json
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = "../shared/data/osmnx-oakland-sf-osm/overpass-response-7.json.gz"
DEFAULT_OUT = "sample_data/oakland/reads_synthetic.csv.gz"

DRIVABLE = {
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link",
    "secondary", "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential",
    "service", "living_street",
}  # fmt: skip
CAMERA_ROADS = {"primary", "secondary", "tertiary"}
WEEK_START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
N_CAMERAS = 24
N_CARS = 6
# Relative traffic by hour, UTC (Oakland is UTC-8: the evening rush is at 00:00-02:00 UTC).
HOURLY = [9, 9, 8, 7, 6, 5, 5, 4, 3, 2, 1.5, 1.2, 1.2, 1.5, 3, 5, 7, 8, 7, 7, 7, 8, 8, 9]
M_PER_DEG_LAT = 110_990.0


def load_streets(path: Path):
    """Drivable street graph from an Overpass JSON response.

    Returns
    -------
    coords : dict
        OSM node id -> (lat, lon).
    graph : dict
        Node id -> sorted list of neighbouring node ids (undirected: cars patrol both ways).
    camera_nodes : list
        Nodes where a primary/secondary/tertiary street meets another street.
    """
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        elements = json.load(fh)["elements"]
    coords = {e["id"]: (e["lat"], e["lon"]) for e in elements if e["type"] == "node"}
    graph: dict[int, set[int]] = {}
    ways_at: dict[int, int] = {}
    big: set[int] = set()
    for e in elements:
        if e["type"] != "way" or e.get("tags", {}).get("highway") not in DRIVABLE:
            continue
        nodes = [n for n in e["nodes"] if n in coords]
        for a, b in itertools.pairwise(nodes):
            if a != b:
                graph.setdefault(a, set()).add(b)
                graph.setdefault(b, set()).add(a)
        for n in set(nodes):
            ways_at[n] = ways_at.get(n, 0) + 1
        if e["tags"]["highway"] in CAMERA_ROADS:
            big.update(nodes)
    camera_nodes = sorted(n for n in big if ways_at.get(n, 0) >= 2)
    return coords, {n: sorted(v) for n, v in graph.items()}, camera_nodes


def _metres(a, b) -> float:
    dy = (b[0] - a[0]) * M_PER_DEG_LAT
    dx = (b[1] - a[1]) * M_PER_DEG_LAT * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def _hour_weighted_time(rng: random.Random) -> datetime:
    day = rng.randrange(7)
    hour = rng.choices(range(24), weights=HOURLY)[0]
    return WEEK_START + timedelta(days=day, hours=hour, seconds=rng.randrange(3600))


def _plate(rng: random.Random) -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3))
    return f"{rng.randrange(1, 10)}{letters}{rng.randrange(1000):03d}"


def camera_reads(rng, coords, camera_nodes, n, plates):
    """``n`` reads from fixed cameras at distinct intersections, some much busier than others."""
    nodes = rng.sample(camera_nodes, min(N_CAMERAS, len(camera_nodes)))
    weights = [rng.lognormvariate(0.0, 0.8) for _ in nodes]
    out = []
    for cam in rng.choices(range(len(nodes)), weights=weights, k=n):
        lat, lon = coords[nodes[cam]]
        agency = "Synthetic PPD" if lon > -122.235 and lat > 37.815 else "Synthetic OPD"
        out.append(
            [
                _pick_plate(rng, plates),
                _hour_weighted_time(rng),
                lat,
                lon,
                f"SYN-CAM-{cam + 1:02d}",
                agency,
            ]
        )
    return out


def patrol_reads(rng, coords, graph, n, plates):
    """``n`` reads from cars driving random walks along the streets (no U-turns unless stuck)."""
    nodes = sorted(graph)
    out = []
    while len(out) < n:
        car = rng.randrange(N_CARS)
        t = WEEK_START + timedelta(seconds=rng.randrange(7 * 86_400 - 8 * 3600))
        prev, here = None, rng.choice(nodes)
        # A shift: up to a few hundred reads, as the car drives edge to edge.
        pos_on_edge, nxt = 0.0, None
        for _ in range(rng.randrange(50, 300)):
            if len(out) >= n:
                break
            dt = rng.uniform(20, 90)
            t += timedelta(seconds=round(dt))
            travel = 0.0 if rng.random() < 0.15 else dt * rng.uniform(4.0, 13.0)
            while travel > 0:
                if nxt is None:
                    choices = [m for m in graph[here] if m != prev] or graph[here]
                    nxt = rng.choice(choices)
                    pos_on_edge = 0.0
                length = max(_metres(coords[here], coords[nxt]), 0.1)
                if pos_on_edge + travel < length:
                    pos_on_edge += travel
                    travel = 0.0
                else:
                    travel -= length - pos_on_edge
                    prev, here, nxt = here, nxt, None
            a = coords[here]
            b = coords[nxt] if nxt is not None else a
            f = pos_on_edge / max(_metres(a, b), 0.1) if nxt is not None else 0.0
            lat = a[0] + f * (b[0] - a[0]) + rng.gauss(0, 3.0) / M_PER_DEG_LAT
            lon = a[1] + f * (b[1] - a[1]) + rng.gauss(0, 3.0) / (M_PER_DEG_LAT * 0.79)
            out.append(
                [_pick_plate(rng, plates), t, lat, lon, f"SYN-CAR-{car + 1:02d}", "Synthetic OPD"]
            )
    return out


def _pick_plate(rng, plates):
    # Squaring a uniform favours the start of the pool: some cars pass again and again.
    return plates[int(len(plates) * rng.random() ** 2)]


def make_rows(source: Path, n_reads: int, seed: int) -> list[list[str]]:
    """All rows of the read log, as strings, header first, sorted by time."""
    rng = random.Random(seed)
    coords, graph, camera_nodes = load_streets(source)
    plates = [_plate(rng) for _ in range(3000)]
    n_cam = round(n_reads * 0.7)
    rows = camera_reads(rng, coords, camera_nodes, n_cam, plates)
    rows += patrol_reads(rng, coords, graph, n_reads - n_cam, plates)
    rows.sort(key=lambda r: (r[1], r[4]))
    text = [
        [r[0], r[1].strftime("%Y-%m-%dT%H:%M:%SZ"), f"{r[2]:.6f}", f"{r[3]:.6f}", r[4], r[5]]
        for r in rows
    ]
    # Deliberately bad rows, spread through the log, so that a scan's rejects have something.
    bad = [
        ("lat", ""), ("lon", ""), ("both", ""), ("lat", "N/A"), ("both", "NaN"),
        ("lat", "91.5"), ("time", "2025-03-32T25:61:00Z"), ("time", "yesterday"),
        ("time", ""), ("lon", "-122.2x"),
    ]  # fmt: skip
    for i, (field, value) in enumerate(bad * 2):
        row = text[rng.randrange(len(text))][:]
        if field == "time":
            row[1] = value
        if field in ("lat", "both"):
            row[2] = value
        if field in ("lon", "both"):
            row[3] = value
        text.insert(rng.randrange(len(text)), row)
        del i
    return [["read_id", "plate", "timestamp", "lat", "lon", "camera_id", "agency"]] + [
        [f"SYN{k:06d}", *r] for k, r in enumerate(text, start=1)
    ]


def write_gzip_csv(rows: list[list[str]], out: Path) -> None:
    """Write rows as gzip-compressed CSV with a fixed header time (reruns are byte-identical)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(
        description="Make the SYNTHETIC Oakland read log (OSM streets, ODbL)."
    )
    ap.add_argument(
        "source",
        nargs="?",
        default=DEFAULT_SOURCE,
        help=f"Overpass JSON (.json.gz) of highway ways; relative paths are from the repository root (default {DEFAULT_SOURCE})",
    )
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output .csv.gz (default {DEFAULT_OUT})")
    ap.add_argument("--reads", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args(argv)
    source = Path(args.source)
    source = source if source.is_absolute() else ROOT / source
    out = Path(args.out)
    out = out if out.is_absolute() else ROOT / out
    rows = make_rows(source, args.reads, args.seed)
    write_gzip_csv(rows, out)
    print(f"{len(rows) - 1} rows -> {out.name} ({out.stat().st_size:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
