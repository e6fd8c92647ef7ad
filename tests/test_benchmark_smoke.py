"""Smoke test of the peer benchmark (issue #5): a tiny workload, end to end, no timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
GENERATE = ROOT / "benchmarks" / "generate.py"
N_SITES, N_READS = 200, 5_000


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(GENERATE), "--sites", str(N_SITES), "--reads", str(N_READS)]
    subprocess.run([*cmd, "--seed", "7", "--out", str(data)], check=True, timeout=60)
    return data


def test_generator_writes_the_documented_columns(workload):
    import geopandas as gpd
    import pyarrow.csv as pacsv

    sites = gpd.read_parquet(next(workload.glob("sites-*.parquet")))
    assert len(sites) == N_SITES
    assert {"site_id", "name", "category", "geometry"} <= set(sites.columns)
    assert sites.crs.to_epsg() == 4326
    assert sites.geometry.is_valid.all()
    reads = pacsv.read_csv(next(workload.glob("reads-*.csv")))
    assert reads.column_names == [
        "read_id",
        "plate",
        "timestamp",
        "lat",
        "lon",
        "camera_id",
        "agency",
    ]
    assert reads.num_rows == N_READS
    # read_id is the 1-based row: DuckDB's peer relies on it.
    assert reads.column("read_id").to_pylist() == list(range(1, N_READS + 1))
    first = (next(workload.glob("reads-*.csv")).read_text().splitlines()[1]).split(",")
    assert first[2].endswith("Z") and "T" in first[2]


def test_generator_is_seeded(tmp_path):
    for sub in ("a", "b"):
        cmd = [sys.executable, str(GENERATE), "--sites", "50", "--reads", "500", "--seed", "3"]
        subprocess.run([*cmd, "--out", str(tmp_path / sub)], check=True, timeout=60)
    for name in ("reads-500-s3.csv",):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_runner_end_to_end(workload, tmp_path):
    pytest.importorskip("duckdb")
    pytest.importorskip("duckdb_extension_spatial")
    pytest.importorskip("psutil")
    out_json = tmp_path / "results.json"
    cmd = [sys.executable, str(RUN), "--sizes", f"{N_SITES}:{N_READS}", "--seed", "7"]
    cmd += ["--data", str(workload), "--json", str(out_json)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    table = res.stdout
    tools = [
        "pyarrow-csv",
        "pyarrow-stream",
        "geofence",
        "duckdb-pairs",
        "duckdb-report",
        "geopandas",
    ]
    for tool in tools:
        assert f"| {tool} |" in table

    result = json.loads(out_json.read_text())
    (size,) = result["sizes"]
    recs = size["tools"]
    assert set(recs) == set(tools)
    # geofence may still be in the making: the runner reports its failure and goes on.
    for tool in ("pyarrow-csv", "pyarrow-stream", "duckdb-pairs", "duckdb-report", "geopandas"):
        assert recs[tool]["ok"], recs[tool].get("error")
        assert recs[tool]["peak_rss_mb"] > 0
    assert recs["pyarrow-csv"]["rows"] == recs["pyarrow-stream"]["rows"] == N_READS
    for tool in ("duckdb-report", "geopandas"):
        assert 0 < recs[tool]["flagged"] <= N_READS
    assert (
        recs["duckdb-pairs"]["pairs"] == recs["geopandas"]["pairs"] >= recs["geopandas"]["flagged"]
    )
    if recs["geofence"]["ok"]:
        assert recs["geofence"]["flagged"] <= N_READS

    # Both UTM-planar peers: the same flags but for reads within rounding of a fence's edge.
    a = size["duckdb_vs_geopandas"]
    differ = a["only_ref"] + a["only_peer"]
    assert differ <= max(2, 0.001 * a["both"])
    assert a["both"] == recs["duckdb-report"]["flagged"] - a["only_ref"]
