"""The offline HTML report (issue #9): built from real scans of data made here, checked in a
real browser (headless Chromium driven by Playwright, offline), and as bytes.

Chromium is the system's (``/usr/bin/chromium``, Debian's ``chromium`` package) or the one
``GEOFENCE_CHROMIUM`` names. Without it the browser tests skip locally and fail in CI
(``CI`` set). One browser serves the whole session; every page gets a fresh offline context.
Expected values come from the scan's summary and report (never from the page builder), and
from an independent recount in Python (weekday and hour in the summary's time zone).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import re
import shutil
import zoneinfo
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geofence.cli import cli
from geofence.html import ReportError, build_html
from geofence.scan import run_scan

ROOT = Path(__file__).resolve().parent.parent
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
TZ = "America/Los_Angeles"
HOSTILE = '<img src=x onerror="window.__pwned=1"></script><script>window.__pwned=2</script>'
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# ----------------------------------------------------------------------------- test data

CENTRE = (-122.2712, 37.8044)  # downtown Oakland


def _square(lon, lat, half_m):
    dlat = half_m / 111_000
    dlon = half_m / (111_000 * np.cos(np.radians(lat)))
    return [
        [
            [lon - dlon, lat - dlat],
            [lon + dlon, lat - dlat],
            [lon + dlon, lat + dlat],
            [lon - dlon, lat + dlat],
            [lon - dlon, lat - dlat],
        ]
    ]


def write_sites(path: Path) -> None:
    """Four sites: a school campus, a clinic with a hostile name, a church, a park with a hole."""
    lon, lat = CENTRE
    outer = _square(lon + 0.006, lat - 0.004, 120)[0]
    hole = _square(lon + 0.006, lat - 0.004, 40)[0][::-1]
    feats = [
        (
            "oak:1",
            "Lincoln Elementary",
            "school",
            {"type": "Polygon", "coordinates": _square(lon, lat, 60)},
        ),
        (
            "oak:2",
            HOSTILE,
            "medical",
            {"type": "Point", "coordinates": [lon + 0.0035, lat + 0.002]},
        ),  # fences overlap the school's
        (
            "oak:3",
            "St. Mary's & <b>Co</b>",
            "worship",
            {"type": "Point", "coordinates": [lon - 0.006, lat + 0.002]},
        ),
        (
            "oak:4",
            "Lakeside Park",
            "children_gather",
            {"type": "Polygon", "coordinates": [outer, hole]},
        ),
    ]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"site_id": i, "name": n, "category": c},
                "geometry": g,
            }
            for i, n, c, g in feats
        ],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")


def write_reads(path: Path, n: int = 1_537, seed: int = 9) -> None:
    """Reads scattered over ~1.5 km around the sites, over ten days across the DST change."""
    rng = np.random.default_rng(seed)
    lon = CENTRE[0] + rng.uniform(-0.011, 0.011, n)
    lat = CENTRE[1] + rng.uniform(-0.008, 0.008, n)
    t0 = int(datetime(2024, 3, 5, tzinfo=UTC).timestamp())
    t = np.sort(t0 + rng.integers(0, 10 * 86_400, n))
    cams = [f"CAM-{k:02d}" for k in range(7)]
    agencies = ["OPD", "BPD", "CHP"]
    lines = ["read_id,plate,timestamp,lat,lon,camera_id,agency"]
    for i in range(n):
        ts = datetime.fromtimestamp(int(t[i]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        la = "" if i % 67 == 5 else f"{lat[i]:.6f}"  # some rejected: missing_position
        lines.append(
            f"{i + 1},{rng.integers(1, 9)}ABC{rng.integers(100, 999)},{ts},{la},{lon[i]:.6f},{cams[i % 7]},{agencies[(i // 7) % 3]}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """One scan of the same data per report format: {fmt: (report, summary, layers)}."""
    base = tmp_path_factory.mktemp("html")
    write_sites(base / "sites.geojson")
    write_reads(base / "reads.csv")
    out = {}
    ext = {"geojson": "geojson", "geojsonseq": "geojsonl", "csv": "csv"}
    for fmt in ("geojson", "geojsonseq", "csv"):
        report = base / f"report.{ext[fmt]}"
        summary = base / f"summary-{fmt}.json"
        run_scan(
            [base / "reads.csv"],
            [base / "sites.geojson"],
            out=report,
            fmt=fmt,
            summary=summary,
            timezone=TZ,
            deterministic=True,
            policy=["dhs-2021"],
        )
        out[fmt] = (report, summary, [base / "sites.geojson"])
    return out


@pytest.fixture(scope="module")
def pseudonymised(scans, tmp_path_factory):
    """The GeoJSON scan again with plates pseudonymised (64 hex digits each) and its page."""
    d = tmp_path_factory.mktemp("pseudo")
    report, _, layers = scans["geojson"]
    reads = report.parent / "reads.csv"
    run_scan(
        [reads],
        layers,
        out=d / "report.geojson",
        summary=d / "summary.json",
        timezone=TZ,
        deterministic=True,
        policy=["dhs-2021"],
        pseudonymize_key=b"k" * 32,
    )
    build_html(d / "report.geojson", d / "summary.json", layers=layers, out=d / "page.html")
    return d / "report.geojson", d / "page.html"


@pytest.fixture(scope="module")
def summary(scans):
    return json.loads(scans["geojson"][1].read_text())


def page_data(html: bytes) -> dict:
    """The JSON embedded in a page."""
    m = re.search(rb'<script type="application/json" id="gf-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def report_features(report: Path) -> list[dict]:
    """Properties and coordinates of a GeoJSON report, read independently of the page builder."""
    feats = []
    for line in report.read_text(encoding="utf-8").splitlines()[1:]:
        line = line.rstrip(",")
        if line.startswith("{"):
            feats.append(json.loads(line))
    return feats


@pytest.fixture(scope="module")
def built(scans, tmp_path_factory):
    """The page of the GeoJSON scan (every read drawn) and an aggregated one (grid)."""
    d = tmp_path_factory.mktemp("pages")
    report, summ, layers = scans["geojson"]
    n = json.loads(summ.read_text())["reads_flagged"]
    build_html(report, summ, layers=layers, out=d / "points.html", title="Test audit")
    build_html(report, summ, layers=layers, out=d / "grid.html", max_points=n - 1)
    return {"points": d / "points.html", "grid": d / "grid.html"}


# ----------------------------------------------------------------------------- library: bytes


def test_identical_inputs_give_identical_bytes(scans, tmp_path):
    report, summ, layers = scans["geojson"]
    a = build_html(report, summ, layers=layers, out=tmp_path / "a.html")
    b = build_html(report, summ, layers=layers, out=tmp_path / "b.html")
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert a["sha256"] == b["sha256"]


def test_formats_give_the_same_reads(scans, summary, tmp_path):
    pages = {}
    for fmt, (report, summ, layers) in scans.items():
        res = build_html(report, summ, layers=layers, out=tmp_path / f"{fmt}.html")
        assert res["reads"] == summary["reads_flagged"]
        pages[fmt] = page_data((tmp_path / f"{fmt}.html").read_bytes())
    assert pages["geojson"]["reads"] == pages["geojsonseq"]["reads"]
    # the CSV leaves out site_name, tier and clauses; coordinates, sites and times are the same
    for key in ("lon", "lat", "site", "t", "n"):
        assert pages["csv"]["reads"][key] == pages["geojson"]["reads"][key]


def test_page_is_offline_and_escapes_untrusted_text(built):
    html = built["points"].read_bytes()
    csp = (
        re.search(rb'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
        .group(1)
        .decode()
    )
    assert "default-src &#x27;none&#x27;" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert b"window.__pwned" in html  # the name is there...
    assert HOSTILE.encode() not in html  # ...but never as markup
    assert b"\\u003cimg src=x" in html
    assert len(re.findall(rb"<script", html)) == 3  # data, Leaflet, the report's code
    assert not re.search(
        rb"src=\"(https?:)?//|url\((https?:)?//", html
    )  # nothing to load (links are only links)


def test_vendored_files_match_their_manifest():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "update_vendor", ROOT / "scripts" / "update_vendor.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.check("geofence/html/vendor") == []
    assert mod.check("tests/vendor") == []


def test_layers_must_match_the_summary(scans, tmp_path):
    report, summ, _ = scans["geojson"]
    changed = tmp_path / "sites.geojson"
    shutil.copy(scans["geojson"][2][0], changed)
    with open(changed, "a", encoding="utf-8") as fh:
        fh.write("\n")
    with pytest.raises(ReportError, match="SHA-256"):
        build_html(report, summ, layers=[changed], out=tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_report_and_summary_must_belong_together(scans, tmp_path):
    report, summ, layers = scans["geojson"]
    doc = json.loads(summ.read_text())
    doc["reads_flagged"] += 1
    (tmp_path / "s.json").write_text(json.dumps(doc))
    with pytest.raises(ReportError, match="flagged reads"):
        build_html(report, tmp_path / "s.json", layers=layers, out=tmp_path / "x.html")


def test_layers_default_to_the_files_beside_the_summary(scans, tmp_path):
    report, summ, _ = scans["geojson"]
    res = build_html(report, summ, out=tmp_path / "p.html")  # sites.geojson is beside the summary
    assert res["sites_drawn"] == 4
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(summ, alone / "summary.json")
    with pytest.raises(ReportError, match="--layers"):
        build_html(report, alone / "summary.json", out=tmp_path / "q.html")


def test_generic_geojson_layout_is_read(scans, summary, tmp_path):
    # a FeatureCollection pretty-printed by another tool: the slower decoder reads it
    report, summ, layers = scans["geojson"]
    doc = {"type": "FeatureCollection", "features": report_features(report)}
    other = tmp_path / "pretty.geojson.gz"
    with gzip.open(other, "wt", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    build_html(other, summ, layers=layers, out=tmp_path / "p.html")
    build_html(report, summ, layers=layers, out=tmp_path / "q.html")
    assert (
        page_data((tmp_path / "p.html").read_bytes())["reads"]
        == page_data((tmp_path / "q.html").read_bytes())["reads"]
    )


def test_block_size_never_changes_the_page(scans, tmp_path, monkeypatch):
    from geofence.html import _report

    for fmt, (report, summ, layers) in scans.items():
        build_html(report, summ, layers=layers, out=tmp_path / "big.html")
        build_html(report, summ, layers=layers, out=tmp_path / "big-grid.html", max_points=10)
        with monkeypatch.context() as m:
            m.setattr(_report, "BLOCK_BYTES", 4096)  # a few features per block
            build_html(report, summ, layers=layers, out=tmp_path / "small.html")
            build_html(report, summ, layers=layers, out=tmp_path / "small-grid.html", max_points=10)
        assert (tmp_path / "big.html").read_bytes() == (tmp_path / "small.html").read_bytes(), fmt
        assert (tmp_path / "big-grid.html").read_bytes() == (
            tmp_path / "small-grid.html"
        ).read_bytes(), fmt


def test_aggregated_page_keeps_totals_not_reads(built, summary):
    data = page_data(built["grid"].read_bytes())
    assert data["mode"] == "grid" and data["reads"] is None
    assert len(data["agg"]["levels"]) >= 2
    assert len({lv["g"] for lv in data["agg"]["levels"]}) == len(data["agg"]["levels"])


def test_context_streets_from_osm_and_geojson(scans, tmp_path):
    report, summ, layers = scans["geojson"]
    lon, lat = CENTRE
    osm = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="test">\n'
        f'<node id="1" version="1" lat="{lat - 0.003}" lon="{lon - 0.004}"/>\n'
        f'<node id="2" version="1" lat="{lat + 0.003}" lon="{lon + 0.004}"/>\n'
        f'<node id="3" version="1" lat="{lat + 0.004}" lon="{lon - 0.004}"/>\n'
        '<way id="10" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/><tag k="name" v="Test St"/></way>\n'
        '<way id="11" version="1"><nd ref="2"/><nd ref="3"/><tag k="building" v="yes"/></way>\n'
        "</osm>\n"
    )
    (tmp_path / "streets.osm.bz2").write_bytes(bz2.compress(osm.encode()))
    build_html(
        report, summ, layers=layers, out=tmp_path / "o.html", context=tmp_path / "streets.osm.bz2"
    )
    ctx = page_data((tmp_path / "o.html").read_bytes())["context"]
    assert ctx["n"] == 1 and "OpenStreetMap" in ctx["attribution"]  # the highway, not the building
    lines = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "LineString", "coordinates": [[lon - 1, lat], [lon + 1, lat]]},
            }
        ],
    }
    (tmp_path / "streets.geojson").write_text(json.dumps(lines))
    build_html(
        report,
        summ,
        layers=layers,
        out=tmp_path / "g.html",
        context=tmp_path / "streets.geojson",
        context_attribution="Streets: test data",
    )
    ctx = page_data((tmp_path / "g.html").read_bytes())["context"]
    assert ctx["n"] == 1 and ctx["attribution"] == "Streets: test data"
    bbox = page_data((tmp_path / "g.html").read_bytes())["bbox"]
    assert ctx["x0"] / 1e6 >= bbox[0] - 0.011  # clipped to the report's extent (+ ~1 km)


def test_cli_report_html_and_scan_html(scans, tmp_path):
    report, summ, layers = scans["csv"]
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "report",
            "html",
            str(report),
            "--summary",
            str(summ),
            "--layers",
            str(layers[0]),
            "-o",
            str(tmp_path / "r.html"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.html").exists()
    res = runner.invoke(
        cli,
        [
            "report",
            "html",
            str(report),
            "--summary",
            str(layers[0]),
            "-o",
            str(tmp_path / "bad.html"),
        ],
    )
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "geofence: error:" in res.output
    # scan --html without --out: the report goes to a temporary file, the page is built
    reads = report.parent / "reads.csv"
    res = runner.invoke(
        cli,
        [
            "scan",
            str(reads),
            "--layers",
            str(layers[0]),
            "--timezone",
            TZ,
            "--policy",
            "dhs-2021",
            "--html",
            str(tmp_path / "s.html"),
            "--deterministic",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    data = page_data((tmp_path / "s.html").read_bytes())
    assert data["meta"]["counts"]["reads_flagged"] == json.loads(summ.read_text())["reads_flagged"]


# ----------------------------------------------------------------------------- the browser


def _chromium() -> str | None:
    exe = os.environ.get("GEOFENCE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return exe if Path(exe).exists() else None


@pytest.fixture(scope="session")
def browser():
    exe = _chromium()
    if exe is None:
        msg = "no Chromium: install Debian's chromium (apt-get install chromium) or set GEOFENCE_CHROMIUM"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
    yield b
    b.close()
    pw.stop()


class Opened:
    """A page opened offline, with every request and console message recorded."""

    def __init__(self, browser, path: Path, **ctx) -> None:
        self.context = browser.new_context(
            offline=True, viewport={"width": 1280, "height": 900}, **ctx
        )
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("html[data-ready='true']", timeout=30_000)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def opened(browser):
    pages: list[Opened] = []

    def open_(path: Path, **ctx) -> Opened:
        pages.append(Opened(browser, path, **ctx))
        return pages[-1]

    yield open_
    for p in pages:
        p.close()


def _num(text: str) -> int:
    return int(text.replace(",", "").strip())


def _cat_index(page, cat: str) -> int:
    """The value of a category in the page's category filter (its position in the page data)."""
    return page.evaluate(
        f"JSON.parse(document.getElementById('gf-data').textContent).cats.findIndex(c => c.id === {json.dumps(cat)})"
    )


def test_page_draws_offline_with_the_summary_counts(opened, built, summary):
    o = opened(built["points"])
    p = o.page
    assert {u.split(":", 1)[0] for u in o.requests} <= {"file", "data", "blob"}
    assert o.errors == []
    for key, el in (
        ("reads_in", "#count-in"),
        ("reads_clean", "#count-clean"),
        ("reads_flagged", "#count-flagged"),
        ("reads_rejected", "#count-rejected"),
    ):
        assert _num(p.text_content(el)) == summary[key]
    assert int(p.get_attribute("#map", "data-dots-drawn")) == summary["reads_flagged"]
    assert int(p.get_attribute("#read-table", "data-rows")) == summary["reads_flagged"]
    rejected = {
        row[0]: _num(row[2])
        for row in p.eval_on_selector_all(
            "#rejections tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
        )
    }
    assert rejected == summary["rejected_by_reason"]
    # the data layer's canvas really has pixels on it
    painted = p.evaluate("""() => { const c = document.querySelector('.leaflet-gfData-pane canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) { if (d[i]) { n++; } } return n; }""")
    assert painted > summary["reads_flagged"]
    assert p.evaluate("document.title") == "Test audit"


def test_filters_change_map_charts_and_table_together(opened, built, summary, scans):
    p = opened(built["points"]).page
    for cat, n in summary["flagged_by_category"].items():
        p.select_option("#f-category", value=str(_cat_index(p, cat)))
        assert int(p.get_attribute("#map", "data-dots-drawn")) == n
        assert int(p.get_attribute("#read-table", "data-rows")) == n
        assert int(p.get_attribute("#chart-category", "data-total")) == n
        assert int(p.get_attribute("#filter-status", "data-shown")) == n
    p.select_option("#f-category", value="-1")
    feats = report_features(scans["geojson"][0])
    by_camera = Counter(f["properties"]["camera_id"] for f in feats)
    cam, n = sorted(by_camera.items())[2]
    p.select_option("#f-camera", label=f"{cam} ({n:,})")
    assert int(p.get_attribute("#map", "data-dots-drawn")) == n
    assert int(p.get_attribute("#read-table", "data-rows")) == n
    cams = set(
        p.eval_on_selector_all(
            "#read-table tbody tr",
            "rs => rs.map(r => r.cells[[...r.parentNode.parentNode.tHead.rows[0].cells].findIndex(c => c.textContent === 'camera_id')].textContent)",
        )
    )
    assert cams == {cam}
    p.click("#f-reset")
    p.wait_for_function(
        "n => document.getElementById('map').getAttribute('data-dots-drawn') === n",
        arg=str(summary["reads_flagged"]),
    )


def test_weekday_hour_chart_uses_the_summary_time_zone(opened, built, scans):
    feats = report_features(scans["geojson"][0])
    tz = zoneinfo.ZoneInfo(TZ)
    expected = Counter()
    for f in feats:
        t = (
            datetime.strptime(f["properties"]["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=UTC)
            .astimezone(tz)
        )
        expected[(t.weekday(), t.hour)] += 1
    p = opened(built["points"]).page
    rows = p.eval_on_selector_all(
        "#chart-weekhour table tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
    )
    got = Counter()
    for d, row in enumerate(rows):
        for h in range(24):
            if _num(row[h + 1]):
                got[(d, h)] = _num(row[h + 1])
    assert got == expected


def test_table_pages_sort_and_show_reads_on_the_map(opened, built, summary, scans):
    p = opened(built["points"]).page
    heads = p.eval_on_selector_all("#read-table thead th", "hs => hs.map(h => h.textContent)")
    props = list(report_features(scans["geojson"][0])[0]["properties"])
    assert [h for h in heads if h in props] == props  # every report property, in order
    col = heads.index("distance_m")
    p.click(f"#read-table thead th:nth-child({col + 1}) button")
    vals = [
        float(v)
        for v in p.eval_on_selector_all(
            "#read-table tbody tr", f"rs => rs.map(r => r.cells[{col}].textContent)"
        )
    ]
    all_d = sorted(f["properties"]["distance_m"] for f in report_features(scans["geojson"][0]))
    assert vals == all_d[: len(vals)]
    assert p.get_attribute(f"#read-table thead th:nth-child({col + 1})", "aria-sort") == "ascending"
    p.click("#page-next")
    assert "Page 2 of" in p.text_content("#page-status")
    p.click("#read-table tbody button >> nth=0")
    assert p.locator(".leaflet-popup-content").count() == 1
    assert "distance_m" in p.text_content(".leaflet-popup-content")


def _as_text(v) -> str:
    """A report value as the page shows it."""
    if v is None:
        return ""
    if isinstance(v, list):
        return "; ".join(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@pytest.mark.parametrize("which", ["plain", "pseudonymised"])
def test_table_shows_the_report_values(opened, built, scans, pseudonymised, which):
    report, page = (scans["geojson"][0], built["points"]) if which == "plain" else pseudonymised
    feats = report_features(report)
    p = opened(page).page
    heads = p.eval_on_selector_all("#read-table thead th", "hs => hs.map(h => h.textContent)")
    for page_no in (0, 3):
        rows = p.eval_on_selector_all(
            "#read-table tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
        )
        for k, row in enumerate(rows):
            f = feats[page_no * 25 + k]
            for name, value in f["properties"].items():
                if name == "matches":
                    continue
                assert row[heads.index(name)] == _as_text(value), (name, value)
            assert float(row[heads.index("lon")]) == f["geometry"]["coordinates"][0]
            assert float(row[heads.index("lat")]) == f["geometry"]["coordinates"][1]
            sites = [part.split(" ")[0] for part in row[heads.index("matches")].split("; ")]
            assert sites == [m["site_id"] for m in f["properties"]["matches"]]
        for _ in range(3 - page_no):
            p.click("#page-next")
    if which == "pseudonymised":
        assert all(re.fullmatch(r"[0-9a-f]{64}", f["properties"]["plate"]) for f in feats)


def test_map_is_keyboard_operable(opened, built):
    p = opened(built["points"]).page
    p.focus("#map")
    p.keyboard.press("Enter")
    p.wait_for_selector(".leaflet-popup-content")
    p.keyboard.press("Escape")
    assert p.locator(".leaflet-popup-content").count() == 0
    zoom = float(p.get_attribute("#map", "data-zoom"))
    centre = p.get_attribute("#map", "data-center")
    p.focus("#map")
    p.keyboard.press("Equal")  # '+' zooms in
    p.wait_for_function(
        "z => +document.getElementById('map').getAttribute('data-zoom') > z", arg=zoom
    )
    p.keyboard.press("ArrowLeft")  # pans
    p.wait_for_function(
        "c => document.getElementById('map').getAttribute('data-center') !== c", arg=centre
    )


def test_hostile_site_name_stays_text(opened, built):
    p = opened(built["points"]).page
    assert p.evaluate("window.__pwned === undefined")
    assert p.evaluate("document.querySelectorAll('img, b').length") == 0
    assert p.locator("#f-site option", has_text="onerror").count() == 1
    assert (
        p.locator("#chart-site table td, #chart-site table th", has_text="</script>").count() >= 1
    )


def test_aggregated_page_above_max_points(opened, built, summary):
    o = opened(built["grid"])
    p = o.page
    assert o.errors == []
    assert p.get_attribute("#map", "data-dots-drawn") is None
    assert int(p.get_attribute("#map", "data-grid-total")) == summary["reads_flagged"]
    assert "density grid" in p.text_content("#map-note")
    assert _num(p.text_content("#count-flagged")) == summary["reads_flagged"]
    cat, n = next(iter(summary["flagged_by_category"].items()))
    p.select_option("#f-category", value=str(_cat_index(p, cat)))
    assert int(p.get_attribute("#map", "data-grid-total")) == n
    assert int(p.get_attribute("#chart-category", "data-total")) == n
    assert p.is_disabled("#f-agency") and p.is_disabled("#f-from")


@pytest.mark.parametrize("fmt", ["A4", "Letter"])
def test_print_and_pdf(opened, built, summary, fmt):
    try:
        import pypdf
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("pypdf is needed to read the PDF's text (pip install -e '.[test]')")
        pytest.skip("pypdf is not installed: it reads the PDF's text")
    p = opened(built["points"]).page
    p.emulate_media(media="print")
    assert (
        p.evaluate("getComputedStyle(document.querySelector('.leaflet-control-zoom')).display")
        == "none"
    )
    assert p.evaluate("getComputedStyle(document.getElementById('filter-form')).display") == "none"
    width = p.evaluate("document.getElementById('map').getBoundingClientRect().width")
    canvas = p.evaluate(
        "document.querySelector('.leaflet-gfData-pane canvas').getBoundingClientRect().width"
    )
    assert abs(width - canvas) <= 2  # the map refitted to the printed width
    pdf = p.pdf(format=fmt, print_background=True)
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    for key in ("reads_in", "reads_clean", "reads_flagged", "reads_rejected"):
        assert f"{summary[key]:,}" in text
    assert "Printed: page 1 of" in text


@pytest.mark.parametrize("which", ["points", "grid"])
def test_axe_core_finds_no_serious_violation(opened, built, which):
    o = opened(
        built[which], bypass_csp=True
    )  # to inject axe-core; the page's own CSP is tested above
    p = o.page
    p.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    violations = p.evaluate(
        """async () => (await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}}))
        .violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))"""
    )
    assert violations == []
