"""``geofence serve``: a live relay that forwards only shareable reads and loses none (issue #12).

Agencies stream reads to partners as they happen: the OpenALPR/Rekor agent HTTP-POSTs
each plate group, other systems post CSV. The relay sits between them and the partner
and gates the stream with the same engine, recipient rules and audit log as
``geofence filter`` (:class:`geofence.hook.SharingFilter`), fail-closed:

::

    POST ─► auth, size ─► committer queue ─► one writer thread, one batch at a time:
                                             parse (geofence.profiles), position by camera,
                                             decide (SharingFilter), INSERT posts + reads,
                                             COMMIT (WAL, synchronous=FULL)
            ◄── 202 {"id"} ───────────────── only after the commit
    forwarder (httpx): oldest pending read ─► recipient, Idempotency-Key = read id
            2xx ─► audit line, forwarded │ 408/429/5xx/timeout ─► retry with backoff, in order
            other 4xx ─► refused (``serve requeue``)

Group commit
    Requests wait in a queue while the writer commits the previous batch; the writer then
    takes everything queued (up to :data:`MAX_BATCH_POSTS`) and parses, decides and
    commits it as one transaction with one fsync, so the cost of the sync is shared. Every
    request of the batch is answered after that commit. ``commit_mode`` ``"request"``
    handles each request alone (parse, decide, commit) and ``"transaction"`` batches
    parsing and deciding but commits each request alone: the benchmark's baselines.
No ack without the store
    When the store cannot be written or holds ``max_pending_bytes`` of unforwarded reads,
    nothing is acknowledged: with ``when_full="close"`` the listener is closed (new
    connections are refused) and a request on an open connection is dropped without an
    answer, because the open-source agent retries only on connection errors and takes any
    HTTP answer as delivered; with ``"503"`` the answer is 503 with ``Retry-After``.
Crashes
    A read is decided in the transaction that stores it, and only reads decided
    shareable are ever forwarded; a read forwarded but not yet marked when the process
    dies is sent again with the same ``Idempotency-Key``.
Reload
    SIGHUP loads layers, policy, recipient rules and credentials anew in a thread and
    swaps them in whole; if anything fails the old set stays. Pending reads are checked
    against the new set and withheld if it flags them (never the other way round).

Plates are never logged: log lines name posts and reads by their ids only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import hmac
import io
import json
import logging
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from geofence._arrays import full_object
from geofence.errors import GeofenceError, ReadFormatError, SharingRefused, UsageError
from geofence.hook import SharingFilter, _audit_record, append_audit
from geofence.jurisdictions import Recipient
from geofence.model import NO_TIME, REASON_CODE, ReadBatch
from geofence.store import Pending, PostRow, ReadRow, Store, StoreError, Unit

__all__ = [
    "ENDPOINTS",
    "MAX_BATCH_POSTS",
    "ServeConfig",
    "create_app",
    "run_server",
    "sign",
]

log = logging.getLogger("geofence.serve")
access_log = logging.getLogger("geofence.serve.access")

ENDPOINTS = ("/v1/openalpr", "/v1/reads", "/healthz", "/readyz", "/metrics")

MAX_BATCH_POSTS = 512
"""Most requests one group commit takes (bounds the writer's memory and a batch's latency)."""

MAX_BATCH_BYTES = 32 << 20
"""Most body bytes one group commit takes (a batch closes early past this)."""

HMAC_TOLERANCE_S = 300
"""How far an HMAC timestamp may be from the relay's clock: five minutes, as Stripe's
webhook signatures allow [I]. Older signatures are refused (replay)."""

RETRY_AFTER_S = 5
"""``Retry-After`` of the 503 answer while full (``--when-full 503``) [I]."""

COMMIT_MODES = ("group", "request", "transaction")
"""``group``: the relay; ``request`` and ``transaction``: the baselines of ``benchmarks/hook_load.py``."""

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv; charset=utf-8"
_BOM = b"\xef\xbb\xbf"
_SIG_HEADER = "x-geofence-signature"
_TS_HEADER = "x-geofence-timestamp"


# --------------------------------------------------------------------------------------
# Configuration


@dataclass
class ServeConfig:
    """Everything ``geofence serve`` needs; the CLI builds it from its options.

    Sizes are bytes and durations seconds. ``token_file`` holds bearer tokens, one per
    line; ``hmac_secret_file`` a shared secret for ``X-Geofence-Signature``;
    ``sign_secret_file`` the secret that signs forwarded reads. At least one of
    ``token_file`` and ``hmac_secret_file`` is required: the relay never runs open.
    """

    layers: Sequence[str | os.PathLike]
    recipient: Recipient
    forward_to: str
    state_dir: str | os.PathLike
    token_file: str | os.PathLike | None = None
    hmac_secret_file: str | os.PathLike | None = None
    allow_path_token: bool = False
    sign_secret_file: str | os.PathLike | None = None
    policy: object = None
    tier: str = "near"
    distances: Mapping[str, float] | None = None
    crs: str | None = None
    limits: Mapping[str, int] | None = None
    sender: str | None = None
    sender_state: str | None = None
    user: str = "geofence-serve"
    cameras: str | os.PathLike | None = None
    audit_log: str | os.PathLike | None = None
    listen: str = "127.0.0.1:8787"
    max_body_bytes: int = 4 << 20
    max_pending_bytes: int = 10 << 30
    when_full: str = "close"
    retry_cap_s: float = 300.0
    retry_base_s: float = 0.5
    forward_timeout_s: float = 30.0
    commit_mode: str = "group"  # "request" / "transaction": benchmark baselines (module docstring)

    def __post_init__(self) -> None:
        if self.commit_mode not in COMMIT_MODES:
            raise UsageError(
                f"commit mode {self.commit_mode}: use one of {', '.join(COMMIT_MODES)}"
            )
        if self.when_full not in ("close", "503"):
            raise UsageError(f"--when-full {self.when_full}: use close or 503")
        if self.token_file is None and self.hmac_secret_file is None:
            raise UsageError(
                "geofence serve needs --token-file or --hmac-secret-file: it never accepts posts without credentials"
            )
        if self.allow_path_token and self.token_file is None:
            raise UsageError(
                "--allow-path-token needs --token-file (the path token is one of its tokens)"
            )
        u = urlsplit(self.forward_to)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UsageError(
                f"--forward-to {_mask_url(self.forward_to)}: not an http(s) URL; give the recipient's upload address, e.g. https://partner.example/reads"
            )
        for name in ("max_body_bytes", "max_pending_bytes"):
            if getattr(self, name) <= 0:
                raise UsageError(
                    f"--{name.replace('_bytes', '').replace('_', '-')}: must be more than 0 bytes"
                )
        if self.retry_cap_s <= 0 or self.forward_timeout_s <= 0:
            raise UsageError("--retry-cap and --forward-timeout must be more than 0 seconds")
        self.host, self.port = parse_listen(self.listen)

    @property
    def audit_path(self) -> Path:
        return (
            Path(self.audit_log)
            if self.audit_log is not None
            else Path(self.state_dir) / "audit.jsonl"
        )


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8787`` for IPv6) as a pair."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text}: use HOST:PORT, e.g. 127.0.0.1:8787")
    return host, int(port)


def _mask_url(url: str) -> str:
    """A URL without user, password and query (they may hold credentials)."""
    u = urlsplit(url)
    netloc = u.hostname or ""
    if u.port:
        netloc += f":{u.port}"
    return urlunsplit((u.scheme, netloc, u.path, "", ""))


def _read_secret_lines(path, what: str) -> list[bytes]:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{what} {path}: cannot read it ({exc.strerror}); pass a readable file"
        ) from None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(b"#")]
    if not lines:
        raise UsageError(
            f"{what} {path}: the file holds no secret (one per line; # starts a comment)"
        )
    return lines


# --------------------------------------------------------------------------------------
# Credentials


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Geofence-Signature`` value: ``sha256=`` HMAC-SHA256 of ``timestamp.body``.

    The same scheme authenticates posts to the relay (``--hmac-secret-file``) and signs
    what it forwards (``--sign-secret-file``); ``timestamp`` is Unix seconds, sent as
    ``X-Geofence-Timestamp``.
    """
    return (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


@dataclass(frozen=True)
class Credentials:
    """Bearer tokens and the HMAC secret (compared as SHA-256 digests, in constant time)."""

    token_digests: tuple[bytes, ...]
    hmac_secret: bytes | None

    @classmethod
    def load(cls, config: ServeConfig) -> Credentials:
        tokens = _read_secret_lines(config.token_file, "--token-file") if config.token_file else []
        secret = None
        if config.hmac_secret_file:
            secret = b"\n".join(_read_secret_lines(config.hmac_secret_file, "--hmac-secret-file"))
        return cls(tuple(hashlib.sha256(t).digest() for t in tokens), secret)

    def token_ok(self, token: str) -> bool:
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        ok = False
        for d in self.token_digests:  # every token is compared: no early exit
            ok |= hmac.compare_digest(given, d)
        return ok

    def hmac_ok(
        self, timestamp: str | None, signature: str | None, body: bytes, now: float
    ) -> bool:
        if self.hmac_secret is None or not timestamp or not signature:
            return False
        try:
            t = int(timestamp)
        except ValueError:
            return False
        if abs(now - t) > HMAC_TOLERANCE_S:
            return False
        return hmac.compare_digest(
            sign(self.hmac_secret, timestamp, body).encode(), signature.strip().encode()
        )


# --------------------------------------------------------------------------------------
# Rules: one loaded layer set (swapped whole on SIGHUP)


class Rules:
    """The sharing filter of one load of layers, policy and recipient rules.

    ``ruleset`` is a short hash of the layer files, the policy and the recipient decision:
    every stored read names the ruleset that decided it.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.filter = SharingFilter(
            config.layers,
            policy=config.policy,
            tier=config.tier,
            distances=config.distances,
            recipient=config.recipient,
            sender_state=config.sender_state,
            crs=config.crs,
            limits=config.limits,
        )
        self.credentials = Credentials.load(config)
        self.sign_secret = (
            b"\n".join(_read_secret_lines(config.sign_secret_file, "--sign-secret-file"))
            if config.sign_secret_file
            else None
        )
        eng = self.filter.engine
        ident = {
            "layers": [s.sha256 for s in self.filter.layer_sources],
            "policy": eng.policy.describe(),
            "decision": self.filter.decision.describe(),
        }
        self.ruleset = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
        self.n_sites = eng.n_sites

    def decide(self, lon: np.ndarray, lat: np.ndarray, time_us: np.ndarray, reason: np.ndarray):
        """Decide reads given as arrays; a refused recipient withholds all (fail-closed)."""
        n = len(lon)
        if not self.filter.decision.allowed:
            return _Decision(
                np.zeros(n, bool),
                full_object(n, "recipient_refused"),
                full_object(n, ""),
                full_object(n, ""),
                np.full(n, np.nan),
            )
        batch = ReadBatch(np.arange(1, n + 1), lon, lat, time_us, reason.astype(np.int8), None)
        (_, dec), *_ = self.filter.decide_batches([batch])
        return _Decision(dec.shared, dec.reason, dec.category, dec.site_id, dec.distance_m)


@dataclass
class _Decision:
    shared: np.ndarray
    reason: np.ndarray
    category: np.ndarray
    site_id: np.ndarray
    distance_m: np.ndarray


# --------------------------------------------------------------------------------------
# Ingest: bodies -> reads -> decisions -> store rows (runs on the writer thread)


@dataclass
class Submission:
    """One request body waiting for the committer."""

    endpoint: str  # "openalpr" or "reads"
    body: bytes
    content_type: str | None
    received_at: float
    profile: str | None = None


@dataclass
class Outcome:
    """The answer to one submission."""

    status: int
    body: dict


@dataclass
class _Item:
    sub: Submission
    kind: str = ""  # alpr_group, alpr_alert, alpr_results, heartbeat, test, csv
    doc: dict | None = None
    json_part: bytes = b""  # the read document (an alert's group) as JSON, for batch parsing
    keys: list[str] = field(default_factory=list)
    reject: str | None = None
    repeat_of: str | None = None
    first: _Item | None = None  # an earlier item of the same batch this one repeats
    profile: object = None
    cam_version: int = 0
    # reads
    lon: np.ndarray | None = None
    lat: np.ndarray | None = None
    time_us: np.ndarray | None = None
    reason: np.ndarray | None = None
    source_ids: list = field(default_factory=list)
    camera_ids: list = field(default_factory=list)
    payloads: list = field(default_factory=list)
    content_type: str = JSON_TYPE
    cameras: list = field(default_factory=list)  # heartbeat rows
    seq: int = 0
    post_id: str = ""

    @property
    def n(self) -> int:
        return 0 if self.lon is None else len(self.lon)


class Ingest:
    """Turns batches of submissions into store units and answers; owns the camera table."""

    def __init__(self, store: Store, rules: Rules, cameras_file=None) -> None:
        from geofence.profiles import load_profile

        self.store = store
        self.rules = rules
        self._profiles: dict[str, object] = {}
        self._group = load_profile("openalpr-group")
        self._results = load_profile("openalpr-results")
        self.cameras: dict[str, tuple[float, float]] = {}
        if cameras_file is not None:
            from geofence.cameras import load_camera_positions

            pos = load_camera_positions(cameras_file)
            self.cameras.update(
                {
                    str(c): (float(x), float(y))
                    for c, x, y in zip(pos.camera_id, pos.lon, pos.lat, strict=True)
                }
            )
        self.cameras.update({str(c): (x, y) for c, x, y in store.cameras()})

    # -- classify ----------------------------------------------------------------

    def _profile(self, name: str | None):
        from geofence.profiles import load_profile

        name = name or "generic-csv"
        if name not in self._profiles:
            prof = load_profile(name)  # UsageError for an unknown name: a 400
            if prof.kind != "reads" or prof.container != "delimited":
                raise UsageError(
                    f"profile {name} is not a delimited read log; post OpenALPR JSON to /v1/openalpr"
                )
            self._profiles[name] = prof
        return self._profiles[name]

    def _classify(self, sub: Submission) -> _Item:
        it = _Item(sub)
        body = sub.body[len(_BOM) :] if sub.body.startswith(_BOM) else sub.body
        if not body.strip():
            it.reject = "empty body"
            return it
        it.keys.append("sha256:" + hashlib.sha256(sub.body).hexdigest())
        if sub.endpoint == "reads":
            it.kind = "csv"
            try:
                it.profile = self._profile(sub.profile)
            except GeofenceError as exc:
                it.reject = str(exc)
            return it
        # OpenALPR: JSON whatever the Content-Type (the open-source agent posts it form-encoded)
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            it.reject = f"not UTF-8 JSON ({type(exc).__name__} at byte {getattr(exc, 'pos', getattr(exc, 'start', '?'))})"
            return it
        if not isinstance(doc, dict):
            it.reject = "not a JSON object"
            return it
        dtype = doc.get("data_type")
        it.doc = doc
        if dtype is None and doc.get("openalpr_webhook") == "test":
            it.kind = "test"  # the agent's "test" button [I: seen in public integrations]
            return it
        if dtype == "alpr_alert":
            group = doc.get("group")
            if not isinstance(group, dict):
                it.reject = "alpr_alert without a group object"
                return it
            it.kind = "alpr_alert"
            group = (
                group
                if group.get("data_type") == "alpr_group"
                else {**group, "data_type": "alpr_group"}
            )
            it.json_part = json.dumps(group, ensure_ascii=False).encode()
            it.keys += _group_keys(group)
        elif dtype == "alpr_group":
            it.kind = "alpr_group"
            it.json_part = body
            it.keys += _group_keys(doc)
        elif dtype == "alpr_results":
            it.kind = "alpr_results"
            it.json_part = body
            if doc.get("agent_uid") and doc.get("uuid"):
                it.keys.append(f"results:{doc['agent_uid']}:{doc['uuid']}")
        elif dtype == "heartbeat":
            it.kind = "heartbeat"
        else:
            it.reject = f"data_type {str(dtype)[:40]!r} is not one the relay takes (alpr_group, alpr_alert, alpr_results, heartbeat)"
        return it

    # -- parse -------------------------------------------------------------------

    def _positions(self, cams: Mapping[str, tuple[float, float]]):
        from geofence.cameras import CameraPositions

        ids = np.array(list(cams), dtype=object)
        xy = np.array(list(cams.values()), dtype=float).reshape(-1, 2)
        return CameraPositions(ids, xy[:, 0], xy[:, 1])

    def _parse_json(self, items: list[_Item], prof, expected: list[int]) -> None:
        """Parse OpenALPR documents of one profile together (one Arrow table for all)."""
        from geofence.profiles import open_profile_reads, parse_openalpr

        if not items:
            return
        try:
            data = b"[" + b",".join(it.json_part for it in items) + b"]"
            with open_profile_reads(io.BytesIO(data), prof, keep_raw=False) as stream:
                batches = list(stream)
            merged = _concat(batches)
            if merged is None or len(merged) != sum(expected):
                raise ReadFormatError("rows do not match documents")
            parts = _split(merged, expected)
        except GeofenceError:
            # one document spoils the batch: parse each alone, reject what does not parse
            parts = []
            for it in items:
                try:
                    parts.append(parse_openalpr(it.json_part))
                except GeofenceError as exc:
                    it.reject = str(exc)
                    parts.append(None)
        for it, b in zip(items, parts, strict=True):
            if b is not None and it.reject is None:
                _take(it, b)

    def _parse_csv(self, it: _Item) -> None:
        from geofence.profiles import open_profile_reads

        prof = it.profile
        lon, lat, t, rsn, payloads, sids, cids = [], [], [], [], [], [], []
        try:
            with open_profile_reads(io.BytesIO(it.sub.body), prof, keep_raw=True) as stream:
                header = stream.header
                for b in stream:
                    if prof.position == "camera":
                        b = self._position(b, self.cameras)
                    lon.append(b.lon)
                    lat.append(b.lat)
                    t.append(b.time_us)
                    rsn.append(b.reason)
                    raw, off = b.raw, b.offsets
                    payloads += [header + raw[off[i] : off[i + 1]] for i in range(len(b))]
                    sids += b.columns.column("read_id").to_pylist()
                    cids += b.columns.column("camera_id").to_pylist()
        except GeofenceError as exc:
            it.reject = str(exc)
            return
        it.lon, it.lat = _cat(lon, float), _cat(lat, float)
        it.time_us, it.reason = _cat(t, np.int64), _cat(rsn, np.int8)
        it.payloads, it.source_ids, it.camera_ids = payloads, sids, cids
        it.content_type = CSV_TYPE

    def _position(self, b: ReadBatch, cams) -> ReadBatch:
        from geofence.cameras import position_reads

        if not cams:
            return b
        placed_before = b.reason == REASON_CODE["missing_position"]
        b = position_reads(b, self._positions(cams))
        # a read placed at its camera without a usable time: the reader would have
        # rejected it for the time had it carried a position (reason order), so do we
        no_time = placed_before & (b.reason == 0) & (b.time_us == NO_TIME)
        if no_time.any():
            reason = b.reason.copy()
            reason[no_time] = REASON_CODE["missing_timestamp"]
            b = dataclasses.replace(b, reason=reason)
        return b

    def _heartbeat(self, it: _Item, cams: dict) -> None:
        from geofence.profiles import parse_openalpr_heartbeat

        try:
            table = parse_openalpr_heartbeat(it.doc)
        except GeofenceError as exc:
            it.reject = str(exc)
            return
        for row in table.to_pylist():
            if row["reason"] == "" and row["camera_id"]:
                cid = str(row["camera_id"]).strip()
                cams[cid] = (row["lon"], row["lat"])
                it.cameras.append((cid, row["lon"], row["lat"], row["agent"], row["seen_at"]))

    # -- the batch ---------------------------------------------------------------

    def process(self, subs: Sequence[Submission]) -> tuple[list[Unit], list[Outcome], int, dict]:
        """Parse, deduplicate, position and decide a batch; build one store unit per submission.

        Returns the units, the answers, the pending bytes they add and the camera table
        as it will be once they are committed.
        """
        rules = self.rules
        items = [self._classify(s) for s in subs]
        live = [it for it in items if it.reject is None and it.kind not in ("test", "heartbeat")]
        known = self.store.seen([k for it in live for k in it.keys])
        first_of: dict[str, _Item] = {}
        for it in live:
            hit = next((known[k] for k in it.keys if k in known), None)
            if hit is not None:
                it.repeat_of = hit
                continue
            earlier = next((first_of[k] for k in it.keys if k in first_of), None)
            if earlier is not None:
                it.first = earlier
                continue
            for k in it.keys:
                first_of[k] = it
        # heartbeats position the results that follow them in the batch
        cams = dict(self.cameras)
        versions = [cams]
        for it in items:
            if it.reject is None and it.kind == "heartbeat":
                cams = dict(cams)
                self._heartbeat(it, cams)
                versions.append(cams)
            it.cam_version = len(versions) - 1
        todo = [it for it in live if it.repeat_of is None and it.first is None]
        groups = [it for it in todo if it.kind in ("alpr_group", "alpr_alert")]
        self._parse_json(groups, self._group, [1] * len(groups))
        results = [it for it in todo if it.kind == "alpr_results"]
        self._parse_json(results, self._results, [_n_results(it.doc) for it in results])
        for it in results:
            if it.reject is None and it.lon is not None:
                b = ReadBatch(
                    np.arange(1, it.n + 1),
                    it.lon,
                    it.lat,
                    it.time_us,
                    it.reason,
                    _ids_table(it.camera_ids),
                )
                b = self._position(b, versions[it.cam_version])
                it.lon, it.lat, it.reason = b.lon, b.lat, b.reason
                it.payloads = _result_payloads(it.doc, it.n)
        for it in todo:
            if it.kind == "csv":
                self._parse_csv(it)
        for it in todo:
            if it.kind in ("alpr_group", "alpr_alert") and it.reject is None:
                it.payloads = [None] * it.n
        # ids in arrival order, then one decision for every read of the batch
        accepted = [it for it in todo if it.reject is None]
        for it in accepted:
            it.seq, it.post_id = self.store.next_post()
        dec = None
        if accepted:
            dec = rules.decide(
                np.concatenate([it.lon for it in accepted]),
                np.concatenate([it.lat for it in accepted]),
                np.concatenate([it.time_us for it in accepted]),
                np.concatenate([it.reason for it in accepted]),
            )
        units, outcomes, pending = [], [], 0
        pos = 0
        for it in items:
            unit = Unit()
            if it.first is not None and it.first.reject is not None:
                it.reject = it.first.reject
            if it.reject is not None:
                body = it.sub.body
                unit.rejected.append(
                    (
                        it.sub.received_at,
                        it.sub.endpoint,
                        _short(it.sub.content_type),
                        hashlib.sha256(body).hexdigest(),
                        len(body),
                        it.reject[:300],
                    )
                )
                outcomes.append(Outcome(400, {"error": it.reject}))
            elif it.kind == "test":
                outcomes.append(Outcome(200, {"test": "ok"}))
            elif it.kind == "heartbeat":
                unit.cameras = it.cameras
                unit.counters["heartbeats"] = 1
                outcomes.append(Outcome(202, {"cameras": len(it.cameras)}))
            elif it.repeat_of is not None or it.first is not None:
                unit.counters["repeats"] = 1
                outcomes.append(
                    Outcome(202, {"id": it.repeat_of or it.first.post_id, "repeat": True})
                )
            else:
                n = it.n
                sl = slice(pos, pos + n)
                pos += n
                unit.posts.append(
                    PostRow(
                        it.seq,
                        it.post_id,
                        it.sub.received_at,
                        it.sub.endpoint,
                        it.kind if it.kind != "csv" else "csv",
                        getattr(it.profile, "name", None),
                        _short(it.sub.content_type),
                        it.keys[0][len("sha256:") :],
                        it.sub.body,
                        n,
                    )
                )
                unit.seen += [(k, it.post_id) for k in it.keys]
                unit.reads = self._read_rows(it, dec, sl, rules.ruleset)
                pending += unit.pending_bytes()
                outcomes.append(
                    Outcome(
                        202,
                        {
                            "id": it.post_id,
                            "reads": n,
                            "withheld": sum(r.status == "withheld" for r in unit.reads),
                        },
                    )
                )
            units.append(unit)
        return units, outcomes, pending, cams

    def _read_rows(self, it: _Item, dec: _Decision, sl: slice, ruleset: str) -> list[ReadRow]:
        body_size = len(it.sub.body) - (len(_BOM) if it.sub.body.startswith(_BOM) else 0)
        shared = dec.shared[sl]
        reason, cat, site, dist = (
            dec.reason[sl],
            dec.category[sl],
            dec.site_id[sl],
            dec.distance_m[sl],
        )
        rows = []
        for k in range(it.n):
            seq, rid = self.store.next_read(it.post_id, k + 1)
            payload = it.payloads[k]
            ok = bool(shared[k])
            t = int(it.time_us[k])
            lon, lat, d = float(it.lon[k]), float(it.lat[k]), float(dist[k])
            rows.append(
                ReadRow(
                    seq, rid, it.seq, "pending" if ok else "withheld", str(reason[k]), str(cat[k]), str(site[k]), None if d != d else d,
                    _text(it.source_ids[k]), _text(it.camera_ids[k]), None if t == NO_TIME else t, None if lon != lon else lon, None if lat != lat else lat,
                    ruleset, payload if ok else None, it.content_type, len(payload) if payload is not None else body_size,
                )
            )  # fmt: skip
        return rows

    def recheck_pending(self) -> int:
        """Withhold pending reads the current rules flag (after a reload). Returns how many."""
        rows = self.store.pending_positions()
        if not rows:
            return 0
        seq = np.array([r[0] for r in rows], np.int64)
        lon = np.array([np.nan if r[1] is None else r[1] for r in rows], float)
        lat = np.array([np.nan if r[2] is None else r[2] for r in rows], float)
        t = np.array([NO_TIME if r[3] is None else r[3] for r in rows], np.int64)
        dec = self.rules.decide(lon, lat, t, np.zeros(len(rows), np.int8))
        idx = np.flatnonzero(~dec.shared)
        d = dec.distance_m
        return self.store.withhold(
            [
                (
                    int(seq[i]),
                    str(dec.reason[i]),
                    str(dec.category[i]),
                    str(dec.site_id[i]),
                    None if d[i] != d[i] else float(d[i]),
                    self.rules.ruleset,
                )
                for i in idx.tolist()
            ]
        )


def _group_keys(doc: dict) -> list[str]:
    agent, uuid = doc.get("agent_uid"), doc.get("best_uuid")
    if not agent or not uuid:
        return []
    # a preview and the final group of one vehicle are both reads the agent sends [I]
    return [f"group:{agent}:{uuid}:{'preview' if doc.get('is_preview') else 'final'}"]


def _n_results(doc: dict) -> int:
    """Rows the openalpr-results profile makes of one frame (its ``records`` rule)."""
    recs = doc.get("results")
    if recs is None:
        return 0
    return len(recs) if isinstance(recs, list) else 1


def _result_payloads(doc: dict, n: int) -> list:
    """One frame per read: the body as posted when it holds one plate, else a copy with it alone."""
    if n == 1:
        return [None]
    recs = doc.get("results")
    return [
        json.dumps({**doc, "results": [r]}, ensure_ascii=False, separators=(",", ":")).encode()
        for r in recs
    ]


def _ids_table(camera_ids: list):
    import pyarrow as pa

    return pa.table(
        {"camera_id": pa.array([None if c is None else str(c) for c in camera_ids], pa.string())}
    )


def _take(it: _Item, b: ReadBatch) -> None:
    it.lon, it.lat, it.time_us, it.reason = b.lon, b.lat, b.time_us, b.reason
    it.source_ids = b.columns.column("read_id").to_pylist()
    it.camera_ids = b.columns.column("camera_id").to_pylist()


def _concat(batches: list[ReadBatch]) -> ReadBatch | None:
    import pyarrow as pa

    if not batches:
        return None
    if len(batches) == 1:
        return batches[0]
    cols = pa.concat_tables([b.columns.select(["read_id", "camera_id"]) for b in batches])
    return ReadBatch(
        np.concatenate([b.row for b in batches]),
        np.concatenate([b.lon for b in batches]),
        np.concatenate([b.lat for b in batches]),
        np.concatenate([b.time_us for b in batches]),
        np.concatenate([b.reason for b in batches]),
        cols,
    )


def _split(b: ReadBatch, counts: list[int]) -> list[ReadBatch]:
    out, a = [], 0
    for n in counts:
        out.append(
            ReadBatch(
                b.row[a : a + n],
                b.lon[a : a + n],
                b.lat[a : a + n],
                b.time_us[a : a + n],
                b.reason[a : a + n],
                b.columns.slice(a, n),
            )
        )
        a += n
    return out


def _cat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _text(v) -> str | None:
    return None if v is None else str(v)


def _short(content_type: str | None) -> str | None:
    return None if content_type is None else content_type[:100]


# --------------------------------------------------------------------------------------
# The relay: writer thread, committer, forwarder, capacity, reload


def _resolve(fut: asyncio.Future, outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


class StoreUnavailable(Exception):
    """Raised to a request whose body could not be committed (no ack)."""


class Relay:
    """State shared by the app's routes, the committer and the forwarder.

    :meth:`load` opens the store and the rules (errors are one-line
    :class:`~geofence.errors.GeofenceError`); :meth:`start` and :meth:`stop` run on the
    event loop (the app's lifespan).
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.rules: Rules | None = None
        self.ingest: Ingest | None = None
        self._exec = ThreadPoolExecutor(1, thread_name_prefix="geofence-store")
        self.pending_bytes = 0
        self.store_ok = True
        self.full = False
        self.accepting = True
        self.listener = None  # set by run_server: closes and reopens the listening socket
        self.generation = 0  # bumped by each reload
        self.stats: Counter = Counter()  # since start: auth failures, 413s, tests, dropped
        self.started_at = time.time()
        self._queue: list[tuple[Submission, asyncio.Future]] = []
        self._wake_committer: asyncio.Event | None = None
        self._wake_forwarder: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._reloading = False
        self._recovering: asyncio.Task | None = None

    # -- setup -------------------------------------------------------------------

    def load(self) -> None:
        """Open the store, load layers, policy, rules and credentials (at start)."""
        if self.rules is not None:
            return
        rules = Rules(self.config)
        if not rules.filter.decision.allowed:
            raise SharingRefused(f"share refused, not serving: {rules.filter.decision.reason}")
        self.store = self._exec.submit(Store, self.config.state_dir).result()
        self.rules = rules
        self.ingest = self._exec.submit(Ingest, self.store, rules, self.config.cameras).result()
        self.pending_bytes = self._exec.submit(self.store.pending_bytes).result()
        self.full = self.pending_bytes >= self.config.max_pending_bytes
        self.accepting = not self.full

    async def db(self, fn: Callable, *args):
        """Run ``fn`` on the writer thread (the only thread that writes the store)."""
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)

    async def start(self) -> None:
        if self.rules is None:
            await asyncio.to_thread(self.load)
        # httpx logs every request URL at INFO; the URL may carry credentials
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        self._wake_committer = asyncio.Event()
        self._wake_forwarder = asyncio.Event()
        self._stopping = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.forward_timeout_s),
            follow_redirects=False,
            trust_env=False,
        )
        self._forwarder = Forwarder(self, self._client)
        self._tasks = [
            asyncio.create_task(self._committer(), name="geofence-committer"),
            asyncio.create_task(self._forwarder.run(), name="geofence-forwarder"),
        ]
        self._update_capacity()
        log.info(
            "ruleset %s: %d sites fenced; forwarding to %s",
            self.rules.ruleset,
            self.rules.n_sites,
            _mask_url(self.config.forward_to),
        )

    async def stop(self) -> None:
        """Drain: commit what is queued, finish the forward in flight, close the store."""
        self._stopping.set()
        self._wake_committer.set()
        self._wake_forwarder.set()
        committer, forwarder = self._tasks
        with contextlib.suppress(asyncio.CancelledError):
            await committer
        try:
            await asyncio.wait_for(forwarder, timeout=self.config.forward_timeout_s + 5)
        except (TimeoutError, asyncio.CancelledError):
            pass
        if self._recovering is not None:
            self._recovering.cancel()
        await self._client.aclose()
        n = await self.db(
            lambda: self.store.conn.execute(
                "SELECT count(*) FROM reads WHERE status='pending'"
            ).fetchone()[0]
        )
        await self.db(self.store.close)
        self._exec.shutdown(wait=True)
        log.warning(
            "stopped: %d reads pending stay in %s for the next start", n, self.config.state_dir
        )

    # -- committer ---------------------------------------------------------------

    async def submit(self, sub: Submission) -> Outcome:
        """Queue a body for the next commit; the answer comes once it is committed."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((sub, fut))
        self._wake_committer.set()
        return await fut

    async def _committer(self) -> None:
        while True:
            if not self._queue:
                if self._stopping.is_set():
                    return
                self._wake_committer.clear()
                await self._wake_committer.wait()
                continue
            if not self.store_ok:
                await asyncio.sleep(0.2)  # the recovery probe reopens; meanwhile requests wait
                if not self.store_ok:
                    self._fail_queue()
                    continue
            batch, size = [], 0
            limit = 1 if self.config.commit_mode == "request" else MAX_BATCH_POSTS
            while self._queue and len(batch) < limit and size < MAX_BATCH_BYTES:
                item = self._queue.pop(0)
                batch.append(item)
                size += len(item[0].body)
            live = [(s, f) for s, f in batch if not f.done()]  # cancelled requests are not stored
            t0 = time.perf_counter()
            try:
                outcomes, added = await self.db(
                    self._commit,
                    [s for s, _ in live],
                    [f for _, f in live],
                    asyncio.get_running_loop(),
                )
            except StoreError as exc:
                self._store_failed(exc)
                for _, f in live:
                    if not f.done():
                        f.set_exception(StoreUnavailable())
                continue
            except Exception as exc:  # a bug must not take the relay down: no ack, logged
                log.error(
                    "committing a batch of %d posts failed: %s",
                    len(live),
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                for _, f in live:
                    if not f.done():
                        f.set_exception(StoreUnavailable())
                continue
            for (_, f), o in zip(live, outcomes, strict=True):
                if not f.done():
                    f.set_result(o)
            log.debug("committed %d posts in %.1f ms", len(live), (time.perf_counter() - t0) * 1000)
            if added:
                self.pending_bytes += added
                self._wake_forwarder.set()
                self._update_capacity()

    def _commit(
        self, subs: list[Submission], futs: list[asyncio.Future], loop
    ) -> tuple[list[Outcome], int]:
        """Writer thread: parse, decide and commit one batch.

        With group commit the batch is one transaction. In ``transaction`` mode (a
        benchmark baseline) each request is its own transaction, answered right after it.
        """
        units, outcomes, added, cams = self.ingest.process(subs)
        if self.config.commit_mode != "transaction":
            self.store.write(units)
        else:
            for unit, fut, outcome in zip(units, futs, outcomes, strict=True):
                self.store.write([unit])
                loop.call_soon_threadsafe(_resolve, fut, outcome)
        self.ingest.cameras = cams
        return outcomes, added

    def _fail_queue(self) -> None:
        while self._queue:
            _, f = self._queue.pop(0)
            if not f.done():
                f.set_exception(StoreUnavailable())

    # -- capacity ----------------------------------------------------------------

    def _update_capacity(self) -> None:
        """Open or close the door: the store must be writable and below ``max_pending_bytes``."""
        cap = self.config.max_pending_bytes
        # hysteresis: once full, reopen only below 90% so that the listener does not flap [I]
        self.full = self.pending_bytes >= (cap * 0.9 if self.full else cap)
        accepting = self.store_ok and not self.full
        if accepting == self.accepting:
            return
        self.accepting = accepting
        why = (
            "store unwritable"
            if not self.store_ok
            else f"{self.pending_bytes:,} bytes pending (--max-pending {cap:,})"
        )
        if accepting:
            log.warning("accepting posts again")
        else:
            log.warning("not accepting posts: %s", why)
        if self.listener is not None and self.config.when_full == "close":
            asyncio.get_running_loop().create_task(self.listener.set_open(accepting))

    def _store_failed(self, exc: StoreError) -> None:
        log.error("%s", exc)
        self.store_ok = False
        self._update_capacity()
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            await asyncio.sleep(delay)
            try:
                await self.db(self.store.probe)
                self.pending_bytes = await self.db(self.store.pending_bytes)
            except StoreError:
                delay = min(delay * 2, 10.0)
                continue
            log.warning("the store is writable again")
            self.store_ok = True
            self._update_capacity()
            self._wake_committer.set()
            return

    async def refuse(self, request: Request) -> Response:
        """No ack: drop the connection (``close``) or answer 503 (``503``)."""
        self.stats["not_accepted"] += 1
        if self.config.when_full == "close":
            transport = request.scope.get("geofence.transport")
            if transport is not None:
                transport.abort()
                for _ in range(3):  # let the loop deliver connection_lost: nothing is sent then
                    await asyncio.sleep(0)
                return Response(status_code=503)
            log.warning("cannot drop the connection under this server; answering 503")
        return JSONResponse(
            {"error": "not accepting posts now; retry later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    # -- reload ------------------------------------------------------------------

    def request_reload(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Load layers, policy, rules and credentials anew; keep the old set on any failure."""
        if self._reloading:
            log.warning("reload already running; this SIGHUP is ignored")
            return False
        self._reloading = True
        try:
            try:
                new = await asyncio.to_thread(Rules, self.config)
            except Exception as exc:  # any failure keeps the running set (issue #12)
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error("reload failed, still serving ruleset %s: %s", self.rules.ruleset, msg)
                return False
            if not new.filter.decision.allowed:
                log.error(
                    "reloaded rules refuse the recipient (%s): every read is withheld from now on",
                    new.filter.decision.reason,
                )
            self.rules = new
            self.ingest.rules = new
            self.generation += 1
            withheld = await self.db(self.ingest.recheck_pending)
            if withheld:
                self.pending_bytes = await self.db(self.store.pending_bytes)
                self._update_capacity()
            log.warning(
                "reloaded: ruleset %s, %d sites fenced; %d pending reads now withheld",
                new.ruleset,
                new.n_sites,
                withheld,
            )
            return True
        finally:
            self._reloading = False

    # -- metrics -----------------------------------------------------------------

    def metrics_doc(self) -> dict:
        from geofence.store import counts

        conn = sqlite3.connect(self.store.path, timeout=10)
        try:
            c = counts(conn)
            oldest = conn.execute(
                "SELECT min(p.received_at) FROM reads r JOIN posts p ON p.seq=r.post_seq WHERE r.status='pending'"
            ).fetchone()[0]
        finally:
            conn.close()
        return {
            "counts": c,
            "pending_bytes": self.pending_bytes,
            "oldest_pending_s": round(time.time() - oldest, 3) if oldest else 0.0,
            "accepting": self.accepting,
            "store_writable": self.store_ok,
            "ruleset": self.rules.ruleset,
            "sites": self.rules.n_sites,
            "since_start": dict(self.stats),
        }


class Forwarder:
    """Sends pending reads to the recipient, oldest first, one at a time."""

    FETCH = 64  # reads per fetch; also the most reads per audit line

    def __init__(self, relay: Relay, client: httpx.AsyncClient) -> None:
        self.relay = relay
        self.client = client
        self.url = relay.config.forward_to
        self.url_masked = _mask_url(self.url)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when stopping."""
        stop = self.relay._stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        return stop.is_set()

    async def run(self) -> None:
        relay = self.relay
        while not relay._stopping.is_set():
            try:
                rows = await relay.db(relay.store.next_pending, self.FETCH)
                if not rows:  # idle: resynchronise (`serve requeue` may have added some)
                    relay.pending_bytes = await relay.db(relay.store.pending_bytes)
            except Exception as exc:
                log.error("reading pending reads failed: %s", exc)
                if await self._sleep(1.0):
                    return
                continue
            if not rows:
                relay._update_capacity()
                relay._wake_forwarder.clear()
                with contextlib.suppress(TimeoutError):
                    # poll now and then: `serve requeue` (another process) adds pending reads
                    await asyncio.wait_for(relay._wake_forwarder.wait(), timeout=1.0)
                continue
            await self._send_rows(rows)

    async def _send_rows(self, rows: list[Pending]) -> None:
        relay = self.relay
        gen = relay.generation
        done: list[Pending] = []
        for row in rows:
            attempts, since = row.attempts, row.failing_since
            while True:
                if relay._stopping.is_set() or relay.generation != gen:
                    await self._flush(done)  # a reload may withhold what was fetched: fetch again
                    return
                ok, refused, err, retry_after = await self._send(row)
                if ok:
                    done.append(row)
                    break
                await self._flush(done)
                done = []
                if refused:
                    log.warning(
                        "read %s refused by the recipient (%s); kept for `geofence serve requeue`",
                        row.id,
                        err,
                    )
                    if await self._db_quiet(relay.store.mark_refused, row.seq, err):
                        relay.pending_bytes = max(0, relay.pending_bytes - row.size)
                        relay._update_capacity()
                    break
                attempts += 1
                since = since or time.time()
                delay = backoff_s(
                    attempts, relay.config.retry_base_s, relay.config.retry_cap_s, retry_after
                )
                log.warning(
                    "forwarding read %s failed (%s); attempt %d, next in %.1f s",
                    row.id,
                    err,
                    attempts,
                    delay,
                )
                await self._db_quiet(
                    relay.store.note_failure, row.seq, attempts, err, since, time.time() + delay
                )
                if await self._sleep(delay):
                    return
        await self._flush(done)

    async def _db_quiet(self, fn, *args) -> bool:
        try:
            await self.relay.db(fn, *args)
            return True
        except StoreError as exc:
            self.relay._store_failed(exc)
            return False

    async def _send(self, row: Pending) -> tuple[bool, bool, str, float | None]:
        """One attempt: (delivered, refused, error text, Retry-After seconds)."""
        headers = {"Idempotency-Key": row.id, "Content-Type": row.content_type}
        secret = self.relay.rules.sign_secret
        if secret is not None:
            ts = str(int(time.time()))
            headers[_TS_HEADER] = ts
            headers[_SIG_HEADER] = sign(secret, ts, row.payload)
        try:
            r = await self.client.post(self.url, content=row.payload, headers=headers)
        except httpx.TimeoutException:
            return False, False, "timeout", None
        except httpx.HTTPError as exc:
            return False, False, f"connection error: {type(exc).__name__}", None
        code = r.status_code
        if 200 <= code < 300:
            return True, False, "", None
        err = f"HTTP {code}"
        if code in (408, 429) or code >= 500:
            return False, False, err, _retry_after(r.headers.get("retry-after"))
        return False, True, err, None

    async def _flush(self, done: list[Pending]) -> None:
        """Audit line first, then mark forwarded: a crash between them re-sends, never hides."""
        if not done:
            return
        relay = self.relay
        record = self._audit(done)
        while True:
            try:
                await asyncio.to_thread(append_audit, relay.config.audit_path, record)
                break
            except OSError as exc:
                log.error(
                    "cannot append to the audit log %s (%s); retrying",
                    relay.config.audit_path,
                    exc.strerror,
                )
                if await self._sleep(2.0):
                    return
        while not await self._db_quiet(relay.store.mark_forwarded, [r.seq for r in done]):
            if await self._sleep(1.0):
                return
        relay.pending_bytes = max(0, relay.pending_bytes - sum(r.size for r in done))
        relay._update_capacity()

    def _audit(self, done: list[Pending]) -> dict:
        """``geofence filter``'s audit record (Civ. Code §1798.90.52(a)) for one forwarded batch."""
        cfg, rules = self.relay.config, self.relay.rules
        rec = cfg.recipient
        doc = {
            "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "input": {
                "sha256": hashlib.sha256(
                    "\n".join(r.post_sha256 for r in done).encode()
                ).hexdigest()
            },
            "user": cfg.user,
            "sender": {"name": cfg.sender, "state": cfg.sender_state},
            "purpose": rec.purpose,
            "recipient": {
                "name": rec.name,
                "type": rec.type,
                "state": rec.state,
                "declaration": rec.declaration,
            },
            "decision": rules.filter.decision.describe(),
            "counts": {
                "reads_in": len(done),
                "reads_shared": len(done),
                "reads_withheld": 0,
                "withheld_by_reason": {},
                "withheld_by_category": {},
            },
            "output": {"sha256": hashlib.sha256(b"".join(r.payload for r in done)).hexdigest()},
        }
        out = _audit_record(doc)
        out["read_ids"] = [r.id for r in done]
        out["forward_to"] = self.url_masked
        return out


def backoff_s(
    attempt: int, base_s: float, cap_s: float, retry_after_s: float | None = None, rng=random
) -> float:
    """Delay before retry ``attempt`` (1, 2, ...): exponential, capped, with jitter.

    "Equal jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): half of
    ``min(cap, base * 2**(attempt-1))`` plus a uniform random part of the other half, so
    delays grow but relays restarted together do not retry in step. A ``Retry-After``
    from the recipient is honoured up to the cap.
    """
    ceiling = min(cap_s, base_s * 2 ** min(attempt - 1, 60))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, cap_s))
    return delay


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


# --------------------------------------------------------------------------------------
# The app


class _RelayApp(Starlette):
    """A Starlette app that gives routes the connection's transport, to drop it unanswered.

    Under uvicorn the ASGI ``send`` is a method of the request's cycle, which holds the
    transport; Starlette's middleware wraps ``send`` before routes see it, so it is picked
    up here, outermost.
    """

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            scope["geofence.transport"] = getattr(
                getattr(send, "__self__", None), "transport", None
            )
        await super().__call__(scope, receive, send)


def _masked_path(request: Request) -> str:
    if "token" in request.path_params:
        return request.url.path.rsplit("/", 1)[0] + "/****"
    return request.url.path


DRAIN_FACTOR = 8
"""An oversized body up to this many times --max-body is read and discarded before the
413: a client still sending when the connection closes sees a reset, not the answer
(seen as a flaky httpx.ReadError in the 413 test). Larger bodies are cut off at once."""


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (nothing of it is kept)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit * DRAIN_FACTOR:
        return None
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit * DRAIN_FACTOR:
            return None
        if size <= limit:
            parts.append(chunk)
    return b"".join(parts) if size <= limit else None


def _bearer(request: Request) -> str | None:
    h = request.headers.get("authorization", "")
    scheme, _, token = h.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _ingest(request: Request, endpoint: str) -> Response:
    relay: Relay = request.app.state.relay
    path = _masked_path(request)
    if not relay.accepting:
        access_log.info("%s %s not accepted", request.method, path)
        return await relay.refuse(request)
    creds = relay.rules.credentials
    token = request.path_params.get("token") or _bearer(request)
    authed = token is not None and creds.token_ok(token)
    if token is None and (creds.hmac_secret is None or _SIG_HEADER not in request.headers):
        return _unauthorized(relay, request, path, "no credentials")
    if token is not None and not authed:
        return _unauthorized(relay, request, path, "bad token")
    body = await _read_body(request, relay.config.max_body_bytes)
    if body is None:
        relay.stats["too_large"] += 1
        access_log.info("%s %s 413", request.method, path)
        return JSONResponse(
            {"error": f"body over --max-body ({relay.config.max_body_bytes:,} bytes)"},
            status_code=413,
            headers={"Connection": "close"},
        )
    if not authed and not creds.hmac_ok(
        request.headers.get(_TS_HEADER), request.headers.get(_SIG_HEADER), body, time.time()
    ):
        return _unauthorized(relay, request, path, "bad signature")
    sub = Submission(
        endpoint,
        body,
        request.headers.get("content-type"),
        time.time(),
        request.query_params.get("profile"),
    )
    try:
        outcome = await relay.submit(sub)
    except StoreUnavailable:
        access_log.info("%s %s not accepted (store)", request.method, path)
        return await relay.refuse(request)
    if outcome.status == 200:
        relay.stats["tests"] += 1
    access_log.info(
        "%s %s %d %s",
        request.method,
        path,
        outcome.status,
        outcome.body.get("id") or outcome.body.get("error", ""),
    )
    return JSONResponse(outcome.body, status_code=outcome.status)


def _unauthorized(relay: Relay, request: Request, path: str, why: str) -> Response:
    relay.stats["auth_failures"] += 1
    client = request.client.host if request.client else "?"
    log.warning("401 for %s %s from %s: %s", request.method, path, client, why)
    return JSONResponse(
        {"error": "unauthorized"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="geofence"'},
    )


async def _openalpr(request: Request) -> Response:
    return await _ingest(request, "openalpr")


async def _reads(request: Request) -> Response:
    return await _ingest(request, "reads")


async def _healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def _readyz(request: Request) -> Response:
    relay: Relay = request.app.state.relay
    why = []
    if relay.rules is None:
        why.append("layers not loaded")
    if not relay.store_ok:
        why.append("store not writable")
    if relay.full:
        why.append("--max-pending reached")
    body = {
        "ready": not why,
        "reasons": why,
        "ruleset": relay.rules.ruleset if relay.rules else None,
    }
    return JSONResponse(body, status_code=200 if not why else 503)


async def _metrics(request: Request) -> Response:
    relay: Relay = request.app.state.relay
    doc = await asyncio.to_thread(relay.metrics_doc)
    if request.query_params.get("format") == "json":
        return JSONResponse(doc)
    c = doc["counts"]
    lines = [
        "# HELP geofence_serve_items Items by outcome; received = forwarded + withheld + rejected + pending + refused (a rejected body counts once).",
        "# TYPE geofence_serve_items gauge",
    ]
    for k in ("received", "forwarded", "withheld", "rejected", "pending", "refused"):
        lines.append(f'geofence_serve_items{{outcome="{k}"}} {c[k]}')
    lines += [
        "# HELP geofence_serve_posts Bodies stored, repeats answered without storing, heartbeats.",
        "# TYPE geofence_serve_posts gauge",
        f'geofence_serve_posts{{outcome="accepted"}} {c["posts_accepted"]}',
        f'geofence_serve_posts{{outcome="repeat"}} {c["posts_repeated"]}',
        f'geofence_serve_posts{{outcome="heartbeat"}} {c["heartbeats"]}',
        "# TYPE geofence_serve_pending_bytes gauge",
        f"geofence_serve_pending_bytes {doc['pending_bytes']}",
        "# HELP geofence_serve_oldest_pending_seconds Age of the oldest read waiting to be forwarded.",
        "# TYPE geofence_serve_oldest_pending_seconds gauge",
        f"geofence_serve_oldest_pending_seconds {doc['oldest_pending_s']}",
        "# TYPE geofence_serve_accepting gauge",
        f"geofence_serve_accepting {int(doc['accepting'])}",
        "# TYPE geofence_serve_store_writable gauge",
        f"geofence_serve_store_writable {int(doc['store_writable'])}",
        "# HELP geofence_serve_requests_total Requests since start that stored nothing.",
        "# TYPE geofence_serve_requests_total counter",
    ]
    for k in ("auth_failures", "too_large", "tests", "not_accepted"):
        lines.append(
            f'geofence_serve_requests_total{{outcome="{k}"}} {doc["since_start"].get(k, 0)}'
        )
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def create_app(config: ServeConfig, *, relay: Relay | None = None) -> Starlette:
    """The relay as a Starlette (ASGI) app; run it under uvicorn (:func:`run_server` does).

    Parameters
    ----------
    config : ServeConfig
    relay : Relay, optional
        An already loaded relay (``run_server`` loads it before binding, so that broken
        layers fail with one line before anything listens).

    Examples
    --------
    >>> app = create_app(ServeConfig(["schools.toml"], Recipient("KCSO", "state-public"),
    ...                  "https://partner.example/reads", "state", token_file="tokens"))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8787)  # doctest: +SKIP
    """
    relay = relay or Relay(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    routes = [
        Route("/v1/openalpr", _openalpr, methods=["POST"]),
        Route("/v1/reads", _reads, methods=["POST"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]
    if config.allow_path_token:
        routes += [
            Route("/v1/openalpr/{token}", _openalpr, methods=["POST"]),
            Route("/v1/reads/{token}", _reads, methods=["POST"]),
        ]
    app = _RelayApp(routes=routes, lifespan=lifespan)
    app.state.relay = relay
    return app


# --------------------------------------------------------------------------------------
# Running under uvicorn, with a listener that can be closed and reopened


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"--listen {host}:{port}: cannot listen there ({exc.strerror}); choose a free address"
        ) from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class _Listener:
    """Closes and reopens uvicorn's listening socket on the same address.

    asyncio servers cannot pause accepting, and a paused socket still completes TCP
    handshakes in its backlog, so a client would see a connection and wait; closing the
    socket makes new connections fail at once (the agent's cue to retry).
    """

    def __init__(self, server: _Server, host: str, port: int) -> None:
        self.server, self.host, self.port = server, host, port
        self._lock = asyncio.Lock()

    async def set_open(self, want: bool) -> None:
        async with self._lock:
            srv = self.server
            is_open = bool(srv.servers)
            if want == is_open or srv.should_exit:
                return
            if not want:
                for s in srv.servers:
                    s.close()
                srv.servers = []
                log.warning("listener closed: new connections are refused")
                return
            cfg = srv.config
            while not srv.should_exit:
                try:
                    sock = _bind(self.host, self.port, cfg.backlog)
                    break
                except UsageError as exc:
                    log.error("%s; retrying", exc)
                    await asyncio.sleep(1.0)
            else:
                return

            def protocol(_loop=None):
                return cfg.http_protocol_class(
                    config=cfg,
                    server_state=srv.server_state,
                    app_state=srv.lifespan.state,
                    _loop=_loop,
                )

            srv.servers.append(
                await asyncio.get_running_loop().create_server(
                    protocol, sock=sock, backlog=cfg.backlog
                )
            )
            log.warning("listener open again on %s:%d", self.host, self.port)


class _Server(uvicorn.Server):
    """uvicorn's server, with a drain that ends the process normally and the relay's hooks."""

    def __init__(self, config: uvicorn.Config, relay: Relay, on_listening) -> None:
        super().__init__(config)
        self.relay = relay
        self.on_listening = on_listening
        self.signal_received: int | None = None

    def handle_exit(self, sig, frame) -> None:
        # like uvicorn's, but without raising the signal again after shutdown: a drain
        # after SIGTERM is a normal end (exit 0)
        self.signal_received = sig
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        sock = sockets[0]
        host, port = sock.getsockname()[:2]
        self.relay.listener = _Listener(self, host, port)
        if threading.current_thread() is threading.main_thread():
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.relay.request_reload)
        if self.on_listening is not None:
            self.on_listening(host, port)
        if not self.relay.accepting and self.relay.config.when_full == "close":
            await self.relay.listener.set_open(False)


def run_server(
    config: ServeConfig, *, on_listening: Callable[[str, int], None] | None = None
) -> int:
    """Load everything, listen on ``config.listen`` and serve until SIGTERM or SIGINT.

    Layers, policy, rules, credentials and the store are loaded before the socket is
    bound, so a broken start is one :class:`~geofence.errors.GeofenceError`.

    Parameters
    ----------
    on_listening : callable, optional
        Called with the bound host and port (port 0 picks a free one).

    Returns
    -------
    int
        The signal that ended the relay (0 if none).
    """
    relay = Relay(config)
    relay.load()
    app = create_app(config, relay=relay)
    sock = _bind(config.host, config.port, 2048)
    ucfg = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        http="h11",
        lifespan="on",
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    server = _Server(ucfg, relay, on_listening)
    server.run(sockets=[sock])
    return server.signal_received or 0
