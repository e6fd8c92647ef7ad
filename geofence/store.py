"""The relay's store: one SQLite file in ``--state-dir`` holding every post and read (issue #12).

``geofence serve`` acknowledges a post (202) only once its raw body and the decision on
each of its reads are committed here, and forwards reads from here, so what was
acknowledged survives a crash (SIGKILL, power loss) and forwarding resumes after a
restart. The file is SQLite in WAL mode with ``synchronous=FULL``: a commit returns only
after the write-ahead log is on disk (sqlite.org/pragma.html#pragma_synchronous: "FULL
... ensures that an operating system crash or power failure will not corrupt the
database" and, in WAL mode, that committed transactions are durable).

Tables
------
``posts``
    Every accepted body as received (bytes, SHA-256, size, endpoint, content type).
``reads``
    One row per read of a post, in arrival order (``seq``): its decision and state.
    ``status`` is ``pending`` (to forward), ``forwarded``, ``withheld`` (never sent: near a
    site, unevaluable, or the recipient refused) or ``refused`` (the recipient answered
    4xx; ``geofence serve requeue`` sends it again). Withheld is final: no command sends a
    withheld read (fail-closed).
``rejected``
    Bodies answered 400 (empty, not JSON, not a read log): hash, size and reason only.
``seen``
    Keys of posts already stored (body hash, OpenALPR agent + uuid), for repeats.
``cameras``
    Latest position per camera from OpenALPR heartbeats.
``counters``, ``meta``
    Repeats and heartbeats received; the store's id and schema version.

A post's id is ``<store id>-<n>`` and its reads ``<post id>-<k>``; the store id is random
per store, so ids (the ``Idempotency-Key`` sent downstream) never repeat across stores.

Only the relay's writer thread writes, except :func:`requeue` (another process: SQLite's
locking and a busy timeout serialise them). This module never imports the HTTP stack, so
``serve status``, ``serve withheld`` and ``serve requeue`` work without the ``serve`` extra.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geofence.atomic import atomic_output
from geofence.errors import GeofenceError, UsageError

__all__ = [
    "READ_STATUSES",
    "STORE_FILE",
    "WITHHELD_COLUMNS",
    "Pending",
    "PostRow",
    "ReadRow",
    "Store",
    "StoreError",
    "export_withheld",
    "requeue",
    "status",
]

STORE_FILE = "relay.sqlite"
"""Name of the store inside ``--state-dir``."""

SCHEMA_VERSION = "1"

READ_STATUSES = ("pending", "forwarded", "withheld", "refused")
"""States of a read; every read is in exactly one."""

BUSY_TIMEOUT_MS = 10_000
"""How long a connection waits for another's write lock (``serve requeue`` while serving)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS posts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    endpoint TEXT NOT NULL,
    data_type TEXT NOT NULL,
    profile TEXT,
    content_type TEXT,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    n_reads INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reads (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    post_seq INTEGER NOT NULL REFERENCES posts(seq),
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    site_id TEXT NOT NULL DEFAULT '',
    distance_m REAL,
    source_read_id TEXT,
    camera_id TEXT,
    time_us INTEGER,
    lon REAL,
    lat REAL,
    ruleset TEXT NOT NULL,
    payload BLOB,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    failing_since REAL,
    next_attempt_at REAL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS reads_by_status ON reads(status, seq);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    endpoint TEXT NOT NULL,
    content_type TEXT,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, post_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cameras (
    camera_id TEXT PRIMARY KEY,
    lon REAL NOT NULL,
    lat REAL NOT NULL,
    agent TEXT,
    seen_at TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class StoreError(GeofenceError):
    """Raised when the store cannot be opened or written (disk full, read-only, I/O error)."""


@dataclass
class PostRow:
    """One accepted body, as stored."""

    seq: int
    id: str
    received_at: float
    endpoint: str
    data_type: str
    profile: str | None
    content_type: str | None
    sha256: str
    body: bytes
    n_reads: int


@dataclass
class ReadRow:
    """One read of a post with its decision (``status`` pending or withheld when stored)."""

    seq: int
    id: str
    post_seq: int
    status: str
    reason: str
    category: str
    site_id: str
    distance_m: float | None
    source_read_id: str | None
    camera_id: str | None
    time_us: int | None
    lon: float | None
    lat: float | None
    ruleset: str
    payload: bytes | None  # None: the post's body (without a byte order mark) is the payload
    content_type: str
    size: int


@dataclass
class Unit:
    """What one request adds to the store; committed whole (alone, or with others)."""

    posts: list[PostRow] = field(default_factory=list)
    reads: list[ReadRow] = field(default_factory=list)
    rejected: list[tuple] = field(
        default_factory=list
    )  # (received_at, endpoint, content_type, sha256, size, reason)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (key, post id)
    cameras: list[tuple] = field(default_factory=list)  # (camera_id, lon, lat, agent, seen_at)
    counters: dict[str, int] = field(default_factory=dict)

    def pending_bytes(self) -> int:
        return sum(r.size for r in self.reads if r.status == "pending")


@dataclass
class Pending:
    """A read to forward: its id, payload and delivery state."""

    seq: int
    id: str
    payload: bytes
    content_type: str
    size: int
    post_sha256: str
    attempts: int
    failing_since: float | None


_BOM = b"\xef\xbb\xbf"


def _now() -> float:
    return time.time()


def iso(t: float | None) -> str:
    """Unix seconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (empty for None)."""
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _store_path(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / STORE_FILE


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
        raise StoreError(
            f"{path}: SQLite would not switch to WAL mode; put --state-dir on a local file system"
        )
    # FULL: every commit syncs the WAL, so an acknowledged post survives power loss (module docstring).
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _sqlite_error(path: Path, exc: sqlite3.Error, doing: str) -> StoreError:
    return StoreError(
        f"{path}: cannot {doing} ({exc}); check the disk and the permissions of --state-dir"
    )


class Store:
    """The writer's handle on the store (one thread uses it at a time).

    Parameters
    ----------
    state_dir : path
        Created (mode 0700: the store holds plates) when missing.
    """

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.dir = Path(state_dir)
        self.path = _store_path(state_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(
                f"--state-dir {self.dir}: cannot create it ({exc.strerror}); choose a writable directory"
            ) from None
        old_umask = os.umask(0o077)  # the database holds plates: owner only
        try:
            self.conn = _connect(self.path)
            self.conn.executescript(_SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
            if row is None:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.execute(
                    "INSERT INTO meta VALUES ('store_id', ?), ('schema', ?), ('created_at', ?)",
                    (secrets.token_hex(4), SCHEMA_VERSION, iso(_now())),
                )
                self.conn.execute("COMMIT")
                row = self.conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
            schema = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(self.path, exc, "open the store") from None
        finally:
            os.umask(old_umask)
        if schema != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema {schema}, this geofence writes {SCHEMA_VERSION}; use a new --state-dir"
            )
        self.store_id: str = row[0]
        self._load_counters()

    def _load_counters(self) -> None:
        c = self.conn
        self._post_seq = c.execute("SELECT coalesce(max(seq), 0) FROM posts").fetchone()[0]
        self._read_seq = c.execute("SELECT coalesce(max(seq), 0) FROM reads").fetchone()[0]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    # -- ids ------------------------------------------------------------------------

    def next_post(self) -> tuple[int, str]:
        """Seq and id for a new post (valid once its transaction commits)."""
        self._post_seq += 1
        return self._post_seq, f"{self.store_id}-{self._post_seq}"

    def next_read(self, post_id: str, k: int) -> tuple[int, str]:
        self._read_seq += 1
        return self._read_seq, f"{post_id}-{k}"

    # -- writes ---------------------------------------------------------------------

    def seen(self, keys: Sequence[str]) -> dict[str, str]:
        """Post ids of keys already stored."""
        out: dict[str, str] = {}
        keys = list(dict.fromkeys(keys))
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            q = f"SELECT key, post_id FROM seen WHERE key IN ({','.join('?' * len(part))})"
            out.update(self.conn.execute(q, part).fetchall())
        return out

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; on any failure roll back and reset the id
        counters, so that the same rows can be written again later."""
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
            yield c
            c.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                self._load_counters()
            if isinstance(exc, sqlite3.Error):
                raise _sqlite_error(self.path, exc, "write the store") from None
            raise

    def write(self, units: Sequence[Unit]) -> None:
        """Commit units in one transaction (a group commit: one sync for all).

        Raises
        ------
        StoreError
            When SQLite cannot write; nothing of the units is stored.
        """
        with self._transaction() as c:
            self._insert(c, units)

    def _insert(self, c: sqlite3.Connection, units: Sequence[Unit]) -> None:
        posts = [p for u in units for p in u.posts]
        if posts:
            c.executemany(
                "INSERT INTO posts (seq, id, received_at, endpoint, data_type, profile, content_type, sha256, size, body, n_reads) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        p.seq,
                        p.id,
                        p.received_at,
                        p.endpoint,
                        p.data_type,
                        p.profile,
                        p.content_type,
                        p.sha256,
                        len(p.body),
                        p.body,
                        p.n_reads,
                    )
                    for p in posts
                ],
            )
        reads = [r for u in units for r in u.reads]
        if reads:
            c.executemany(
                "INSERT INTO reads (seq, id, post_seq, status, reason, category, site_id, distance_m, source_read_id, camera_id, time_us, lon, lat, ruleset, payload, content_type, size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.seq,
                        r.id,
                        r.post_seq,
                        r.status,
                        r.reason,
                        r.category,
                        r.site_id,
                        r.distance_m,
                        r.source_read_id,
                        r.camera_id,
                        r.time_us,
                        r.lon,
                        r.lat,
                        r.ruleset,
                        r.payload,
                        r.content_type,
                        r.size,
                    )
                    for r in reads
                ],
            )
        rej = [x for u in units for x in u.rejected]
        if rej:
            c.executemany(
                "INSERT INTO rejected (received_at, endpoint, content_type, sha256, size, reason) VALUES (?,?,?,?,?,?)",
                rej,
            )
        seen = [x for u in units for x in u.seen]
        if seen:
            c.executemany("INSERT OR IGNORE INTO seen (key, post_id) VALUES (?,?)", seen)
        cams = [x for u in units for x in u.cameras]
        if cams:
            c.executemany(
                "INSERT OR REPLACE INTO cameras (camera_id, lon, lat, agent, seen_at) VALUES (?,?,?,?,?)",
                cams,
            )
        counts: dict[str, int] = {}
        for u in units:
            for k, v in u.counters.items():
                counts[k] = counts.get(k, 0) + v
        if counts:
            c.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                list(counts.items()),
            )

    def probe(self) -> None:
        """Write and commit one small row: raises :class:`StoreError` while the store cannot."""
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES ('probed_at', ?)", (iso(_now()),))

    def _tx(self, sql_params: Iterable[tuple[str, Sequence]]) -> None:
        with self._transaction() as c:
            for sql, params in sql_params:
                c.execute(sql, params)

    def mark_forwarded(self, seqs: Sequence[int]) -> None:
        """Pending reads the recipient accepted (2xx) become ``forwarded``."""
        if not seqs:
            return
        now = _now()
        q = f"UPDATE reads SET status='forwarded', done_at=?, last_error=NULL, next_attempt_at=NULL, failing_since=NULL, payload=NULL WHERE status='pending' AND seq IN ({','.join('?' * len(seqs))})"
        self._tx([(q, [now, *seqs])])

    def mark_refused(self, seq: int, error: str) -> None:
        """A read the recipient refused (4xx but 408/429) waits for ``requeue``."""
        self._tx(
            [
                (
                    "UPDATE reads SET status='refused', done_at=?, last_error=?, next_attempt_at=NULL WHERE seq=? AND status='pending'",
                    (_now(), error, seq),
                )
            ]
        )

    def note_failure(
        self, seq: int, attempts: int, error: str, failing_since: float, next_attempt_at: float
    ) -> None:
        """Record a failed delivery of the head read (``serve status`` shows stalls)."""
        self._tx(
            [
                (
                    "UPDATE reads SET attempts=?, last_error=?, failing_since=?, next_attempt_at=? WHERE seq=?",
                    (attempts, error, failing_since, next_attempt_at, seq),
                )
            ]
        )

    def withhold(self, rows: Sequence[tuple]) -> int:
        """Pending reads a reloaded layer set flags: ``(seq, reason, category, site_id, distance_m, ruleset)``."""
        if not rows:
            return 0
        n = 0
        with self._transaction() as c:
            for seq, reason, cat, site, dist, ruleset in rows:
                n += c.execute(
                    "UPDATE reads SET status='withheld', reason=?, category=?, site_id=?, distance_m=?, ruleset=?, payload=NULL, done_at=? WHERE seq=? AND status='pending'",
                    (reason, cat, site, dist, ruleset, _now(), seq),
                ).rowcount
        return n

    # -- reads ----------------------------------------------------------------------

    def next_pending(self, limit: int) -> list[Pending]:
        """The oldest pending reads, in order, with their payloads."""
        rows = self.conn.execute(
            "SELECT r.seq, r.id, coalesce(r.payload, p.body), r.content_type, r.size, p.sha256, r.attempts, r.failing_since "
            "FROM reads r JOIN posts p ON p.seq = r.post_seq WHERE r.status='pending' ORDER BY r.seq LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for seq, rid, payload, ctype, size, sha, attempts, since in rows:
            payload = bytes(payload)
            if payload.startswith(_BOM):
                payload = payload[len(_BOM) :]
            out.append(Pending(seq, rid, payload, ctype, size, sha, attempts, since))
        return out

    def pending_bytes(self) -> int:
        """Bytes waiting to be forwarded (what ``--max-pending`` bounds)."""
        return self.conn.execute(
            "SELECT coalesce(sum(size), 0) FROM reads WHERE status='pending'"
        ).fetchone()[0]

    def pending_positions(self) -> list[tuple]:
        """``(seq, lon, lat, time_us)`` of every pending read (re-checked after a reload)."""
        return self.conn.execute(
            "SELECT seq, lon, lat, time_us FROM reads WHERE status='pending' ORDER BY seq"
        ).fetchall()

    def cameras(self) -> list[tuple]:
        """``(camera_id, lon, lat)`` of every camera a heartbeat positioned."""
        return self.conn.execute(
            "SELECT camera_id, lon, lat FROM cameras ORDER BY camera_id"
        ).fetchall()


# -------------------------------------------------------------------------------------
# Offline views: serve status / withheld / requeue (another process may be serving)


@contextlib.contextmanager
def _open_existing(state_dir: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    path = _store_path(state_dir)
    if not path.is_file():
        raise UsageError(
            f"{state_dir}: no relay store ({STORE_FILE}) there; pass the --state-dir that geofence serve uses"
        )
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc, "open the store") from None
    try:
        yield conn
    except sqlite3.DatabaseError as exc:
        raise _sqlite_error(path, exc, "read the store") from None
    finally:
        conn.close()


def counts(conn: sqlite3.Connection) -> dict:
    """Counts of the store; ``received = forwarded + withheld + rejected + pending + refused``.

    A read is counted once, in its current state; a rejected body (400) counts as one
    received item, because its reads could not be read.
    """
    by = dict.fromkeys(READ_STATUSES, 0)
    by.update(conn.execute("SELECT status, count(*) FROM reads GROUP BY status").fetchall())
    rejected = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
    ctr = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    posts = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
    return {
        "received": sum(by.values()) + rejected,
        "forwarded": by["forwarded"],
        "withheld": by["withheld"],
        "rejected": rejected,
        "pending": by["pending"],
        "refused": by["refused"],
        "posts_accepted": posts,
        "posts_repeated": ctr.get("repeats", 0),
        "heartbeats": ctr.get("heartbeats", 0),
    }


def status(state_dir: str | os.PathLike) -> dict:
    """What the relay has received, forwarded, withheld and still holds (``serve status``).

    Returns
    -------
    dict
        ``counts`` (see :func:`counts`), ``withheld_by_reason``, ``pending_bytes``,
        ``oldest_pending`` (received time and age in seconds of the oldest pending read),
        ``head`` (the read forwarding waits on: attempts, last error, failing since, next
        attempt; a stall shows here), ``last_forwarded_at``, ``cameras``, ``store`` (id, file).
    """
    now = _now()
    with _open_existing(state_dir) as conn:
        doc: dict = {
            "store": {
                "id": conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0],
                "file": STORE_FILE,
            }
        }
        doc["counts"] = counts(conn)
        doc["withheld_by_reason"] = dict(
            conn.execute(
                "SELECT reason, count(*) FROM reads WHERE status='withheld' GROUP BY reason ORDER BY reason"
            ).fetchall()
        )
        doc["rejected_by_reason"] = dict(
            conn.execute(
                "SELECT reason, count(*) FROM rejected GROUP BY reason ORDER BY reason"
            ).fetchall()
        )
        doc["pending_bytes"] = conn.execute(
            "SELECT coalesce(sum(size), 0) FROM reads WHERE status='pending'"
        ).fetchone()[0]
        head = conn.execute(
            "SELECT r.id, p.received_at, r.attempts, r.last_error, r.failing_since, r.next_attempt_at FROM reads r JOIN posts p ON p.seq=r.post_seq "
            "WHERE r.status='pending' ORDER BY r.seq LIMIT 1"
        ).fetchone()
        if head:
            rid, received, attempts, err, since, nxt = head
            doc["oldest_pending"] = {
                "read_id": rid,
                "received_at": iso(received),
                "age_s": round(now - received, 3),
            }
            doc["head"] = {
                "read_id": rid,
                "attempts": attempts,
                "last_error": err,
                "failing_since": iso(since) or None,
                "stalled_s": round(now - since, 3) if since else 0.0,
                "next_attempt_at": iso(nxt) or None,
            }
        else:
            doc["oldest_pending"] = None
            doc["head"] = None
        doc["refused"] = [
            {"read_id": rid, "error": err, "refused_at": iso(t)}
            for rid, err, t in conn.execute(
                "SELECT id, last_error, done_at FROM reads WHERE status='refused' ORDER BY seq LIMIT 20"
            ).fetchall()
        ]
        last = conn.execute("SELECT max(done_at) FROM reads WHERE status='forwarded'").fetchone()[0]
        doc["last_forwarded_at"] = iso(last) or None
        doc["cameras"] = conn.execute("SELECT count(*) FROM cameras").fetchone()[0]
    return doc


WITHHELD_COLUMNS = (
    "read_id",
    "post_id",
    "received_at",
    "source",
    "source_read_id",
    "camera_id",
    "read_time",
    "lon",
    "lat",
    "withheld_reason",
    "category",
    "site_id",
    "distance_m",
    "ruleset",
)
"""Columns of ``serve withheld``: no plate (the post's body stays in the store)."""


def export_withheld(state_dir: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write every withheld read as CSV (:data:`WITHHELD_COLUMNS`), in arrival order.

    Returns
    -------
    int
        Rows written.
    """
    n = 0
    with _open_existing(state_dir) as conn, atomic_output(out) as fh:
        fh.write((",".join(WITHHELD_COLUMNS) + "\n").encode())
        cur = conn.execute(
            "SELECT r.id, p.id, p.received_at, CASE WHEN p.profile IS NULL THEN p.data_type ELSE p.data_type || ':' || p.profile END, "
            "r.source_read_id, r.camera_id, r.time_us, r.lon, r.lat, r.reason, r.category, r.site_id, r.distance_m, r.ruleset "
            "FROM reads r JOIN posts p ON p.seq = r.post_seq WHERE r.status='withheld' ORDER BY r.seq"
        )
        while rows := cur.fetchmany(10_000):
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            for (
                rid,
                pid,
                received,
                source,
                srid,
                cam,
                t_us,
                lon,
                lat,
                reason,
                cat,
                site,
                dist,
                ruleset,
            ) in rows:
                read_time = "" if t_us is None else iso(t_us / 1e6)
                w.writerow(
                    [
                        rid,
                        pid,
                        iso(received),
                        source,
                        srid or "",
                        cam or "",
                        read_time,
                        _num(lon),
                        _num(lat),
                        reason,
                        cat,
                        site,
                        _num(dist),
                        ruleset,
                    ]
                )
            fh.write(buf.getvalue().encode())
            n += len(rows)
    return n


def _num(v) -> str:
    return "" if v is None or v != v else repr(float(v))


def requeue(state_dir: str | os.PathLike, ident: str) -> list[str]:
    """Send refused reads again: a read id, or a post id (all its refused reads).

    Returns
    -------
    list of str
        Ids of the reads made pending again; a running relay picks them up within a second.

    Raises
    ------
    UsageError
        Unknown id, or no refused read under it (withheld reads are never requeued).
    """
    with _open_existing(state_dir) as conn:
        rows = conn.execute(
            "SELECT seq, id, status FROM reads WHERE id = ? ORDER BY seq", (ident,)
        ).fetchall()
        if not rows:
            rows = conn.execute(
                "SELECT r.seq, r.id, r.status FROM reads r JOIN posts p ON p.seq = r.post_seq WHERE p.id = ? ORDER BY r.seq",
                (ident,),
            ).fetchall()
        if not rows:
            raise UsageError(
                f"{ident}: no read or post with this id in {state_dir}; `geofence serve status {state_dir}` lists refused reads"
            )
        todo = [(seq, rid) for seq, rid, st in rows if st == "refused"]
        if not todo:
            states = ", ".join(sorted({st for _, _, st in rows}))
            raise UsageError(
                f"{ident}: nothing to requeue (state: {states}); only reads the recipient refused are sent again, never withheld ones"
            )
        conn.execute("BEGIN IMMEDIATE")
        for seq, _ in todo:
            conn.execute(
                "UPDATE reads SET status='pending', attempts=0, last_error=NULL, failing_since=NULL, next_attempt_at=NULL, done_at=NULL WHERE seq=? AND status='refused'",
                (seq,),
            )
        conn.execute("COMMIT")
    return [rid for _, rid in todo]
