"""Peer benchmark of ``geofence scan`` (issue #5): same files, same run, one process per tool.

For each size (sites x reads) the runner generates the workload if it is missing
(``benchmarks/generate.py``), warms the page cache with both files, then runs every tool in a
fresh child process and measures its wall time and peak resident memory (psutil polling of the
child's process tree every 20 ms, and the kernel's ``ru_maxrss`` of the child, whichever is
larger). Flagged reads are compared by 1-based input row with geofence's: reads flagged by both,
only by geofence, only by the peer.

Tools: ``geofence`` (``geofence scan ... --format csv`` as a subprocess), ``pyarrow-csv`` and
``pyarrow-stream`` (the floor: parsing only), ``duckdb-pairs`` (bare ``ST_DWithin`` join),
``duckdb-report`` (DuckDB doing the report's work), ``geopandas`` (``sjoin`` dwithin); see
``benchmarks/peers.py``. A tool that fails is reported with its error and the run goes on.

Examples
--------
::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py --sizes 10k:1M,100k:1M
    python benchmarks/run.py --sizes tiny --skip geofence --json tiny.json

The markdown table goes to stdout, everything measured to the JSON file (``--json``). The
runner itself never loads a read log: it only reads the ``row`` column of each tool's output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from generate import PRESETS, count_label, parse_count, reads_path, sites_path  # noqa: E402

TOOLS = ["pyarrow-csv", "pyarrow-stream", "geofence", "duckdb-pairs", "duckdb-report", "geopandas"]
# Variables that slow a current numpy (see the project's env notes); stripped from the children.
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
POLL_SECONDS = 0.02


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """Parse ``--sizes``: comma-separated ``SITES:READS`` (``10k:1M``) or preset names (``tiny``).

    Returns
    -------
    list of (int, int)
        (sites, reads) pairs in the order given.
    """
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        if item in PRESETS:
            out.append(PRESETS[item])
            continue
        sites, _, reads = item.partition(":")
        if not reads:
            raise argparse.ArgumentTypeError(f"size {item!r}: expected SITES:READS, e.g. 10k:1M")
        out.append((parse_count(sites), parse_count(reads)))
    return out


def child_env() -> tuple[dict[str, str], dict[str, str]]:
    """Environment for the timed children, and the BLAS variables removed from it.

    The repository root goes first on ``PYTHONPATH`` so ``python -m geofence`` and
    ``geofence.policy`` are this tree's, installed or not.
    """
    env = dict(os.environ)
    removed = {k: env.pop(k) for k in BLAS_VARS if k in env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env, removed


def machine_info(env: dict[str, str]) -> dict:
    """nproc, RAM, CPU model and the versions of the tools, for RESULTS.md."""
    import psutil

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    # Versions and the BLAS kernel as the children see them (threadpoolctl when installed).
    probe = (
        "import json, importlib.metadata as m\n"
        "v = {}\n"
        "for p in ('numpy','shapely','geopandas','pyproj','pyarrow','pandas','duckdb',"
        "'duckdb-extension-spatial','psutil'):\n"
        "    try: v[p] = m.version(p)\n"
        "    except Exception: v[p] = None\n"
        "try:\n"
        "    import numpy, threadpoolctl\n"
        "    v['blas'] = [{k: i.get(k) for k in ('internal_api','version','architecture',"
        "'num_threads')} for i in threadpoolctl.threadpool_info()]\n"
        "except Exception: v['blas'] = None\n"
        "print(json.dumps(v))\n"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        )
        info["versions"] = json.loads(res.stdout)
    except (subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        info["versions"] = {"error": str(exc)}
    return info


def measure(cmd: list[str], env: dict[str, str], log_prefix: Path) -> dict:
    """Run ``cmd`` to completion; wall time, exit code and peak RSS of its process tree.

    stdout and stderr go to files beside the outputs (no pipes to fill up and block the child).
    """
    import psutil

    out_path = log_prefix.with_suffix(".stdout")
    err_path = log_prefix.with_suffix(".stderr")
    with open(out_path, "wb") as out_fh, open(err_path, "wb") as err_fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out_fh, stderr=err_fh, cwd=ROOT)
        ps = psutil.Process(proc.pid)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                rss = ps.memory_info().rss
                for child in ps.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux: the largest single process among the child and its waited
    # descendants. Polling can miss a short peak; the kernel's figure cannot.
    peak = max(peak, usage.ru_maxrss * 1024)
    return {
        "seconds": seconds,
        "returncode": proc.returncode,
        "peak_rss_mb": peak / 2**20,
        "stdout": out_path.read_text(errors="replace"),
        "stderr": err_path.read_text(errors="replace"),
    }


def flagged_rows(path: Path):
    """Sorted unique 1-based rows of a tool's output CSV (only the ``row`` column is read)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=["row"], column_types={"row": pa.int64()}
        ),
    )
    return np.unique(table.column("row").to_numpy())


def agreement(ref, other) -> dict:
    """Counts of rows flagged by both, only by ``ref``, only by ``other``."""
    import numpy as np

    both = int(np.intersect1d(ref, other, assume_unique=True).size)
    return {"both": both, "only_ref": int(ref.size - both), "only_peer": int(other.size - both)}


def warm(paths: list[Path]) -> None:
    """Read files once so every tool starts from the same warm page cache."""
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(16 << 20):
                pass


def run_size(n_sites: int, n_reads: int, args, env: dict[str, str]) -> dict:
    """Generate (if needed) and benchmark one size; return its record."""
    data = args.data
    sites = sites_path(data, n_sites, args.seed)
    reads = reads_path(data, n_reads, args.seed)
    if not (sites.exists() and reads.exists()):
        gen = [sys.executable, str(HERE / "generate.py"), "--sites", str(n_sites)]
        gen += ["--reads", str(n_reads), "--seed", str(args.seed), "--out", str(data)]
        print(f"generating {sites.name}, {reads.name} ...", file=sys.stderr)
        subprocess.run(gen, check=True, env=env)
    label = f"{count_label(n_sites)}x{count_label(n_reads)}"
    out_dir = data / f"out-{label}-s{args.seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    warm([sites, reads])

    record = {
        "sites": n_sites,
        "reads": n_reads,
        "label": label,
        "sites_file": sites.name,
        "reads_file": reads.name,
        "tools": {},
    }
    rows = {}
    for tool in TOOLS:
        if tool in args.skip:
            continue
        out = out_dir / f"{tool}.csv"
        out.unlink(missing_ok=True)
        if tool == "geofence":
            summary = out_dir / "geofence-summary.json"
            summary.unlink(missing_ok=True)
            cmd = [*args.geofence_cmd, "scan", str(reads), "--layers", str(sites)]
            cmd += ["--out", str(out), "--format", "csv", "--summary", str(summary), "-q"]
        else:
            cmd = [sys.executable, str(HERE / "peers.py"), tool, "--reads", str(reads)]
            cmd += ["--sites", str(sites), "--out", str(out), "--distance", str(args.distance)]
            if tool.startswith("duckdb"):
                cmd += ["--threads", str(args.threads)]
        runs = []
        for i in range(args.repeat):
            print(f"[{label}] {tool} run {i + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
            out.unlink(missing_ok=True)
            load = os.getloadavg()[0]
            runs.append(measure(cmd, env, out_dir / tool))
            runs[-1]["load"] = load
            if runs[-1]["returncode"] != 0:
                break
        # Every run writes the same output; the last run's output, exit code and stdout are
        # judged. The time is the fastest run's: the one least disturbed by the rest of the
        # machine. Memory is the largest peak of all runs.
        m = runs[-1]
        rec = {
            "command": shlex.join(_relative(c) for c in cmd),
            "seconds": round(min(r["seconds"] for r in runs), 3),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
            "returncode": m["returncode"],
            "all_seconds": [round(r["seconds"], 3) for r in runs],
            "load_avg_1min_before": [round(r["load"], 2) for r in runs],
        }
        rec["reads_per_s"] = n_reads / rec["seconds"]
        ok = m["returncode"] == 0
        if tool == "geofence":
            ok = ok and out.exists()
            if summary.exists():
                try:
                    doc = json.loads(summary.read_text())
                    rec["summary"] = {
                        k: doc.get(k)
                        for k in ("reads_in", "reads_flagged", "reads_clean", "reads_rejected")
                    }
                except json.JSONDecodeError as exc:
                    rec["summary_error"] = str(exc)
        else:
            try:
                inner = json.loads(m["stdout"].strip().splitlines()[-1])
                inner["inner_seconds"] = round(inner.pop("seconds"), 3)
                rec.update(inner)
            except (IndexError, json.JSONDecodeError):
                ok = False
        if not ok:
            rec["error"] = _tail(m["stderr"]) or f"exit {m['returncode']}"
        elif out.exists():
            try:
                rows[tool] = flagged_rows(out)
                rec["flagged"] = int(rows[tool].size)
            except Exception as exc:  # e.g. an output without a `row` column
                rec["error"] = f"reading {out.name}: {exc}"
        rec["ok"] = "error" not in rec
        record["tools"][tool] = rec
        if not args.keep_outputs:
            out.unlink(missing_ok=True)

    # Agreement with geofence; if geofence did not run, with DuckDB's report (labelled).
    ref = next((t for t in ("geofence", "duckdb-report", "geopandas") if t in rows), None)
    record["agreement_ref"] = ref
    for tool, r in rows.items():
        if ref and tool != ref:
            record["tools"][tool]["agreement"] = agreement(rows[ref], r)
    if "duckdb-report" in rows and "geopandas" in rows:
        record["duckdb_vs_geopandas"] = agreement(rows["duckdb-report"], rows["geopandas"])
    gf = record["tools"].get("geofence")
    base = gf if gf and gf["ok"] else None
    for rec in record["tools"].values():
        rec["geofence_ratio"] = base["reads_per_s"] / rec["reads_per_s"] if base else None
    return record


def _relative(arg: str) -> str:
    # Commands are recorded relative to the repository so no machine path lands in a report.
    if not os.path.isabs(arg):
        return arg
    if arg == sys.executable:
        return "python"
    try:
        return str(Path(arg).resolve().relative_to(ROOT))
    except ValueError:
        return Path(arg).name


def _tail(text: str, lines: int = 3) -> str:
    # Tracebacks name files by absolute path; keep reports free of machine paths.
    text = text.replace(str(ROOT) + os.sep, "").replace(str(Path.home()), "~")
    return " | ".join(text.strip().splitlines()[-lines:])[:500]


def _fmt_rate(per_s: float) -> str:
    return f"{per_s / 1e6:.2f}M" if per_s >= 1e5 else f"{per_s / 1e3:.1f}k"


def _fmt_int(v) -> str:
    return "–" if v is None else f"{v:,}"


def markdown(result: dict) -> str:
    """The results as markdown: machine, then one table per size."""
    m = result["machine"]
    lines = [
        f"Machine: {m['nproc']} cores, {m['ram_gib']} GiB RAM, {m['cpu']}; Python {m['python']}; "
        f"DuckDB threads {result['threads']}; distance {result['distance']} m; "
        f"best of {result['repeat']} run(s) per tool; "
        f"BLAS variables unset for the children: {', '.join(result['blas_vars_unset']) or 'none were set'}.",
        "",
    ]
    for size in result["sizes"]:
        ref = size["agreement_ref"] or "geofence"
        lines += [
            f"### {size['sites']:,} sites × {size['reads']:,} reads (`{size['sites_file']}`, `{size['reads_file']}`)",
            "",
            f"| tool | seconds | reads/s | geofence ÷ peer | peak RSS MB | flagged | both | only {ref} | only peer | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for tool, r in size["tools"].items():
            ratio = "–" if r.get("geofence_ratio") is None else f"{r['geofence_ratio']:.2f}"
            ag = r.get("agreement") or {}
            notes = []
            if "pairs" in r:
                notes.append(f"{r['pairs']:,} pairs")
            if r.get("summary"):
                s = r["summary"]
                notes.append(
                    f"in {_fmt_int(s.get('reads_in'))}, rejected {_fmt_int(s.get('reads_rejected'))}"
                )
            if not r["ok"]:
                notes.append("FAILED: " + r.get("error", "").replace("|", "/"))
            lines.append(
                f"| {tool} | {r['seconds']:.2f} | {_fmt_rate(r['reads_per_s'])} | {ratio} | "
                f"{r['peak_rss_mb']:,.0f} | {_fmt_int(r.get('flagged'))} | {_fmt_int(ag.get('both'))} | "
                f"{_fmt_int(ag.get('only_ref'))} | {_fmt_int(ag.get('only_peer'))} | {'; '.join(notes)} |"
            )
        loads = [x for r in size["tools"].values() for x in r.get("load_avg_1min_before", [])]
        if loads:
            lines.append("")
            lines.append(
                f"1-minute load average before the timed runs: {min(loads):.1f}–{max(loads):.1f}."
            )
        if "duckdb_vs_geopandas" in size:
            a = size["duckdb_vs_geopandas"]
            lines.append("")
            lines.append(
                f"DuckDB vs GeoPandas flagged rows: both {a['both']:,}, only DuckDB {a['only_ref']:,}, "
                f"only GeoPandas {a['only_peer']:,}."
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(description="Peer benchmark of geofence scan (issue #5).")
    ap.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("10k:1M,100k:1M"),
        help="comma-separated SITES:READS (e.g. 10k:1M,100k:1M,10k:10M) or 'tiny'",
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=HERE / "data",
        help="where workloads and outputs live (default benchmarks/data, git-ignored)",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip", default="", help=f"comma-separated tools to skip: {', '.join(TOOLS)}")
    ap.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="DuckDB threads (default: all cores, the peer's fair setting)",
    )
    ap.add_argument("--distance", type=float, default=150.0, help="fence distance in metres")
    ap.add_argument(
        "--geofence-cmd",
        default=None,
        help="command that runs geofence (default: this Python -m geofence)",
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the results as JSON here (default DATA/results.json)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per tool; the fastest is reported (use 3 on a busy machine)",
    )
    ap.add_argument("--keep-outputs", action="store_true", help="keep each tool's CSV output")
    args = ap.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(TOOLS)
    if unknown:
        ap.error(f"--skip: unknown tools {sorted(unknown)}; known: {', '.join(TOOLS)}")
    args.geofence_cmd = (
        shlex.split(args.geofence_cmd) if args.geofence_cmd else [sys.executable, "-m", "geofence"]
    )
    args.data = args.data.resolve()
    args.data.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.data / "results.json"

    env, removed = child_env()
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(
            [
                "python",
                "benchmarks/run.py",
                *map(_relative, argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "machine": machine_info(env),
        "threads": args.threads,
        "repeat": args.repeat,
        "distance": args.distance,
        "seed": args.seed,
        "blas_vars_unset": sorted(removed),
        "sizes": [],
    }
    for n_sites, n_reads in args.sizes:
        result["sizes"].append(run_size(n_sites, n_reads, args, env))
        json_path.write_text(json.dumps(result, indent=2))  # after each size: partial results
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
