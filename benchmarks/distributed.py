"""Scale-out benchmark of ``geofence scan`` (issue #13): local vs processes vs Dask.

The issue's workload: 10 million reads in 20 files (``reads-10M-s42.csv`` of
``benchmarks/generate.py`` cut into 20 files of 500,000 reads, each with the header), 10,000
sites, the default policy at 150 m (``near``). Every run is ``python -m geofence scan
'DATA/reads-10M-s42-20/*.csv' --layers sites-10k-s42.parquet --format csv --out ... --summary
... --deterministic -q`` plus its engine options, in a fresh process, timed from ``exec`` to
exit (interpreter start, imports, layer loading and the cluster's start included):

* ``local`` (the reference), ``dask`` with one worker (``--workers 1``), ``dask`` with two
  (``--workers 2``) and ``processes`` with two (``--jobs 2``): each ``--repeat`` times (3), the
  median reported, with the peak RSS of the client process and of the largest worker;
* a ``dask scheduler`` and two ``dask worker --no-nanny`` processes started here: one run
  undisturbed, then one in which a worker is SIGKILLed at half the undisturbed run's time.

Every run's report and summary must have the SHA-256 of the local run's (byte identity). The
machine's load average is recorded before every run: on a shared 2-core machine the 2-worker
figures depend on what else runs. Not part of the test suite.

::

    python benchmarks/distributed.py                 # all of it (~10 min on 2 cores)
    python benchmarks/distributed.py --repeat 1 --skip kill
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file's name would hide the `distributed` package: not on the path, and the peer
# benchmark's helpers (run.py) loaded from their file instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _peer_helpers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("geofence_bench_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # which puts HERE back on the path: take it out again
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    return mod.child_env, mod.machine_info


child_env, machine_info = _peer_helpers()

POLL_SECONDS = 0.05
FILES = 20


def split_reads(src: Path, dst: Path, files: int = FILES) -> list[Path]:
    """Cut ``src`` into ``files`` CSV files of equal row counts, each with the header."""
    done = sorted(dst.glob("reads-*.csv"))
    if len(done) == files:
        return done
    dst.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fh:
        header = fh.readline()
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    per = -(-rows // files)
    with open(src, "rb") as fh:
        fh.readline()
        for k in range(files):
            tmp = dst / f".reads-{k:02d}.csv.partial"
            with open(tmp, "wb", buffering=1 << 20) as out:
                out.write(header)
                for _ in range(per):
                    line = fh.readline()
                    if not line:
                        break
                    out.write(line)
            tmp.rename(dst / f"reads-{k:02d}.csv")
    return sorted(dst.glob("reads-*.csv"))


def _rss_by_pid(pids) -> dict[int, int]:
    import psutil

    out = {}
    for pid in pids:
        try:
            out[pid] = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return out


def _role(proc) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:
        return "other"
    if "resource_tracker" in cmd or "forkserver" in cmd:
        return "other"
    return "worker"


def measure(
    cmd: list[str],
    env: dict,
    logs: Path,
    *,
    extra_workers: dict | None = None,
    kill_at_s: float | None = None,
) -> dict:
    """Run ``cmd``; wall time, CPU time, exit code, peak RSS of the client and each worker.

    CPU time is user + system of every process reaped during the run (the client and the
    workers it starts; not ``extra_workers``, which outlive it).

    ``extra_workers`` (name -> Popen) are workers outside the process tree (``dask worker``
    started beforehand); ``kill_at_s`` SIGKILLs the last of them at that many seconds.
    """
    import psutil

    peaks: dict[str, int] = {}
    killed = None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(logs.with_suffix(".stdout"), "wb") as o, open(logs.with_suffix(".stderr"), "wb") as e:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=o, stderr=e, cwd=ROOT)
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = {proc.pid: "client"}
                for c in ps.children(recursive=True):
                    role = _role(c)
                    if role == "worker":
                        tree[c.pid] = f"worker:{c.pid}"
                for name, p in (extra_workers or {}).items():
                    tree[p.pid] = f"worker:{name}"
                for pid, rss in _rss_by_pid(tree).items():
                    peaks[tree[pid]] = max(peaks.get(tree[pid], 0), rss)
            except psutil.Error:
                pass
            if kill_at_s is not None and killed is None and time.perf_counter() - t0 >= kill_at_s:
                name, victim = list(extra_workers.items())[-1]
                os.kill(victim.pid, signal.SIGKILL)
                killed = {"worker": name, "at_s": round(time.perf_counter() - t0, 2)}
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    workers = [v for k, v in peaks.items() if k.startswith("worker")]
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_s, 2),
        "returncode": proc.returncode,
        "client_peak_rss_mb": round(peaks.get("client", 0) / 2**20),
        "worker_peak_rss_mb": round(max(workers) / 2**20) if workers else None,
        "workers_seen": len(workers),
        "killed": killed,
        "stderr_tail": logs.with_suffix(".stderr").read_text(errors="replace")[-600:],
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def start_cli_cluster(env: dict, workdir: Path, n: int = 2):
    """``dask scheduler`` and ``n`` ``dask worker --no-nanny`` processes on 127.0.0.1."""
    info = workdir / "scheduler.json"
    info.unlink(missing_ok=True)
    log = open(workdir / "dask-cli.log", "wb")  # closed by the caller
    sched = subprocess.Popen(
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
        env=env,
        stdout=log,
        stderr=log,
    )
    workers: dict = {}
    try:
        end = time.monotonic() + 60
        while not info.exists() and time.monotonic() < end:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        workers = {
            f"w{i}": subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dask",
                    "worker",
                    address,
                    "--no-nanny",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                ],
                env=env,
                stdout=log,
                stderr=log,
            )
            for i in range(1, n + 1)
        }
        from distributed import Client

        with Client(address, set_as_default=False, timeout=60) as c:
            c.wait_for_workers(n, timeout=120)
    except BaseException:  # nothing left running
        stop(*workers.values(), sched)
        log.close()
        raise
    return address, sched, workers, log


def stop(*procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated: local,dask1,dask2,processes2,kill")
    ap.add_argument("--json", type=Path, default=None, help="default DATA/distributed-results.json")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    env, _ = child_env()
    src = args.data / "reads-10M-s42.csv"
    sites = args.data / "sites-10k-s42.parquet"
    if not src.exists() or not sites.exists():
        subprocess.run(
            [
                sys.executable,
                str(HERE / "generate.py"),
                "--sites",
                "10000",
                "--reads",
                "10000000",
                "--seed",
                "42",
                "--out",
                str(args.data),
            ],
            check=True,
            env=env,
        )
    split_dir = args.data / "reads-10M-s42-20"
    print("splitting the 10M read log into 20 files ...", file=sys.stderr, flush=True)
    split_reads(src, split_dir)
    work = args.data / "out-distributed"
    work.mkdir(exist_ok=True)
    base = [
        sys.executable,
        "-m",
        "geofence",
        "scan",
        str(split_dir / "reads-*.csv"),
        "--layers",
        str(sites),
        "--format",
        "csv",
        "--deterministic",
        "-q",
    ]
    configs = {
        "local": ["--engine", "local"],
        "dask1": ["--workers", "1"],
        "dask2": ["--workers", "2"],
        "processes2": ["--jobs", "2"],
    }
    record = {
        "machine": machine_info(env),
        "workload": "10M reads in 20 CSV files (500k each), 10k sites, 150 m (near), --format csv",
        "runs": {},
    }
    ref = None

    def one(name: str, extra: list[str], i: int, **kw) -> dict:
        out, summ = work / f"{name}.csv", work / f"{name}-summary.json"
        out.unlink(missing_ok=True)
        summ.unlink(missing_ok=True)
        load = os.getloadavg()[0]
        print(f"[{name}] run {i + 1} (load {load:.2f}) ...", file=sys.stderr, flush=True)
        m = measure(
            [*base, "--out", str(out), "--summary", str(summ), *extra],
            env,
            work / f"{name}-{i}",
            **kw,
        )
        m["load_avg_1min_before"] = round(load, 2)
        if m["returncode"] == 0:
            m["report_sha256"], m["summary_sha256"] = sha256(out), sha256(summ)
            out.unlink()  # ~0.9 GB each: the hash is what is compared
            m["same_bytes_as_local"] = (
                ref is None or (m["report_sha256"], m["summary_sha256"]) == ref
            )
        print(
            f"    {m['seconds']} s, client {m['client_peak_rss_mb']} MB, worker {m['worker_peak_rss_mb']} MB, rc {m['returncode']}",
            file=sys.stderr,
            flush=True,
        )
        return m

    for name, extra in configs.items():
        if name in skip:
            continue
        runs = [one(name, extra, i) for i in range(args.repeat)]
        ok = [r for r in runs if r["returncode"] == 0]
        if name == "local" and ok:
            ref = (ok[0]["report_sha256"], ok[0]["summary_sha256"])
            for r in ok:
                r["same_bytes_as_local"] = (r["report_sha256"], r["summary_sha256"]) == ref
        record["runs"][name] = {
            "median_seconds": statistics.median(r["seconds"] for r in ok) if ok else None,
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in ok) if ok else None,
            "client_peak_rss_mb": max((r["client_peak_rss_mb"] for r in ok), default=None),
            "worker_peak_rss_mb": max((r["worker_peak_rss_mb"] or 0 for r in ok), default=None)
            or None,
            "same_bytes_as_local": all(r.get("same_bytes_as_local") for r in ok)
            and len(ok) == len(runs),
            "all": runs,
        }
    if "kill" not in skip:
        address, sched, workers, log = start_cli_cluster(env, work)
        try:
            extra = ["--scheduler", address]
            calm = one("cli2", extra, 0, extra_workers=workers)
            half = calm["seconds"] / 2
            hit = one("cli2-killed", extra, 0, extra_workers=workers, kill_at_s=half)
            record["runs"]["cli2"] = {
                "median_seconds": calm["seconds"],
                "client_peak_rss_mb": calm["client_peak_rss_mb"],
                "worker_peak_rss_mb": calm["worker_peak_rss_mb"],
                "same_bytes_as_local": calm.get("same_bytes_as_local"),
                "all": [calm],
            }
            record["runs"]["cli2-killed"] = {
                "median_seconds": hit["seconds"],
                "same_bytes_as_local": hit.get("same_bytes_as_local"),
                "killed": hit["killed"],
                "all": [hit],
            }
        finally:
            stop(*workers.values(), sched)
            log.close()

    r = record["runs"]
    loc = (r.get("local") or {}).get("median_seconds")
    lines = [
        "| run | median s | ÷ local | CPU s | client peak RSS MB | worker peak RSS MB | same bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in r.items():
        s = v.get("median_seconds")
        ratio = f"{s / loc:.2f}" if s and loc else "–"
        lines.append(
            f"| {name} | {s} | {ratio} | {v.get('median_cpu_seconds', '–')} | {v.get('client_peak_rss_mb', '–')} | {v.get('worker_peak_rss_mb') or '–'} | {v.get('same_bytes_as_local')} |"
        )
    cpu = (r.get("local") or {}).get("median_cpu_seconds")
    if loc and cpu:
        # On N cores no engine can finish before the local run's CPU time / N, whatever its
        # overhead: the floor of the "2 workers <= 0.7x local" target (issue #13).
        cores = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ) or 1  # the cores this process may use, not the host's
        record["local_cores_busy"] = round(cpu / loc, 2)
        record["floor_ratio_on_this_machine"] = round(cpu / cores / loc, 2)
        lines.append("")
        lines.append(
            f"local keeps {cpu / loc:.2f} cores busy ({cpu} CPU-s in {loc} s); on {cores} cores no engine "
            f"can take less than {cpu / cores:.2f} s = {cpu / cores / loc:.2f}x local"
        )
    if "cli2" in r and "cli2-killed" in r:
        lines.append("")
        lines.append(
            f"killed worker: {r['cli2-killed']['killed']}; wall {r['cli2-killed']['median_seconds']} s = {r['cli2-killed']['median_seconds'] / r['cli2']['median_seconds']:.2f}x the undisturbed run on the same cluster"
        )
    record["table"] = "\n".join(lines)
    print(record["table"])
    path = args.json or args.data / "distributed-results.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
