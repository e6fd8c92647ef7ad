"""Benchmark of the offline HTML report (issue #9), beside a bokeh peer, in the same run.

Builds pages for synthetic scans with exactly 100,000 and 1,000,000 flagged reads (10,000
sites, the peer benchmark's workload of ``generate.py``) and records, per page:

- build seconds and peak RSS of ``python -m geofence report html`` (a fresh process, as a
  user runs it; measured like ``run.py``: wall time, psutil polling plus ``ru_maxrss``);
- the page's bytes;
- seconds from navigation to ``<html data-ready="true">`` in headless Chromium (offline), best
  of ``--repeat`` loads.

The peer is what a user would otherwise write: a bokeh scatter of the same points
(``bokeh.plotting``, ``output_backend="canvas"``, resources inline so it also opens offline),
built from the same report with the same reader, and loaded in the same browser until bokeh
has rendered its document. bokeh is not a dependency of geofence: ``pip install bokeh`` first,
or the peer is skipped.

Never run by the tests. From the repository root::

    python benchmarks/html_report.py                  # 100k and 1M, results to benchmarks/data/
    python benchmarks/html_report.py --sizes 100k --repeat 1
    python benchmarks/html_report.py --skip bokeh

Targets (issue #9, 2-core machine): 100k built <= 3 s, ready <= 3 s, <= 6 MB;
1M aggregated built <= 30 s at <= 500 MB RSS, <= 8 MB.
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

from generate import generate, parse_count  # noqa: E402
from run import child_env, machine_info, measure  # noqa: E402

SITES = 10_000
SEED = 42
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


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


def prepare(data: Path, targets: list[int], env: dict) -> dict[int, dict]:
    """Scans with exactly ``n`` flagged reads for each target: a prefix of a generated log.

    A read's outcome does not depend on the others, so cutting the log just after its n-th
    flagged read gives a scan with exactly n flagged reads.
    """
    import pyarrow.csv as pacsv

    need = max(targets)
    n_reads = max(1_000_000, int(need * 2.6))  # about 45 % of reads are flagged at 10k sites
    info = generate(data, SITES, n_reads, SEED)
    sites, reads = Path(info["sites"]), Path(info["reads"])
    out: dict[int, dict] = {}
    todo = [n for n in targets if not (data / f"html-{_label(n)}" / "summary.json").exists()]
    if todo:
        full = data / f"html-full-{_label(n_reads)}.csv"
        if not full.exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "geofence",
                    "scan",
                    str(reads),
                    "--layers",
                    str(sites),
                    "--format",
                    "csv",
                    "--out",
                    str(full),
                    "-q",
                ],
                env=env,
                check=True,
                cwd=ROOT,
            )
        rows = (
            pacsv.read_csv(full, convert_options=pacsv.ConvertOptions(include_columns=["row"]))
            .column("row")
            .to_numpy()
        )
        for n in todo:
            if len(rows) < n:
                sys.exit(f"only {len(rows):,} flagged reads in {reads.name}; cannot cut {n:,}")
            last_row = int(rows[n - 1])
            d = data / f"html-{_label(n)}"
            d.mkdir(exist_ok=True)
            prefix = d / "reads.csv"
            with open(reads, "rb") as src, open(prefix, "wb") as dst:
                for k, line in enumerate(src):
                    if k > last_row:
                        break
                    dst.write(line)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "geofence",
                    "scan",
                    str(prefix),
                    "--layers",
                    str(sites),
                    "--out",
                    str(d / "report.geojson"),
                    "--summary",
                    str(d / "summary.json"),
                    "--deterministic",
                    "-q",
                ],
                env=env,
                check=True,
                cwd=ROOT,
            )
            prefix.unlink()
    for n in targets:
        d = data / f"html-{_label(n)}"
        flagged = json.loads((d / "summary.json").read_text())["reads_flagged"]
        assert flagged == n, (flagged, n)
        out[n] = {
            "dir": d,
            "report": d / "report.geojson",
            "summary": d / "summary.json",
            "sites": sites,
        }
    return out


# The child runs under a small launcher: the kernel's peak RSS of a process forked from this
# (large) benchmark process would count the pages it inherited, so the launcher, small itself,
# starts the command and reports its children's peak (RUSAGE_CHILDREN) on stderr.
_LAUNCH = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def measure_clean(cmd: list[str], env: dict, log_prefix: Path) -> dict:
    """``run.measure`` of ``cmd`` with its peak RSS from the kernel, free of the fork's copy."""
    import re

    m = measure([sys.executable, "-S", "-c", _LAUNCH, *cmd], env, log_prefix)
    found = re.search(r"MAXRSS_KB (\d+)", m["stderr"])
    if found:
        m["peak_rss_mb"] = int(found.group(1)) / 1024
    return m


def time_to_ready(browser, path: Path, repeat: int, kind: str) -> list[float]:
    """Seconds from navigation to the page being drawn, per load (fresh offline context each)."""
    out = []
    for _ in range(repeat):
        ctx = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(path.as_uri(), wait_until="commit", timeout=300_000)
        if kind == "geofence":
            page.wait_for_selector("html[data-ready='true']", timeout=300_000)
        else:
            # bokeh has drawn when its document exists and every root has a view
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.index && [...Bokeh.index].length > 0",
                timeout=300_000,
                polling=20,
            )
        out.append(round(time.perf_counter() - t0, 3))
        if errors:
            print(f"  {kind}: page errors: {errors[:2]}", file=sys.stderr)
        ctx.close()
    return out


def bokeh_peer(report: Path, out: Path) -> None:
    """The peer, run in its own process: a bokeh scatter of the report's points, inline resources."""
    import numpy as np
    from bokeh.io import save
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    from geofence.html._report import ReportStream

    lon, lat = [], []
    with ReportStream(report) as stream:
        for b in stream.blocks():
            lon.append(b.lon)
            lat.append(b.lat)
    lon, lat = np.concatenate(lon), np.concatenate(lat)
    # Web Mercator metres, as bokeh's mercator axes expect
    x = np.radians(lon) * 6_378_137.0
    y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * 6_378_137.0
    p = figure(
        title=f"{len(x):,} flagged reads",
        x_axis_type="mercator",
        y_axis_type="mercator",
        match_aspect=True,
        output_backend="canvas",
        width=1100,
        height=650,
    )
    p.scatter(x, y, size=3, color="#0072B2", alpha=0.8)
    save(p, filename=str(out), resources=INLINE, title="flagged reads")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes",
        default="100k,1M",
        help="flagged reads per page, comma-separated (default 100k,1M)",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="browser loads per page (best is reported)"
    )
    ap.add_argument("--skip", default="", help="comma-separated: bokeh")
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument(
        "--json", type=Path, default=None, help="results file (default DATA/html-results.json)"
    )
    ap.add_argument("--bokeh-peer", nargs=2, metavar=("REPORT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.bokeh_peer:
        bokeh_peer(Path(args.bokeh_peer[0]), Path(args.bokeh_peer[1]))
        return 0

    env, removed = child_env()
    targets = [parse_count(s) for s in args.sizes.split(",") if s]
    skip = set(filter(None, args.skip.split(",")))
    try:
        import bokeh

        bokeh_version = bokeh.__version__
    except ImportError:
        bokeh_version = None
        skip.add("bokeh")
        print("bokeh is not installed: the peer is skipped (pip install bokeh)", file=sys.stderr)
    args.data.mkdir(parents=True, exist_ok=True)
    cases = prepare(args.data, targets, env)

    from playwright.sync_api import sync_playwright

    exe = os.environ.get("GEOFENCE_CHROMIUM", "/usr/bin/chromium")
    results = {
        "machine": machine_info(env),
        "blas_vars_unset": sorted(removed),
        "bokeh": bokeh_version,
        "load_average": os.getloadavg(),
        "sizes": [],
    }
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
        results["chromium"] = browser.version
        for n in targets:
            c = cases[n]
            row = {"flagged": n, "sites": SITES}
            page = c["dir"] / "report.html"
            cmd = [
                sys.executable,
                "-m",
                "geofence",
                "report",
                "html",
                str(c["report"]),
                "--summary",
                str(c["summary"]),
                "--layers",
                str(c["sites"]),
                "-o",
                str(page),
                "-q",
            ]
            m = measure_clean(cmd, env, c["dir"] / "geofence-html")
            if m["returncode"]:
                sys.exit(f"geofence report html failed: {m['stderr'][-500:]}")
            data = page.read_bytes()
            mode = "grid" if b'"mode":"grid"' in data else "points"
            row["geofence"] = {
                "mode": mode,
                "build_s": round(m["seconds"], 2),
                "peak_rss_mb": round(m["peak_rss_mb"]),
                "bytes": len(data),
                "ready_s": time_to_ready(browser, page, args.repeat, "geofence"),
            }
            row["report_bytes"] = c["report"].stat().st_size
            if "bokeh" not in skip:
                peer = c["dir"] / "bokeh.html"
                m = measure_clean(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--bokeh-peer",
                        str(c["report"]),
                        str(peer),
                    ],
                    env,
                    c["dir"] / "bokeh",
                )
                if m["returncode"]:
                    row["bokeh"] = {"error": m["stderr"][-300:]}
                else:
                    row["bokeh"] = {
                        "build_s": round(m["seconds"], 2),
                        "peak_rss_mb": round(m["peak_rss_mb"]),
                        "bytes": peer.stat().st_size,
                        "ready_s": time_to_ready(browser, peer, args.repeat, "bokeh"),
                    }
            results["sizes"].append(row)
            print(json.dumps(row), file=sys.stderr)
        browser.close()
    out = args.json or args.data / "html-results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    """The results as a markdown table (for notes and RESULTS.md)."""
    lines = [
        "| flagged reads | tool | page | build s | peak RSS MB | bytes | ready s (best) |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in results["sizes"]:
        for tool in ("geofence", "bokeh"):
            r = row.get(tool)
            if not r:
                continue
            if "error" in r:
                lines.append(f"| {row['flagged']:,} | {tool} | failed | | | | |")
                continue
            what = r.get("mode", "scatter")
            lines.append(
                f"| {row['flagged']:,} | {tool} | {what} | {r['build_s']} | {r['peak_rss_mb']} | {r['bytes']:,} | {min(r['ready_s'])} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
