"""The live relay `geofence serve` (issue #12), end to end over loopback.

Every test talks to the real server (``python -m geofence serve`` in a subprocess on an
ephemeral 127.0.0.1 port) and a real recipient: an ASGI app under uvicorn in a thread
that records each request's body, Idempotency-Key and the status it answered, and can
answer 500, hang or refuse (422) on demand. Each relay forwards to its own path of the
recipient, so relays do not see each other's reads. One test runs the library's app in
this process instead, to make its store fail and recover.

Expected outcomes come from the OpenALPR sample (`sample_data/openalpr/`) and a site
layer made here, a school at camera 102's position: the test checks with pyproj's
geodesic that camera 102's reads lie within 50 m of it and the other cameras' more than
4 km away, so which reads are shareable follows from the data, not from the relay.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from pyproj import Geod

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data" / "openalpr"
SCHOOL_LON, SCHOOL_LAT = -122.31525, 47.58570  # camera 102 of the synthetic sample (Beacon Hill)
TOKEN = "test-token-Zq81"
SECRET = b"hmac-secret-for-tests-4d2"
SIGN_SECRET = b"signing-secret-for-forwards-77"
START_TIMEOUT_S = 60


# --------------------------------------------------------------------------------------
# Data


def _sample_lines() -> list[bytes]:
    return (SAMPLES / "alpr_group_synthetic.jsonl").read_bytes().splitlines()


def _expected(line: bytes) -> str:
    """'shared', 'withheld', 'rejected' (400) or 'heartbeat', from the document alone."""
    try:
        doc = json.loads(line)
    except ValueError:
        return "rejected"
    if doc["data_type"] == "heartbeat":
        return "heartbeat"
    lat, lon = doc["gps_latitude"], doc["gps_longitude"]
    if (lat, lon) == (0, 0) or not isinstance(doc["epoch_start"], int):
        return "withheld"  # no GPS fix / unparseable time: cannot be evaluated
    d = Geod(ellps="WGS84").inv(lon, lat, SCHOOL_LON, SCHOOL_LAT)[2]
    assert d < 50 or d > 4000, d  # the test's own premise: clearly in or clearly out
    return "withheld" if d < 50 else "shared"


def _plates() -> set[str]:
    plates = set()
    for line in _sample_lines():
        with_plates = re.findall(rb'"(?:best_plate_number|plate)":"([A-Z0-9]+)"', line)
        plates.update(p.decode() for p in with_plates)
    doc = json.loads((SAMPLES / "alpr_results_synthetic.json").read_text())
    plates.update(r["plate"] for r in doc["results"])
    plates.update(CSV_PLATES)
    return plates


def _variant(line: bytes, tag: str) -> bytes:
    """A sample group as another vehicle: a new best_uuid (same shape, same position)."""
    doc = json.loads(line)
    doc["best_uuid"] = f"{doc['best_uuid']}-{tag}"
    doc["uuids"] = [doc["best_uuid"]]
    return json.dumps(doc, separators=(",", ":")).encode()


CSV_PLATES = ("CSVPLT1", "CSVPLT2", "CSVPLT3")


def _site_layer(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {
                            "site_id": "beacon-school",
                            "name": "Test school",
                            "category": "school",
                        },
                        "geometry": {"type": "Point", "coordinates": [SCHOOL_LON, SCHOOL_LAT]},
                    }
                ],
            }
        )
    )
    return path


# --------------------------------------------------------------------------------------
# The recipient


class Sink:
    """One path of the recipient: its mode and what it received."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | 500 | hang | refuse
        self.records: list[dict] = []
        self.lock = threading.Lock()

    def arrived(self) -> list[dict]:
        """Requests the recipient answered 2xx: the reads it took."""
        with self.lock:
            return [
                r for r in self.records if isinstance(r["status"], int) and 200 <= r["status"] < 300
            ]

    def keys(self) -> list[str]:
        return [r["key"] for r in self.arrived()]

    def attempts(self, status) -> int:
        with self.lock:
            return sum(r["status"] == status for r in self.records)


class Recipient:
    """A real HTTP recipient: uvicorn in a thread, one :class:`Sink` per path."""

    HANG_S = 3.0

    def __init__(self) -> None:
        self.sinks: dict[str, Sink] = {}

    async def app(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        sink = self.sinks.setdefault(scope["path"], Sink())
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        mode = sink.mode
        status = {"ok": 200, "500": 500, "refuse": 422, "hang": 200}[mode]
        if mode == "hang":
            await asyncio.sleep(self.HANG_S)  # longer than the relay's --forward-timeout
        with sink.lock:
            sink.records.append(
                {
                    "key": headers.get("idempotency-key"),
                    "body": body,
                    "headers": headers,
                    "status": "hung" if mode == "hang" else status,
                }
            )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    def start(self) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=0,
                log_level="error",
                lifespan="off",
                interface="asgi3",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        _wait(lambda: self.server.started, 20, "the recipient did not start")
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def sink(self, name: str) -> tuple[str, Sink]:
        sink = self.sinks.setdefault(f"/{name}", Sink())
        return f"http://127.0.0.1:{self.port}/{name}", sink


def _wait(pred, timeout_s: float, what: str, step_s: float = 0.05):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step_s)
    raise AssertionError(what)


# --------------------------------------------------------------------------------------
# The relay


class Relay:
    """`geofence serve` as a subprocess; its stderr is collected for the log checks."""

    def __init__(
        self, tmp: Path, url: str, layer: Path, *extra: str, state: Path | None = None
    ) -> None:
        self.tmp = tmp
        self.state = state or tmp / "state"
        (tmp / "tokens").write_text(f"# test tokens\n{TOKEN}\n")
        (tmp / "hmac").write_bytes(SECRET + b"\n")
        self.args = [
            sys.executable, "-m", "geofence", "serve", "--layers", str(layer), "--recipient", "King County SO",
            "--recipient-type", "state-public", "--sender-state", "WA", "--sender", "Seattle PD", "--purpose", "burglary 21-555",
            "--forward-to", url, "--state-dir", str(self.state), "--token-file", str(tmp / "tokens"),
            "--hmac-secret-file", str(tmp / "hmac"), "--listen", "127.0.0.1:0", "--retry-cap", "0.4s",
            "--forward-timeout", "1s", "-v", *extra,
        ]  # fmt: skip
        self.log: list[str] = []
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        port = []

        def pump():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    port.append(int(m.group(1)))

        self.pump = threading.Thread(target=pump, daemon=True)
        self.pump.start()
        _wait(
            lambda: port or self.proc.poll() is not None, START_TIMEOUT_S, "the relay did not start"
        )
        assert port, "".join(self.log)
        self.base = f"http://127.0.0.1:{port[0]}"
        self.client = httpx.Client(
            base_url=self.base, timeout=20, headers={"Authorization": f"Bearer {TOKEN}"}
        )

    def post(self, body: bytes, path: str = "/v1/openalpr", **kw) -> httpx.Response:
        return self.client.post(path, content=body, **kw)

    def status(self) -> dict:
        res = subprocess.run(
            [sys.executable, "-m", "geofence", "serve", "status", str(self.state), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def metrics(self) -> dict:
        return self.client.get("/metrics", params={"format": "json"}).json()

    def stop(self, sig=signal.SIGTERM) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(60)
        self.pump.join(10)
        return rc


def _db(state: Path, sql: str, *params) -> list:
    conn = sqlite3.connect(state / "relay.sqlite")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def recipient():
    r = Recipient()
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def layer(tmp_path_factory) -> Path:
    return _site_layer(tmp_path_factory.mktemp("layers") / "school.geojson")


@pytest.fixture(scope="module")
def relay(tmp_path_factory, recipient, layer):
    tmp = tmp_path_factory.mktemp("relay")
    url, sink = recipient.sink("main")
    r = Relay(
        tmp,
        url,
        layer,
        "--max-body",
        "64KiB",
        "--sign-secret-file",
        str(_write(tmp / "sign", SIGN_SECRET)),
    )
    r.sink = sink
    yield r
    assert r.stop() == 0, "".join(r.log[-20:])
    assert any("stopped:" in line for line in r.log)  # drained on SIGTERM


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _ids_of(state: Path, post_id: str) -> list[str]:
    return [
        r[0]
        for r in _db(
            state,
            "SELECT r.id FROM reads r JOIN posts p ON p.seq=r.post_seq WHERE p.id=? ORDER BY r.seq",
            post_id,
        )
    ]


def _stored(r: Relay) -> tuple:
    c = r.metrics()["counts"]
    return c["received"], c["posts_accepted"], c["rejected"], c["posts_repeated"]


def _until_idle(r: Relay, timeout_s: float = 30) -> dict:
    return _wait(
        lambda: (m := r.metrics())["counts"]["pending"] == 0 and m,
        timeout_s,
        "pending reads were not forwarded",
    )


# --------------------------------------------------------------------------------------
# Tests on one relay


def test_shareable_reads_arrive_once_and_fenced_ones_never(relay, tmp_path):
    lines = _sample_lines()
    want = {}
    for line in lines:
        res = relay.post(line)
        kind = _expected(line)
        if kind == "rejected":
            assert res.status_code == 400
            continue
        assert res.status_code == 202, res.text
        if kind == "heartbeat":
            continue
        (rid,) = _ids_of(relay.state, res.json()["id"])
        want[rid] = (kind, line)
    _until_idle(relay)
    arrived = {r["key"]: r for r in relay.sink.arrived()}
    shared = [rid for rid, (k, _) in want.items() if k == "shared"]
    withheld = [rid for rid, (k, _) in want.items() if k == "withheld"]
    assert len(shared) >= 20 and len(withheld) >= 10
    assert set(shared) <= set(arrived) and not set(withheld) & set(arrived)
    assert all(relay.sink.keys().count(rid) == 1 for rid in shared)
    for rid in shared:  # the agent's document as posted, with a valid signature
        got = arrived[rid]
        assert got["body"] == want[rid][1]
        ts, sig = got["headers"]["x-geofence-timestamp"], got["headers"]["x-geofence-signature"]
        assert (
            sig
            == "sha256="
            + hmac.new(SIGN_SECRET, ts.encode() + b"." + got["body"], hashlib.sha256).hexdigest()
        )
    # `serve withheld` lists every withheld read, with its reason
    out = tmp_path / "withheld.csv"
    res = subprocess.run(
        [sys.executable, "-m", "geofence", "serve", "withheld", str(relay.state), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    rows = {r["read_id"]: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    assert set(withheld) <= set(rows)
    near = [
        rid
        for rid in withheld
        if json.loads(want[rid][1])["camera_id"] == 102
        and json.loads(want[rid][1])["gps_latitude"] != 0
    ]
    assert near and all(
        rows[rid]["withheld_reason"] == "near_sensitive_site"
        and rows[rid]["site_id"] == "beacon-school"
        for rid in near
    )
    assert all(
        rows[rid]["withheld_reason"].startswith("unevaluable:") for rid in set(withheld) - set(near)
    )


def test_repeats_are_acknowledged_and_forwarded_once(relay):
    line = _variant(_sample_lines()[0], "repeat")
    first = relay.post(line)
    again = relay.post(line)
    # the same agent_uid + best_uuid, written differently, is the same read
    respaced = json.dumps(json.loads(line), indent=1).encode()
    third = relay.post(respaced)
    assert first.status_code == again.status_code == third.status_code == 202
    pid = first.json()["id"]
    assert again.json() == {"id": pid, "repeat": True} and third.json() == {
        "id": pid,
        "repeat": True,
    }
    (rid,) = _ids_of(relay.state, pid)
    _until_idle(relay)
    assert relay.sink.keys().count(rid) == 1


def test_bom_and_form_content_type(relay):
    line = _variant(_sample_lines()[2], "bom")  # camera 201: shareable
    res = relay.post(
        b"\xef\xbb\xbf" + line, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert res.status_code == 202, res.text
    (rid,) = _ids_of(relay.state, res.json()["id"])
    _until_idle(relay)
    (got,) = [r for r in relay.sink.arrived() if r["key"] == rid]
    assert got["body"] == line and got["headers"]["content-type"] == "application/json"


def test_auth_failures_store_nothing(relay):
    line = _variant(_sample_lines()[0], "auth")
    before = _stored(relay)
    anon = httpx.post(relay.base + "/v1/openalpr", content=line)
    wrong = httpx.post(
        relay.base + "/v1/openalpr", content=line, headers={"Authorization": "Bearer not-the-token"}
    )
    ts = str(int(time.time()))
    good_sig = "sha256=" + hmac.new(SECRET, ts.encode() + b"." + line, hashlib.sha256).hexdigest()
    bad_sig = httpx.post(
        relay.base + "/v1/openalpr",
        content=line,
        headers={"X-Geofence-Timestamp": ts, "X-Geofence-Signature": good_sig[:-4] + "0000"},
    )
    old = str(int(time.time()) - 3600)
    stale_sig = "sha256=" + hmac.new(SECRET, old.encode() + b"." + line, hashlib.sha256).hexdigest()
    stale = httpx.post(
        relay.base + "/v1/openalpr",
        content=line,
        headers={"X-Geofence-Timestamp": old, "X-Geofence-Signature": stale_sig},
    )
    other_body = httpx.post(
        relay.base + "/v1/openalpr",
        content=line + b" ",
        headers={"X-Geofence-Timestamp": ts, "X-Geofence-Signature": good_sig},
    )
    path_token = httpx.post(
        relay.base + f"/v1/openalpr/{TOKEN}", content=line
    )  # needs --allow-path-token
    assert [r.status_code for r in (anon, wrong, bad_sig, stale, other_body)] == [401] * 5
    assert path_token.status_code in (404, 405)
    assert _stored(relay) == before
    signed = httpx.post(
        relay.base + "/v1/openalpr",
        content=line,
        headers={"X-Geofence-Timestamp": ts, "X-Geofence-Signature": good_sig},
    )
    assert signed.status_code == 202, signed.text
    assert relay.metrics()["since_start"]["auth_failures"] >= 5


def test_body_over_max_body_is_413(relay):
    big = b'{"data_type":"alpr_group","pad":"' + b"x" * (70 << 10) + b'"}'
    before = _stored(relay)
    res = relay.post(big)
    assert res.status_code == 413
    assert _stored(relay) == before


def test_heartbeat_positions_results_and_is_never_forwarded(relay):
    frame = json.loads((SAMPLES / "alpr_results_synthetic.json").read_text())
    frame["uuid"] += "-before"
    early = relay.post(json.dumps(frame).encode())  # camera 101 not yet known: no position
    assert early.status_code == 202 and early.json()["withheld"] == 2
    beats = json.loads((SAMPLES / "heartbeat_synthetic.json").read_text())
    for beat in beats:
        res = relay.post(json.dumps(beat).encode())
        assert res.status_code == 202 and "id" not in res.json()
    frame["uuid"] = frame["uuid"].replace("-before", "-after")
    late = relay.post(json.dumps(frame).encode())
    assert late.status_code == 202 and late.json() == {
        "id": late.json()["id"],
        "reads": 2,
        "withheld": 0,
    }
    ids = _ids_of(relay.state, late.json()["id"])
    _until_idle(relay)
    got = {r["key"]: json.loads(r["body"]) for r in relay.sink.arrived() if r["key"] in ids}
    assert sorted(got) == sorted(ids)
    # each read goes out alone, in its frame
    assert sorted(g["results"][0]["plate"] for g in got.values()) == sorted(
        r["plate"] for r in frame["results"]
    )
    assert all(len(g["results"]) == 1 for g in got.values())
    for r in relay.sink.arrived():
        assert b"heartbeat" not in r["body"] and b"license_valid" not in r["body"]


def test_csv_rows_keep_their_bytes(relay):
    rows = [
        b"read_id,plate,timestamp,lat,lon,note\r\n",
        b'c1,CSVPLT1,2025-01-01T08:00:00Z,47.6322,-122.3529,"quoted, with comma"\r\n',  # Queen Anne: shared
        b"c2,CSVPLT2,2025-01-01T08:00:00Z,47.58571,-122.31526,plain\r\n",  # at the school: withheld
        b'c3,CSVPLT3,2025-01-01T08:00:00Z,,-122.3529,"no ""lat"""\r\n',  # unevaluable: withheld
    ]
    res = relay.post(
        b"".join(rows),
        path="/v1/reads",
        params={"profile": "generic-csv"},
        headers={"Content-Type": "text/csv"},
    )
    assert res.status_code == 202, res.text
    assert res.json()["reads"] == 3 and res.json()["withheld"] == 2
    ids = _ids_of(relay.state, res.json()["id"])
    _until_idle(relay)
    got = [r for r in relay.sink.arrived() if r["key"] in ids]
    assert [r["body"] for r in got] == [rows[0] + rows[1]]
    bad = relay.post(b"no,position,columns\n1,2,3\n", path="/v1/reads")
    assert bad.status_code == 400


def test_bad_bodies_are_400_and_recorded(relay):
    before = relay.metrics()["counts"]
    for body in (b"", b"   ", b"{not json", b"[1, 2]", b'{"data_type": "vehicle"}'):
        assert relay.post(body).status_code == 400
    after = relay.metrics()["counts"]
    assert after["rejected"] == before["rejected"] + 5
    test_post = relay.post(b'{"openalpr_webhook": "test"}')
    assert test_post.status_code == 200


def test_downstream_500_hang_then_ok_all_arrive_once_in_order(relay):
    _until_idle(relay)
    relay.sink.mode = "500"
    lines = [
        _variant(line, "outage")
        for line in _sample_lines()
        if _expected(line) in ("shared", "withheld")
    ][:24]
    posted = []
    for line in lines:
        res = relay.post(line)
        assert res.status_code == 202
        (rid,) = _ids_of(relay.state, res.json()["id"])
        if _expected(line) == "shared":
            posted.append(rid)
    _wait(lambda: relay.sink.attempts(500) >= 3, 30, "the relay did not retry")
    head = _wait(
        lambda: (s := relay.status())["head"] and s["head"]["attempts"] >= 2 and s["head"],
        30,
        "status shows no stall",
    )
    assert head["read_id"] == posted[0] and head["last_error"] == "HTTP 500"
    relay.sink.mode = "hang"
    _wait(lambda: relay.sink.attempts("hung") >= 1, 30, "the relay did not time out")
    relay.sink.mode = "ok"
    _until_idle(relay, 60)
    keys = [k for k in relay.sink.keys() if k in set(posted)]
    assert keys == posted  # once each, in the order posted


def test_refused_read_waits_for_requeue(relay):
    _until_idle(relay)
    relay.sink.mode = "refuse"
    res = relay.post(_variant(_sample_lines()[0], "refused"))
    (rid,) = _ids_of(relay.state, res.json()["id"])
    _wait(lambda: relay.metrics()["counts"]["refused"] >= 1, 30, "the read was not refused")
    relay.sink.mode = "ok"
    assert rid not in relay.sink.keys()
    st = relay.status()
    assert st["refused"][0]["read_id"] == rid and st["refused"][0]["error"] == "HTTP 422"
    res = subprocess.run(
        [sys.executable, "-m", "geofence", "serve", "requeue", str(relay.state), rid],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    _wait(lambda: rid in relay.sink.keys(), 30, "the requeued read did not arrive")
    withheld_id = _db(relay.state, "SELECT id FROM reads WHERE status='withheld' LIMIT 1")[0][0]
    res = subprocess.run(
        [sys.executable, "-m", "geofence", "serve", "requeue", str(relay.state), withheld_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and "never withheld ones" in res.stderr


def test_counts_add_up_and_no_plate_in_any_log(relay):
    m = _until_idle(relay)
    c = m["counts"]
    assert (
        c["received"]
        == c["forwarded"] + c["withheld"] + c["rejected"] + c["pending"] + c["refused"]
    )
    # independently: every read stored, plus every rejected body
    n_reads = _db(relay.state, "SELECT count(*) FROM reads")[0][0]
    n_rejected = _db(relay.state, "SELECT count(*) FROM rejected")[0][0]
    assert c["received"] == n_reads + n_rejected and c["rejected"] >= 6
    st = relay.status()
    assert st["counts"] == c
    log = "".join(relay.log)
    audit = (relay.state / "audit.jsonl").read_text()
    assert "POST /v1/openalpr 202" in log  # the log is there (-v), and speaks of ids
    for plate in _plates():
        assert plate not in log and plate not in audit, plate
    assert TOKEN not in log
    lines = [json.loads(x) for x in audit.splitlines()]
    assert sum(len(x["read_ids"]) for x in lines) >= c["forwarded"]
    assert {x["recipient"]["name"] for x in lines} == {"King County SO"} and {
        x["decision"] for x in lines
    } == {"allow"}


# --------------------------------------------------------------------------------------
# Crashes, full stores, reloads: relays of their own


def test_sigkill_under_load_loses_no_acknowledged_post(tmp_path, recipient, layer):
    url, sink = recipient.sink("killed")
    r = Relay(tmp_path, url, layer)
    lines = [x for x in _sample_lines() if _expected(x) in ("shared", "withheld")]
    acked: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(
            base_url=r.base, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as c:
            i = 0
            while not stop.is_set():
                try:
                    res = c.post(
                        "/v1/openalpr", content=_variant(lines[i % len(lines)], f"w{worker}-{i}")
                    )
                except httpx.HTTPError:
                    return  # the relay died mid-request: that post was never acknowledged
                if res.status_code == 202:
                    acked.append(res.json()["id"])
                i += 1

    with ThreadPoolExecutor(6) as pool:
        for w in range(6):
            pool.submit(load, w)
        _wait(lambda: len(acked) >= 150, 60, "no load")
        r.proc.send_signal(signal.SIGKILL)
        r.proc.wait(30)
        stop.set()
    assert r.proc.returncode == -signal.SIGKILL
    stored = {p for (p,) in _db(r.state, "SELECT id FROM posts")}
    assert set(acked) <= stored
    # restart on the same store: forwarding resumes; nothing withheld ever went out
    r.start()
    m = _until_idle(r, 60)
    assert m["counts"]["pending"] == 0
    forwarded = {x for (x,) in _db(r.state, "SELECT id FROM reads WHERE status='forwarded'")}
    withheld = {x for (x,) in _db(r.state, "SELECT id FROM reads WHERE status='withheld'")}
    keys = set(sink.keys())
    assert forwarded <= keys and not keys & withheld
    acked_reads = {x for p in acked for x in _ids_of(r.state, p)}
    assert acked_reads <= forwarded | withheld and withheld & acked_reads
    assert r.stop() == 0


def test_full_store_closes_the_listener_then_reopens(tmp_path, recipient, layer):
    url, sink = recipient.sink("full-close")
    sink.mode = "500"  # nothing drains
    r = Relay(tmp_path, url, layer, "--max-pending", "3000")
    shared = [_variant(x, "full") for x in _sample_lines() if _expected(x) == "shared"]
    n_ok = 0
    with pytest.raises(httpx.TransportError):  # first a dropped connection, never an HTTP answer
        for line in shared:
            res = r.post(line)
            assert res.status_code == 202, res.text
            n_ok += 1
    assert n_ok >= 2
    with pytest.raises(httpx.ConnectError):  # then new connections are refused
        httpx.post(
            r.base + "/v1/openalpr",
            content=shared[-1],
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert len(_db(r.state, "SELECT 1 FROM posts")) == n_ok
    sink.mode = "ok"
    res = _wait(lambda: _try_post(r, shared[-1]), 30, "the listener did not reopen")
    assert res.status_code == 202
    assert r.stop() == 0


def _try_post(r: Relay, body: bytes):
    try:
        with httpx.Client(
            base_url=r.base, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as c:
            return c.post("/v1/openalpr", content=body)
    except httpx.TransportError:
        return None


def test_full_store_503_mode_path_token_and_reload(tmp_path, recipient, layer):
    url, sink = recipient.sink("full-503")
    sink.mode = "500"
    own_layer = tmp_path / "sites.geojson"
    own_layer.write_bytes(layer.read_bytes())
    r = Relay(
        tmp_path,
        url,
        own_layer,
        "--max-pending",
        "3000",
        "--when-full",
        "503",
        "--allow-path-token",
    )
    shared = [_variant(x, "503") for x in _sample_lines() if _expected(x) == "shared"]
    codes = []
    for line in shared[:6]:
        res = httpx.post(f"{r.base}/v1/openalpr/{TOKEN}", content=line)  # the token in the path
        codes.append(res.status_code)
        if res.status_code == 503:
            assert res.headers["retry-after"].isdigit()
            break
    assert codes[-1] == 503 and set(codes[:-1]) == {202}
    assert not r.client.get("/readyz").json()["ready"]
    sink.mode = "ok"
    _until_idle(r)
    assert r.post(shared[-1]).status_code == 202
    assert TOKEN not in "".join(r.log) and "/v1/openalpr/****" in "".join(r.log)
    # SIGHUP with a broken layer keeps the old set
    old_ruleset = r.metrics()["ruleset"]
    own_layer.write_text('{"type": "FeatureCollection", "features": [')
    r.proc.send_signal(signal.SIGHUP)
    _wait(lambda: any("reload failed" in x for x in r.log), 30, "no reload")
    near = _variant(_sample_lines()[1], "reload")  # camera 102: still withheld by the old set
    assert r.post(near).json()["withheld"] == 1 and r.metrics()["ruleset"] == old_ruleset
    # a good layer without the school: the next read at camera 102 is shared
    own_layer.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {
                            "site_id": "far",
                            "name": "Far school",
                            "category": "school",
                        },
                        "geometry": {"type": "Point", "coordinates": [-100.0, 40.0]},
                    }
                ],
            }
        )
    )
    r.proc.send_signal(signal.SIGHUP)
    _wait(lambda: r.metrics()["ruleset"] != old_ruleset, 30, "the reload did not apply")
    assert r.post(_variant(_sample_lines()[1], "reload2")).json()["withheld"] == 0
    assert r.stop() == 0


def test_broken_layers_at_start_fail_in_one_line(tmp_path, recipient):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{nope")
    (tmp_path / "tokens").write_text(TOKEN)
    res = subprocess.run(
        [sys.executable, "-m", "geofence", "serve", "--layers", str(bad), "--recipient", "X", "--recipient-type", "state-public",
         "--purpose", "p", "--forward-to", "http://127.0.0.1:9/x", "--state-dir", str(tmp_path / "s"), "--token-file", str(tmp_path / "tokens")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("geofence: error:") and "bad.geojson" in lines[0]
    assert not (tmp_path / "s").exists() or not os.listdir(tmp_path / "s")


def test_alert_is_forwarded_once_with_its_group(relay):
    group = json.loads(_variant(_sample_lines()[0], "alert"))  # camera 101: shareable
    alert = {
        "data_type": "alpr_alert",
        "alert_list": "test list",
        "agent_uid": group["agent_uid"],
        "group": group,
    }
    res = relay.post(json.dumps(alert).encode())
    assert res.status_code == 202 and res.json()["reads"] == 1
    bare = relay.post(json.dumps(group).encode())  # the same vehicle posted bare: a repeat
    assert bare.json() == {"id": res.json()["id"], "repeat": True}
    (rid,) = _ids_of(relay.state, res.json()["id"])
    _until_idle(relay)
    assert [
        json.loads(r["body"])["data_type"] for r in relay.sink.arrived() if r["key"] == rid
    ] == ["alpr_alert"]


class _FailingConnection:
    """The store's SQLite connection with writes failing as on a full or broken disk."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def execute(self, sql, *args):
        if sql.startswith("BEGIN"):
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_store_unwritable_no_ack_until_it_recovers(tmp_path, layer):
    from geofence.jurisdictions import Recipient as To
    from geofence.serve import ServeConfig, create_app

    (tmp_path / "tokens").write_text(TOKEN)
    config = ServeConfig(
        [layer], To("King County SO", "state-public", None, "burglary 21-555"), "http://127.0.0.1:9/none", tmp_path / "state",
        token_file=tmp_path / "tokens", sender_state="WA", when_full="503", retry_cap_s=0.5,
    )  # fmt: skip
    app = create_app(config)  # the library's app under a plain uvicorn, in this process
    relay = app.state.relay
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait(lambda: server.started, 60, "the app did not start")
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    lines = [_variant(x, "disk") for x in _sample_lines() if _expected(x) == "shared"]
    try:
        with httpx.Client(
            base_url=base, timeout=20, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            assert client.post("/v1/openalpr", content=lines[0]).status_code == 202
            real = relay.store.conn
            relay.store.conn = _FailingConnection(real)
            failed = client.post("/v1/openalpr", content=lines[1])
            assert failed.status_code == 503 and failed.headers["retry-after"]
            assert client.get("/readyz").json()["reasons"] == ["store not writable"]
            assert (
                client.post("/v1/openalpr", content=lines[2]).status_code == 503
            )  # the door is shut
            relay.store.conn = real  # the disk is back: the probe reopens
            _wait(lambda: client.get("/readyz").json()["ready"], 30, "the store did not recover")
            again = client.post("/v1/openalpr", content=lines[1])
            assert again.status_code == 202
    finally:
        server.should_exit = True
        thread.join(30)
    stored = _db(tmp_path / "state", "SELECT id FROM posts ORDER BY seq")
    assert len(stored) == 2 and again.json()["id"] == stored[1][0]
