"""Scale-out (issue #13): the same plan on local, processes and dask gives the same bytes.

Real components throughout: a Dask ``LocalCluster`` of two single-threaded worker
processes for the whole module, a ``dask scheduler`` and ``dask worker --no-nanny``
processes started here on 127.0.0.1 (one killed by its PID mid-run), spawned process
pools, and a moto S3 server on 127.0.0.1. Inputs are made in code: 20 files of every kind
the plan handles. Expected counts come from how the files were made; the engines are
compared with each other byte for byte, and ``local`` is the scan the rest of the suite
checks against the geodesic oracle.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from geofence.cli import cli
from geofence.errors import GeofenceError

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
LON0, LAT0 = -122.27, 37.80
HEADER = ["read_id", "plate", "timestamp", "lat", "lon", "camera_id", "agency"]
TEXT_ROWS = 2500  # rows of every text file that has rows
PARQUET_ROWS = 3000
PARTITION_ROWS = 1000  # Parquet files of 3,000 rows in groups of 400: runs of 3 groups
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _scheduler_address(info, timeout_s: float = 60.0) -> str:
    """The address a ``dask scheduler`` wrote to its scheduler file, once the file is
    whole: dask writes it in place, so it can exist empty for a moment (seen once in this suite)."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            return json.loads(info.read_text())["address"]
        except (OSError, ValueError, KeyError):
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------------------
# The 20-file corpus


def _site_features(rng) -> list[dict]:
    feats = []
    for i in range(40):
        lon, lat = LON0 + rng.uniform(-0.012, 0.012), LAT0 + rng.uniform(-0.012, 0.012)
        cat = ("school", "medical", "worship")[i % 3]
        if i % 5 == 0:  # some areas too
            d = 0.0004
            geom = {
                "type": "Polygon",
                "coordinates": [
                    [
                        [lon - d, lat - d],
                        [lon + d, lat - d],
                        [lon + d, lat + d],
                        [lon - d, lat + d],
                        [lon - d, lat - d],
                    ]
                ],
            }
        else:
            geom = {"type": "Point", "coordinates": [lon, lat]}
        feats.append(
            {
                "type": "Feature",
                "properties": {"site_id": f"s{i:02d}", "name": f"Site {i}", "category": cat},
                "geometry": geom,
            }
        )
    return feats


def _records(rng, n: int, tag: str) -> list[list[str]]:
    """``n`` reads; rows 7, 11 and 13 are rejects (no position, bad time, (0, 0))."""
    lat = np.round(LAT0 + rng.uniform(-0.016, 0.016, n), 6)
    lon = np.round(LON0 + rng.uniform(-0.016, 0.016, n), 6)
    cam = rng.integers(0, 30, n)
    out = []
    for i in range(n):
        agency = "OPD" if i % 9 else "Oakland PD, east"  # a value that needs quoting
        out.append(
            [
                f"{tag}-{i}",
                f"PL{i % 311:04d}",
                f"2025-03-0{1 + i % 7}T{i % 24:02d}:{i % 60:02d}:00Z",
                f"{lat[i]}",
                f"{lon[i]}",
                f"CAM{cam[i]}",
                agency,
            ]
        )
    out[6][3:5] = ["NA", "NA"]
    out[10][2] = "not a time"
    out[12][3:5] = ["0", "0"]
    return out


def _text(records, delim: str = ",", term: str = "\n") -> bytes:
    def cell(v: str) -> str:
        return f'"{v}"' if delim in v else v

    lines = [delim.join(HEADER)] + [delim.join(cell(v) for v in r) for r in records]
    return (term.join(lines) + term).encode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """20 read logs: CSV, TSV, CRLF, gzip, bz2, zstd, Parquet in row groups, an empty
    Parquet file and a header-only CSV; rejects in every file that has rows."""
    import zstandard

    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(13)
    sites = d / "sites.geojson"
    sites.write_text(json.dumps({"type": "FeatureCollection", "features": _site_features(rng)}))
    reads = d / "reads"
    reads.mkdir()
    n_rows = n_rejected = 0
    for k in range(20):
        name = f"r{k:02d}"
        if k in (6, 15):
            rec = _records(rng, PARQUET_ROWS, name)
            cols = {h: [r[j] for r in rec] for j, h in enumerate(HEADER)}
            lat = [
                None if i % 500 == 3 else float(v) if v not in ("NA",) else None
                for i, v in enumerate(cols["lat"])
            ]
            table = pa.table(
                {
                    **cols,
                    "lat": pa.array(lat, pa.float64()),
                    "lon": pa.array([None if v == "NA" else float(v) for v in cols["lon"]]),
                }
            )
            pq.write_table(table, reads / f"{name}.parquet", row_group_size=400)
            n_rows += PARQUET_ROWS
            n_rejected += sum(v is None for v in lat) + 2  # + bad time, + (0, 0)
            continue
        if k == 7:
            pq.write_table(
                pa.table({h: pa.array([], pa.string()) for h in HEADER}), reads / f"{name}.parquet"
            )
            continue
        if k == 8:
            (reads / f"{name}.csv").write_bytes(_text([]))
            continue
        data = _text(
            _records(rng, TEXT_ROWS, name),
            delim="\t" if k == 2 else ",",
            term="\r\n" if k == 5 else "\n",
        )
        n_rows += TEXT_ROWS
        n_rejected += 3
        if k == 2:
            (reads / f"{name}.tsv").write_bytes(data)
        elif k == 3:
            (reads / f"{name}.csv.bz2").write_bytes(bz2.compress(data))
        elif k == 4:
            (reads / f"{name}.csv.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
        elif k % 2:
            (reads / f"{name}.csv.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (reads / f"{name}.csv").write_bytes(data)
    files = sorted(reads.iterdir())
    assert len(files) == 20
    return {
        "dir": d,
        "sites": sites,
        "reads": reads,
        "glob": str(reads / "r*"),
        "files": files,
        "n_rows": n_rows,
        "n_rejected": n_rejected,
    }


def _scan_cli(
    corpus, out_dir: Path, *engine_args, fmt: str = "geojson", extra=(), glob=None
) -> tuple[dict, object]:
    """Run ``geofence scan`` in-process; the three outputs' bytes and the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": out_dir / f"report.{fmt}",
        "summary": out_dir / "summary.json",
        "rejects": out_dir / "rejects.csv",
    }
    args = [
        "scan",
        glob or corpus["glob"],
        "--layers",
        str(corpus["sites"]),
        "--out",
        str(paths["report"]),
        "--format",
        fmt,
        "--summary",
        str(paths["summary"]),
        "--rejects",
        str(paths["rejects"]),
        "--deterministic",
        "--partition-rows",
        str(PARTITION_ROWS),
        *extra,
        *engine_args,
    ]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    got = {k: p.read_bytes() for k, p in paths.items() if p.exists()}
    return got, res


@pytest.fixture(scope="module")
def local(corpus, tmp_path_factory) -> dict:
    """The local engine's outputs, the reference every other engine must equal."""
    got, res = _scan_cli(corpus, tmp_path_factory.mktemp("local"), "--engine", "local")
    assert res.exit_code == 0, res.output
    return got


@pytest.fixture(scope="session")
def cluster():
    """One LocalCluster of two single-threaded worker processes for the whole run."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as lc,
        Client(lc, set_as_default=False) as client,
    ):
        client.wait_for_workers(2)
        yield {"address": lc.scheduler_address, "client": client}


def _hidden_leftovers(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------
# Byte identity


@pytest.mark.parametrize("fmt", ["geojson", "csv"])
def test_local_processes_and_dask_write_the_same_bytes(corpus, local, cluster, fmt, tmp_path):
    ref = local if fmt == "geojson" else None
    outs = {}
    for name, args in (
        ("local", ("--engine", "local")),
        ("processes", ("--jobs", "2")),
        ("dask", ("--scheduler", cluster["address"])),
    ):
        got, res = _scan_cli(corpus, tmp_path / name, *args, fmt=fmt)
        assert res.exit_code == 0, res.output
        assert set(got) == {"report", "summary", "rejects"}
        assert not _hidden_leftovers(tmp_path / name)  # staging gone, no partial files
        outs[name] = got
    for name in ("processes", "dask"):
        for kind in ("report", "summary", "rejects"):
            assert outs[name][kind] == outs["local"][kind], f"{name} {kind} differs from local"
    if ref is not None:
        assert outs["local"] == ref  # the same plan scanned again: the same bytes

    summary = json.loads(outs["local"]["summary"])
    assert "execution" not in summary and "elapsed_s" not in summary  # --deterministic
    assert summary["reads_in"] == corpus["n_rows"]
    assert summary["reads_rejected"] == corpus["n_rejected"]
    assert (
        summary["reads_in"]
        == summary["reads_clean"] + summary["reads_flagged"] + summary["reads_rejected"]
    )
    assert summary["reads_flagged"] > 1000
    # every input once, in plan order, with its rows and the SHA-256 of its bytes
    assert [i["file"] for i in summary["inputs"]] == [p.name for p in corpus["files"]]
    by_name = {i["file"]: i for i in summary["inputs"]}
    for p in corpus["files"]:
        assert by_name[p.name]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert by_name["r06.parquet"]["rows"] == PARQUET_ROWS
    assert by_name["r07.parquet"]["rows"] == 0 and by_name["r08.csv"]["rows"] == 0
    # the rejects file: one header, then every rejected row with its reason
    rej_lines = outs["local"]["rejects"].decode().splitlines()
    assert rej_lines[0] == ",".join(HEADER) + ",reason"
    assert len(rej_lines) - 1 == corpus["n_rejected"]


def test_the_cluster_scan_starts_gives_the_bytes_and_preloads_the_scan(corpus, local, tmp_path):
    # --workers starts a LocalCluster of its own (the other tests use a running one); its
    # workers import the scan while they register (dask_setup), not in their first task
    got, res = _scan_cli(corpus, tmp_path / "own", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert got == local
    assert not _hidden_leftovers(tmp_path / "own")

    from geofence.distributed import Cluster, _DaskConnection

    def imported():
        return [m for m in ("geofence.scan", "geopandas") if m in sys.modules]

    conn = _DaskConnection(Cluster("dask", workers=1))
    try:
        client = conn.client()
        deadline = time.monotonic() + 60
        while (mods := list(client.run(imported).values())) != [["geofence.scan", "geopandas"]]:
            assert time.monotonic() < deadline, f"the worker has imported only {mods}"
            time.sleep(0.05)
    finally:
        conn.close()


def test_report_rows_are_in_plan_order_with_row_numbers_of_their_file(corpus, local):
    fc = json.loads(local["report"])
    order = {str(p): i for i, p in enumerate(corpus["files"])}
    keys = [(order[f["properties"]["source"]], f["properties"]["row"]) for f in fc["features"]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # a Parquet file cut into three partitions keeps its own row numbers, and read_id
    # (written as "<file>-<i>" for row i + 1) agrees with them
    pq_rows = [
        f["properties"] for f in fc["features"] if f["properties"]["source"].endswith("r06.parquet")
    ]
    assert max(p["row"] for p in pq_rows) > 2 * PARTITION_ROWS
    assert all(p["read_id"] == f"r06-{p['row'] - 1}" for p in pq_rows)


def test_geojsonseq_is_the_same_on_dask(corpus, cluster, tmp_path):
    a, ra = _scan_cli(corpus, tmp_path / "l", "--engine", "local", fmt="geojsonseq")
    b, rb = _scan_cli(corpus, tmp_path / "d", "--scheduler", cluster["address"], fmt="geojsonseq")
    assert ra.exit_code == 0 and rb.exit_code == 0, ra.output + rb.output
    assert a == b


# --------------------------------------------------------------------------------------
# Workers: the engine once per process, the site table checked, versions checked


def _api_scan(corpus, tmp_path, **kw) -> tuple[dict, dict]:
    from geofence.scan import run_scan

    ex: dict = {}
    doc = run_scan(
        [corpus["glob"]],
        [corpus["sites"]],
        out=tmp_path / "report.geojson",
        summary=tmp_path / "summary.json",
        partition_rows=PARTITION_ROWS,
        on_execution=ex.update,
        **kw,
    )
    return doc, ex


def test_engine_is_built_once_per_worker_process(corpus, cluster, tmp_path):
    # a distance of its own: a site table no other test sent, so every count starts at 0
    doc, ex = _api_scan(corpus, tmp_path, scheduler=cluster["address"], distances={"school": 151.0})
    from geofence.plan import plan_scan

    n_parts = len(plan_scan([corpus["glob"]], partition_rows=PARTITION_ROWS))
    assert (
        n_parts == 24 and ex["partitions"] == n_parts and ex["engine"] == "dask"
    )  # 17 text, 3 + 3 + 1 Parquet
    assert ex["engine_builds"] and set(ex["engine_builds"].values()) == {1}, ex
    # counted by the workers themselves: at most once each, and once in every worker used
    from geofence.distributed import worker_facts

    sha = ex["site_table_sha256"]
    builds = [f["engine_builds"].get(sha, 0) for f in cluster["client"].run(worker_facts).values()]
    assert max(builds) == 1 and sum(builds) == len(ex["engine_builds"])
    # without --deterministic the summary says how it ran
    assert doc["execution"]["engine"] == "dask" and doc["execution"]["partitions"] == n_parts
    # processes: the same, each spawned process builds once for 24 partitions
    _, ex = _api_scan(corpus, tmp_path / "p", jobs=2, distances={"school": 151.0})
    assert len(ex["engine_builds"]) <= 2 and set(ex["engine_builds"].values()) == {1}, ex


def test_layer_changed_after_planning_is_refused(corpus, cluster, tmp_path):
    sites = tmp_path / "sites.geojson"
    sites.write_bytes(corpus["sites"].read_bytes())
    changed = []

    def edit_layer(done):
        if not changed:
            fc = json.loads(sites.read_text())
            fc["features"] = fc["features"][1:]
            sites.write_text(json.dumps(fc))
            changed.append(done)

    out = tmp_path / "out"
    out.mkdir()
    from geofence.scan import run_scan

    with pytest.raises(GeofenceError, match=r"sites\.geojson changed after the scan was planned"):
        run_scan(
            [corpus["glob"]],
            [sites],
            out=out / "r.geojson",
            summary=out / "s.json",
            scheduler=cluster["address"],
            progress=edit_layer,
            partition_rows=PARTITION_ROWS,
        )
    assert changed and list(out.iterdir()) == []


def test_worker_refuses_a_site_table_with_another_sha(corpus, tmp_path):
    from geofence import distributed as dist
    from geofence.engine import Engine
    from geofence.plan import plan_scan
    from geofence.scan import Labeller, ScanSetup, load_sites

    sites, _, pol = load_sites([corpus["sites"]])
    eng = Engine(sites, pol)
    setup = ScanSetup(eng, Labeller(eng))
    blob, sha = dist.make_payload(sites, pol, setup, None)
    other, _ = dist.make_payload(sites.iloc[1:], pol, setup, None)
    part = plan_scan([corpus["files"][0]]).partitions[0]
    task = dist.Task(part, sha, str(tmp_path), "geojson", False)
    with pytest.raises(dist.SiteTableMismatch, match=r"not .* as planned"):
        dist.run_partition(task, other)
    assert list(tmp_path.iterdir()) == []
    # the right table: a result whose fragment hash is that of the fragment's bytes
    res = dist.run_partition(task, blob)
    assert res.report.sha256 == hashlib.sha256(Path(res.report.url).read_bytes()).hexdigest()
    assert res.scan.summary.reads_in == TEXT_ROWS


def test_a_second_result_must_have_the_same_hashes(corpus, tmp_path):
    """The client keeps one result per partition; a second that differs is refused."""
    from geofence import distributed as dist
    from geofence.engine import Engine
    from geofence.plan import plan_scan
    from geofence.scan import Labeller, ScanSetup, load_sites

    sites, _, pol = load_sites([corpus["sites"]])
    eng = Engine(sites, pol)
    blob, sha = dist.make_payload(sites, pol, ScanSetup(eng, Labeller(eng)), None)
    plan = plan_scan([corpus["glob"]], partition_rows=PARTITION_ROWS)
    runs = []
    for k, part in enumerate(plan.partitions[:2]):
        stage = tmp_path / f"stage{k}"
        stage.mkdir()
        runs.append(dist.run_partition(dist.Task(part, sha, str(stage), "csv", False), blob))
    again = dist.run_partition(
        dist.Task(plan.partitions[0], sha, str(tmp_path), "csv", False), blob
    )
    assert again.identity() == runs[0].identity()  # a rerun: the same bytes and counts

    from geofence.report import CSVWriter

    with (tmp_path / "out.csv").open("wb") as fh:
        col = dist._Collector(plan, CSVWriter(fh), None, {}, None)
        col.accept(runs[0])
        col.accept(again)  # same hashes: kept once
        forged = dist.PartitionResult(0, runs[1].scan, runs[1].report, None, runs[1].worker, 1, 0.0)
        with pytest.raises(dist.NonDeterministicPartition, match="non-deterministic partition 0"):
            col.accept(forged)


def test_workers_with_other_versions_are_refused(cluster):
    from geofence import distributed as dist

    facts = cluster["client"].run(dist.worker_facts)
    addr, f = sorted(facts.items())[0]
    dist.check_versions(dist.versions(), addr, f["versions"])  # the same install: fine
    older = {**f["versions"], "numpy": "1.26.4"}
    with pytest.raises(GeofenceError, match=rf"worker {addr} runs numpy 1.26.4 \(client "):
        dist.check_versions(dist.versions(), addr, older)


# --------------------------------------------------------------------------------------
# Failures leave no output and no staging


@pytest.mark.parametrize("engine", ["local", "processes", "dask"])
def test_truncated_gzip_fails_every_engine_naming_the_file(corpus, cluster, engine, tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    for p in corpus["files"][:4]:
        (bad / p.name).write_bytes(p.read_bytes())
    whole = (bad / "r01.csv.gz").read_bytes()
    (bad / "r01.csv.gz").write_bytes(whole[: len(whole) * 2 // 3])
    args = {
        "local": ("--engine", "local"),
        "processes": ("--jobs", "2"),
        "dask": ("--scheduler", cluster["address"]),
    }[engine]
    out = tmp_path / "out"
    got, res = _scan_cli(corpus, out, *args, glob=str(bad / "r*"))
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith("geofence: error:")]
    assert (
        len(lines) == 1
        and "r01.csv.gz" in lines[0]
        and "truncated" in lines[0]
        and "row" in lines[0]
    )
    assert got == {} and list(out.iterdir()) == []  # no output, no staging folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_line_and_leaves_nothing(corpus, tmp_path, monkeypatch):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        got, res = _scan_cli(
            corpus, tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"
        )
    assert res.exit_code == 1
    assert "cannot reach the Dask scheduler" in res.output and "dask scheduler" in res.output
    assert got == {} and list((tmp_path / "out").iterdir()) == []


def test_object_store_errors_are_retried_then_one_line(corpus, tmp_path):
    """Staging on an S3 endpoint nobody listens on: every attempt fails, ``--retries 1``
    means two attempts, then one line and no output."""
    opts = {
        "endpoint_url": f"http://127.0.0.1:{_free_port()}",
        "key": "k",
        "secret": "s",
        "config_kwargs": json.dumps({"connect_timeout": 1, "retries": {"max_attempts": 1}}),
    }
    args = [a for k, v in opts.items() for a in ("--storage-option", f"{k}={v}")]
    got, res = _scan_cli(
        corpus,
        tmp_path / "out",
        "--jobs",
        "1",
        "--staging",
        "s3://nowhere/staging",
        "--retries",
        "1",
        *args,
        glob=str(corpus["files"][0]),
    )
    assert res.exit_code == 1
    line = [ln for ln in res.output.splitlines() if ln.startswith("geofence: error:")]
    assert (
        len(line) == 1
        and "r00.csv: object store failed 2 times" in line[0]
        and "--retries" in line[0]
    )
    assert got == {} and list((tmp_path / "out").iterdir()) == []


def _children(pid: int) -> list:
    psutil = pytest.importorskip("psutil")
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children(recursive=True)
    return []


def test_ctrl_c_exits_130_and_leaves_no_output_staging_or_workers(corpus, tmp_path):
    psutil = pytest.importorskip("psutil")
    out, staging = tmp_path / "out", tmp_path / "staging"
    out.mkdir()
    staging.mkdir()
    # tiny batches make the run long enough to interrupt (batch size never changes results)
    cmd = [
        sys.executable,
        "-m",
        "geofence",
        "scan",
        corpus["glob"],
        "--layers",
        str(corpus["sites"]),
        "--out",
        str(out / "r.geojson"),
        "--summary",
        str(out / "s.json"),
        "--jobs",
        "2",
        "--staging",
        str(staging),
        "--batch-size",
        "64",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    end = time.monotonic() + 120
    while not any(staging.rglob("part-*")) and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip().splitlines()[-1] == "geofence: interrupted", err.decode()
    assert list(out.iterdir()) == [] and list(staging.iterdir()) == []
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


# --------------------------------------------------------------------------------------
# A real `dask scheduler` and `dask worker` processes


@pytest.fixture(scope="module")
def cli_scheduler(tmp_path_factory):
    """``dask scheduler`` on 127.0.0.1, started here and stopped at the end."""
    from distributed import Client

    d = tmp_path_factory.mktemp("scheduler")
    info = d / "scheduler.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dask",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        address = _scheduler_address(info)
        with Client(address, set_as_default=False, timeout=30) as client:
            yield {"address": address, "client": client}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _dask_workers(sched: dict, names: list[str], env: dict | None = None):
    """``dask worker --no-nanny`` processes (one thread each) until the block ends."""
    procs = {
        n: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dask",
                "worker",
                sched["address"],
                "--no-nanny",
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--name",
                n,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env or ENV,
        )
        for n in names
    }
    try:
        sched["client"].wait_for_workers(len(names), timeout=120)
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            p.wait(timeout=30)
        end = time.monotonic() + 30
        while sched["client"].scheduler_info()["workers"] and time.monotonic() < end:
            time.sleep(0.1)


def test_killed_worker_is_rerun_with_identical_bytes(corpus, local, cli_scheduler, tmp_path):
    out, staging = tmp_path / "out", tmp_path / "staging"
    out.mkdir()
    staging.mkdir()
    with _dask_workers(cli_scheduler, ["w1", "w2"]) as workers:
        cmd = [
            sys.executable,
            "-m",
            "geofence",
            "scan",
            corpus["glob"],
            "--layers",
            str(corpus["sites"]),
            "--out",
            str(out / "report.geojson"),
            "--summary",
            str(out / "summary.json"),
            "--rejects",
            str(out / "rejects.csv"),
            "--deterministic",
            "--partition-rows",
            str(PARTITION_ROWS),
            "--scheduler",
            cli_scheduler["address"],
            "--staging",
            str(staging),
            "--batch-size",
            "64",  # small batches: a run long enough to kill in
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        client = cli_scheduler["client"]
        end = time.monotonic() + 120
        victim = None
        while victim is None and proc.poll() is None and time.monotonic() < end:
            # a worker in the middle of a partition, once some partition has finished
            if any(staging.rglob("part-*")):
                names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
                busy = [names[a] for a, keys in client.processing().items() if keys and a in names]
                victim = busy[0] if busy else None
            time.sleep(0.01)
        assert victim is not None and proc.poll() is None, (
            "the run ended before a worker could be killed"
        )
        os.kill(workers[victim].pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
        assert workers[victim].wait(timeout=10) == -signal.SIGKILL
    assert proc.returncode == 0, err.decode()[-2000:]
    got = {
        k: (out / f).read_bytes()
        for k, f in (
            ("report", "report.geojson"),
            ("summary", "summary.json"),
            ("rejects", "rejects.csv"),
        )
    }
    assert got == local
    assert json.loads(got["summary"])["reads_in"] == corpus["n_rows"]
    assert list(staging.iterdir()) == []


def test_lost_scheduler_is_one_line_and_leaves_nothing(corpus, tmp_path):
    """A scheduler of its own, SIGKILLed while a partition runs: exit 1, one line, no
    output, staging removed."""
    from distributed import Client

    info = tmp_path / "scheduler.json"
    out, staging = tmp_path / "out", tmp_path / "staging"
    out.mkdir()
    staging.mkdir()
    dask_cmd = [sys.executable, "-m", "dask"]
    sched = subprocess.Popen(
        [
            *dask_cmd,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    worker = None
    try:
        address = _scheduler_address(info)
        worker = subprocess.Popen(
            [
                *dask_cmd,
                "worker",
                address,
                "--no-nanny",
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        cmd = [
            sys.executable,
            "-m",
            "geofence",
            "scan",
            corpus["glob"],
            "--layers",
            str(corpus["sites"]),
            "--out",
            str(out / "r.geojson"),
            "--summary",
            str(out / "s.json"),
            "--scheduler",
            address,
            "--staging",
            str(staging),
            "--batch-size",
            "64",
        ]
        with Client(address, set_as_default=False, timeout=30) as client:
            client.wait_for_workers(1, timeout=120)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
            end = time.monotonic() + 120
            while (
                proc.poll() is None
                and time.monotonic() < end
                and not any(client.processing().values())
            ):
                time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()
        sched.kill()
        _, err = proc.communicate(timeout=120)
    finally:
        for p in (worker, sched):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait(timeout=30)
    assert proc.returncode == 1, err.decode()[-1500:]
    lines = err.decode().strip().splitlines()
    assert (
        len(lines) == 1
        and "lost the Dask scheduler" in lines[0]
        and "nothing was written" in lines[0]
    ), lines
    assert list(out.iterdir()) == [] and list(staging.iterdir()) == []


def test_worker_without_avx512_gives_the_same_bytes(corpus, local, cli_scheduler, tmp_path):
    from numpy._core._multiarray_umath import __cpu_features__

    if not __cpu_features__.get("AVX512F"):
        pytest.skip("this CPU has no AVX-512: nothing to turn off")
    env = {**ENV, "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
    with _dask_workers(cli_scheduler, ["noavx"], env=env):
        client = cli_scheduler["client"]
        probe = "__import__('numpy')._core._multiarray_umath.__cpu_features__"
        off = client.run(eval, f"[k for k in ('X86_V4', 'AVX512_ICL') if not {probe}[k]]")
        assert list(off.values()) == [[k for k in ("X86_V4", "AVX512_ICL") if __cpu_features__[k]]]
        got, res = _scan_cli(corpus, tmp_path / "out", "--scheduler", cli_scheduler["address"])
    assert res.exit_code == 0, res.output
    assert got == local


# --------------------------------------------------------------------------------------
# Object storage: a moto S3 server on loopback


@pytest.fixture(scope="module")
def s3(corpus):
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="alpr")
        for p in corpus["files"]:
            client.upload_file(str(p), "alpr", f"logs/{p.name}")
        yield {
            "client": client,
            "options": {"endpoint_url": endpoint, "key": "test", "secret": "test"},
        }
    finally:
        server.stop()


def test_s3_inputs_and_staging_give_the_bytes_of_the_local_files(
    corpus, local, cluster, s3, tmp_path
):
    opts = [a for k, v in s3["options"].items() for a in ("--storage-option", f"{k}={v}")]
    got, res = _scan_cli(
        corpus,
        tmp_path / "out",
        "--scheduler",
        cluster["address"],
        "--staging",
        "s3://alpr/staging",
        *opts,
        glob="s3://alpr/logs/r*",
    )
    assert res.exit_code == 0, res.output
    assert got["summary"] == local["summary"]  # names, SHA-256s, rows, counts
    assert got["rejects"] == local["rejects"]
    # report rows name their source: the same bytes once the location is swapped
    assert (
        got["report"].replace(b"s3://alpr/logs/", str(corpus["reads"]).encode() + b"/")
        == local["report"]
    )
    assert s3["client"].list_objects_v2(Bucket="alpr", Prefix="staging").get("KeyCount", 0) == 0


# --------------------------------------------------------------------------------------
# The plan


def test_plan_expands_sorts_numbers_and_cuts_row_groups(corpus, tmp_path):
    from geofence.errors import UsageError
    from geofence.plan import plan_scan

    plan = plan_scan(
        [str(corpus["reads"] / "r1*"), corpus["files"][0]], partition_rows=PARTITION_ROWS
    )
    names = [i.name for i in plan.inputs]
    assert (
        names[:-1] == sorted(names[:-1]) and names[-1] == "r00.csv"
    )  # glob sorted, arguments in order
    assert [i.index for i in plan.inputs] == list(range(len(names)))
    pq_parts = [p for p in plan.partitions if p.input.name == "r15.parquet"]
    assert [p.row_groups for p in pq_parts] == [(0, 3), (3, 6), (6, 8)]
    assert [p.first_row for p in pq_parts] == [1, 1201, 2401]
    assert [p.rows for p in pq_parts] == [1200, 1200, 600]
    assert [p.hashes_input for p in pq_parts] == [True, False, False]
    assert [p.index for p in plan.partitions] == list(range(len(plan.partitions)))
    assert all(p.label == p.input.url for p in plan.partitions)
    assert (
        plan_scan([corpus["files"][0]]).partitions[0].label is None
    )  # one input: no source column
    empty = plan_scan([corpus["reads"] / "r07.parquet"]).partitions
    assert [(p.row_groups, p.rows) for p in empty] == [((0, 1), 0)] or [
        (p.row_groups, p.rows) for p in empty
    ] == [((0, 0), 0)]
    with pytest.raises(UsageError, match="no file matches"):
        plan_scan([str(tmp_path / "*.csv")])
    with pytest.raises(UsageError, match="no such file"):
        plan_scan([tmp_path / "missing.csv"])


def test_engine_options_that_cannot_work_are_refused_before_any_work(corpus):
    base = ["scan", "-", "--layers", str(corpus["sites"])]
    res = CliRunner().invoke(cli, [*base, "--jobs", "2"], input=b"")
    assert (
        res.exit_code == 1
        and "standard input (-) can be scanned only with --engine local" in res.output
    )
    res = CliRunner().invoke(
        cli, [*base, "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], input=b""
    )
    assert res.exit_code == 1 and "--jobs goes with --engine processes" in res.output
    res = CliRunner().invoke(cli, [*base, "--engine", "local", "--workers", "2"], input=b"")
    assert res.exit_code == 1 and "options of different engines" in res.output
