"""The scan: read batches through the engine into reports and a summary.

``scan_batches`` is the loop every caller shares (the ``scan`` and ``filter`` commands,
the Python API): it takes read batches, asks the :class:`~geofence.engine.Engine` for
matches of the usable reads, and yields one :class:`ScanResult` per batch, in input
order. ``run_scan`` adds the files (report, summary, rejects); ``scan`` returns a
GeoDataFrame for interactive use.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from geofence import _memory
from geofence._arrays import full_object
from geofence._pipeline import OutputThread
from geofence._version import __version__
from geofence.atomic import atomic_output
from geofence.engine import Engine, Matches
from geofence.errors import UsageError
from geofence.model import REASON_CODE, ReadBatch
from geofence.reads import ReadStream
from geofence.report import (
    DISTANCE_DECIMALS,
    FORMATS,
    READ_FIELDS,
    WRITERS,
    PlatePseudonymizer,
    ScanTables,
    Summary,
    dumps_summary,
)
from geofence.rows import append_fields

STATUS_CLEAN, STATUS_FLAGGED, STATUS_REJECTED = 0, 1, 2

SCAN_BATCH = 65_536
"""Reads per batch, at most. With dense fences (100k sites, 8 matches per read) a batch's
report rows are ~300 MB at 262k reads; 64k keeps the per-batch overhead negligible
(issue #5). Dense logs get smaller batches (:data:`BATCH_MATCHES`)."""

BATCH_MATCHES = 131_072
"""Matches per batch the scan aims at: after each batch the next one is sized from its
matches per read, between :data:`MIN_BATCH` and :data:`SCAN_BATCH` reads. At 100k sites
(8 matches per read) a batch of 64k reads grew the resident size by ~75 MB before memory
could be handed back, and the 10M-read scan peaked at 510 MB. Session 6 measured 16k-read
batches (131k matches) against 32k with the memory governor at 460 MB: 17 instead of 62
hand-backs per 10M reads and 20.8-22.5 s instead of 22.9 s; 8k-read batches were slower
again (24.5 s: per-batch overhead). At 10k sites (0.8 per read) batches stay 64k (issue #5)."""

MIN_BATCH = 8_192
"""Fewest reads per batch when sizing by matches: below it per-batch overhead shows."""


def _batch_size(matches: int, reads: int) -> int:
    """Reads of the next batch after one of ``reads`` reads with ``matches`` matches."""
    if matches <= 0:
        return SCAN_BATCH
    return int(min(max(BATCH_MATCHES * max(reads, 1) // matches, MIN_BATCH), SCAN_BATCH))


@dataclass
class ScanResult:
    """One batch of reads with its outcome.

    Attributes
    ----------
    batch : ReadBatch
        The reads as read.
    reason : numpy.ndarray
        int8 reject codes (``geofence.model.REJECT_REASONS``); 0 for usable reads.
    matches : Matches
        Matches of every read of the batch (none for rejected reads).
    """

    batch: ReadBatch
    reason: np.ndarray
    matches: Matches

    @property
    def status(self) -> np.ndarray:
        """0 clean, 1 flagged, 2 rejected, per read."""
        s = np.where(self.matches.flagged, STATUS_FLAGGED, STATUS_CLEAN).astype(np.int8)
        s[self.reason != 0] = STATUS_REJECTED
        return s


def scan_batches(batches: Iterable[ReadBatch], engine: Engine) -> Iterator[ScanResult]:
    """Match every usable read of every batch; the one loop all commands share.

    Parameters
    ----------
    batches : iterable of ReadBatch
    engine : Engine

    Yields
    ------
    ScanResult
    """
    for batch in batches:
        reason = batch.reason.copy()
        usable = np.flatnonzero(reason == 0)
        sub = engine.match(batch.lon[usable], batch.lat[usable], batch.time_us[usable])
        # A read near an event fence cannot be judged without a time (issue #7).
        if sub.untimed is not None and sub.untimed.any():
            reason[usable[sub.untimed]] = REASON_CODE["no_time_for_time_bound_fence"]
            keep = np.flatnonzero(~sub.untimed)
            sub, usable = sub.take(keep), usable[keep]
        cnt = np.zeros(len(batch), np.int64)
        cnt[usable] = sub.count
        ptr = np.zeros(len(batch) + 1, np.int64)
        np.cumsum(cnt, out=ptr[1:])
        yield ScanResult(batch, reason, Matches(ptr, sub.site, sub.distance_m))


class Labeller:
    """Turns matches into report columns: site fields and the policy labels."""

    def __init__(self, engine: Engine, pseudonymizer: PlatePseudonymizer | None = None) -> None:
        f = engine.fences
        pol = engine.policy
        self.engine = engine
        self.pseudonymizer = pseudonymizer
        # Arrow arrays once, then `take` per batch: no Python objects per flagged read.
        self.site_id = pa.array(f.site_id, type=pa.string())
        self.site_name = pa.array(f.site_name, type=pa.string())
        self.site_category = pa.array(f.site_category, type=pa.string())
        cats = f.categories
        rules = [pol.categories[c] for c in cats]
        self.cat_buffer_m = pa.array([r.buffer_m for r in rules], type=pa.float64())
        self.cat_packs = pa.array([";".join(r.packs) for r in rules], type=pa.string())
        self.cat_clauses = pa.array(
            [";".join(f"{c.pack}:{c.clause_id}" for c in r.clauses) for r in rules],
            type=pa.string(),
        )
        self.site_cat = f.site_cat_code
        self.tier = pol.tier

    def tables(
        self, res: ScanResult, source: str | None = None, rows: np.ndarray | None = None
    ) -> ScanTables:
        """Build the report rows of the flagged reads of one batch.

        ``rows``: the flagged reads to label (indices into the batch, ascending);
        all of them by default.
        """
        m = res.matches
        flagged = np.flatnonzero(m.flagged) if rows is None else rows
        fm = m.take(flagged)
        near_site, near_dist = fm.nearest()
        cat = self.site_cat[near_site]
        cols = res.batch.columns
        fl = pa.array(flagged)
        out = {"row": pa.array(res.batch.row[flagged])}
        if source is not None:
            out["source"] = pa.array([source] * len(flagged), type=pa.string())
        for name in READ_FIELDS:
            col = (
                cols.column(name).take(fl)
                if name in cols.column_names
                else pa.nulls(len(flagged), pa.string())
            )
            if name == "plate" and self.pseudonymizer is not None:
                col = self.pseudonymizer(
                    col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
                )
            out[name] = col
        if "position_source" in cols.column_names:  # scan --cameras (issue #10)
            out["position_source"] = cols.column("position_source").take(fl)
        # Dictionary arrays: zero-copy views of the per-site and per-category strings.
        near = pa.array(near_site.astype(np.int32))
        cat_idx = pa.array(cat.astype(np.int32))
        out["site_id"] = pa.DictionaryArray.from_arrays(near, self.site_id)
        out["site_name"] = pa.DictionaryArray.from_arrays(near, self.site_name)
        out["category"] = pa.DictionaryArray.from_arrays(near, self.site_category)
        out["distance_m"] = pa.array(np.round(near_dist, DISTANCE_DECIMALS))
        out["buffer_m"] = pa.DictionaryArray.from_arrays(cat_idx, self.cat_buffer_m)
        out["tier"] = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(len(flagged), np.int32)), pa.array([self.tier])
        )
        out["packs"] = pa.DictionaryArray.from_arrays(cat_idx, self.cat_packs)
        out["clauses"] = pa.DictionaryArray.from_arrays(cat_idx, self.cat_clauses)
        out["n_matches"] = pa.array(fm.count)
        if self.engine.windows is not None:
            out.update(self._windows(fm, res.batch.time_us[flagged]))
        return ScanTables(
            flagged=pa.table(out),
            lon=res.batch.lon[flagged],
            lat=res.batch.lat[flagged],
            match_ptr=fm.ptr,
            match_site=fm.site,
            match_distance_m=np.round(fm.distance_m, DISTANCE_DECIMALS),
            site_ids=self.site_id,
            site_categories=self.site_category,
        )

    WINDOW_FIELDS = (
        "window",
        "window_start_utc",
        "window_end_utc",
        "window_start_local",
        "window_end_local",
    )

    def _windows(self, fm: Matches, time_us: np.ndarray) -> dict[str, pa.Array]:
        """Which window matched (issue #7): the nearest event site of each flagged read.

        Empty strings where a read matched permanent sites only.
        """
        eng = self.engine
        n = len(fm.ptr) - 1
        row = eng.window_row[fm.site]
        pair = np.flatnonzero(row >= 0)
        read = np.repeat(np.arange(n), fm.count)[pair]
        # matches are nearest first, so the first event pair of a read is its nearest event
        read, first = np.unique(read, return_index=True)
        pair = pair[first]
        desc = eng.windows.describe(row[pair], time_us[read])
        out = {"event_site_id": full_object(n, "")}
        out["event_site_id"][read] = eng.fences.site_id[fm.site[pair]]
        for name in self.WINDOW_FIELDS:
            col = full_object(n, "")
            col[read] = desc[name]
            out[name] = col
        return {k: pa.array(v, type=pa.string()) for k, v in out.items()}


def build_engine(
    layers: Sequence[str | os.PathLike] | None = None,
    *,
    sites=None,
    policy=None,
    tier: str = "near",
    distances: Mapping[str, float] | None = None,
    crs: str | None = None,
    limits: Mapping[str, int] | None = None,
    keep_geometry: bool = False,
):
    """Load layers and policy and compile the engine.

    ``keep_geometry`` keeps the sites' geometry in the engine (the camera audit's view).

    Returns
    -------
    engine : Engine
    layer_sources : list of geofence.model.LayerSource
    """
    sites, sources, policy = load_sites(
        layers, sites=sites, policy=policy, tier=tier, distances=distances, crs=crs, limits=limits
    )
    engine = Engine(sites, policy, keep_geometry=keep_geometry)
    del sites
    _release_memory()
    return engine, sources


def load_sites(
    layers: Sequence[str | os.PathLike] | None = None,
    *,
    sites=None,
    policy=None,
    tier: str = "near",
    distances: Mapping[str, float] | None = None,
    crs: str | None = None,
    limits: Mapping[str, int] | None = None,
    example_layer: str = "sample_data/seattle/schools.toml",
):
    """Load and validate layers and policy: what :func:`build_engine` compiles.

    ``example_layer`` is the path the error for missing layers suggests.

    Returns
    -------
    sites : geopandas.GeoDataFrame
    layer_sources : list of geofence.model.LayerSource
    policy : Policy
    """
    from geofence.layers import load_layers
    from geofence.policy import load_policy

    if policy is None or isinstance(policy, (str, list, tuple)):
        names = [policy] if isinstance(policy, str) else (list(policy) if policy else None)
        policy = load_policy(names, tier=tier, overrides=dict(distances or {}))
    sources = []
    if sites is None:
        if not layers:
            raise UsageError(f"no site layers given: pass --layers PATH (e.g. {example_layer})")
        lim = {
            k: v
            for k, v in (limits or {}).items()
            if k in ("max_vertices_per_site", "max_features")
        }
        layer = load_layers(list(layers), crs=crs, **lim)
        sites, sources = layer.sites, layer.sources
    return sites, sources, policy


def _release_memory() -> None:
    """Hand the memory freed after loading layers back to the system (issue #5).

    Loading and compiling 100k sites leaves ~130 MB of freed blocks in Arrow's pool and
    the C heap; returning them keeps the scan's resident size near what it uses.
    """
    import gc

    gc.collect()
    _memory.release()


def iter_reads(
    reads,
    *,
    columns=None,
    timezone=None,
    batch_size=None,
    keep_raw=False,
    limits=None,
    profile=None,
    require_position=True,
):
    """Open ``reads`` (path, ``-``, file object, DataFrame, Arrow table or batches).

    Returns a context manager yielding an iterable of ReadBatch (a ReadStream for files).
    ``profile`` (name, file or :class:`geofence.profiles.Profile`) reads a vendor format
    (issue #8); ``timezone`` ``None`` means the profile's zone, else UTC.
    """
    from geofence import reads as _reads

    kw = {"batch_size": SCAN_BATCH if batch_size is None else batch_size}
    if isinstance(reads, (str, os.PathLike)) or hasattr(reads, "read"):
        if limits and "max_line_bytes" in limits:
            kw["max_line_bytes"] = limits["max_line_bytes"]
        if not require_position:  # a camera table places the reads (issue #10)
            kw["require_position"] = False
        if profile is not None:
            from geofence.profiles import open_profile_reads

            return open_profile_reads(
                reads, profile, columns=columns, timezone=timezone, keep_raw=keep_raw, **kw
            )
        return _reads.open_reads(
            reads, columns=columns, timezone=timezone or "UTC", keep_raw=keep_raw, **kw
        )
    if profile is not None:
        raise UsageError(
            "a profile describes a file format; in-memory tables take columns= instead"
        )
    return contextlib.nullcontext(
        _reads.batches_from_table(reads, columns=columns, timezone=timezone or "UTC", **kw)
    )


def _with_cameras(batches, positions, counts: dict | None = None):
    """Reads without coordinates placed at their camera (``scan --cameras``, issue #10).

    ``positions`` is a :class:`geofence.cameras.CameraPositions` or ``None`` (batches
    unchanged); ``counts["reads_positioned"]`` adds up the reads placed.
    """
    if positions is None:
        return batches
    import pyarrow.compute as pc

    from geofence.cameras import position_reads

    time_column = (getattr(batches, "mapping", None) or {}).get("timestamp")

    def gen():
        for b in batches:
            b = position_reads(b, positions, time_column=time_column)
            if counts is not None:
                placed = (
                    pc.sum(pc.equal(b.columns.column("position_source"), "camera")).as_py() or 0
                )
                counts["reads_positioned"] = counts.get("reads_positioned", 0) + placed
            yield b

    return gen()


def _camera_doc(positions, counts: dict) -> dict:
    return {
        "file": positions.file,
        "sha256": positions.sha256,
        "cameras": len(positions),
        "reads_positioned": counts.get("reads_positioned", 0),
    }


def scan(
    reads,
    layers: Sequence[str | os.PathLike] | None = None,
    *,
    sites=None,
    policy=None,
    tier: str = "near",
    distances: Mapping[str, float] | None = None,
    columns: Mapping[str, str] | None = None,
    timezone: str | None = None,
    batch_size: int | None = None,
    cameras: str | os.PathLike | None = None,
    profile=None,
):
    """Scan reads against site layers and return the flagged reads as a GeoDataFrame.

    Parameters
    ----------
    reads : path, ``"-"``, file object, pandas.DataFrame, pyarrow.Table or RecordBatches
        The read log.
    layers : sequence of paths, optional
        Site layer files (or pass ``sites``, a GeoDataFrame as ``load_layers`` returns).
    policy : Policy, str or list of str, optional
        Pack names/paths or a loaded Policy; default the federal packs.
    tier, distances : optional
        Distance tier and per-category overrides in metres.
    columns, timezone, batch_size : optional
        Reading options (see :func:`geofence.reads.open_reads`); ``timezone`` defaults
        to the profile's, else UTC.
    profile : str, path or Profile, optional
        Format profile of the read log (``uwchr-spd``, ``openalpr-group``, a .toml file;
        issue #8, :mod:`geofence.profiles`).
    cameras : path, optional
        Camera table (``geofence cameras --camera-table``, or a CSV of camera id and
        position): reads with a camera id but no coordinates get the camera's position
        and ``position_source = camera`` (issue #10).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per flagged read, EPSG:4326 points, with the report's properties;
        ``matches`` holds a list of every matching site.

    Examples
    --------
    >>> import geofence
    >>> flagged = geofence.scan("reads.csv", ["schools.geojson"])  # doctest: +SKIP
    """
    import geopandas as gpd

    engine, _ = build_engine(layers, sites=sites, policy=policy, tier=tier, distances=distances)
    lab = Labeller(engine)
    frames = []
    positions = _load_positions(cameras)
    profile, timezone = _resolve_profile(profile, timezone)
    with iter_reads(
        reads,
        columns=columns,
        timezone=timezone,
        batch_size=batch_size,
        profile=profile,
        require_position=positions is None,
    ) as stream:
        for res in scan_batches(_with_cameras(stream, positions), engine):
            t = lab.tables(res)
            df = _decoded(t.flagged).to_pandas()
            ids, cats = t.match_site_id.to_pylist(), t.match_category.to_pylist()
            df["matches"] = [
                [
                    {
                        "site_id": ids[j],
                        "category": cats[j],
                        "distance_m": float(t.match_distance_m[j]),
                    }
                    for j in range(t.match_ptr[i], t.match_ptr[i + 1])
                ]
                for i in range(len(df))
            ]
            frames.append(
                gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(t.lon, t.lat), crs="EPSG:4326")
            )
    if not frames:
        return gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
    import pandas as pd

    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")


def _decoded(table: pa.Table) -> pa.Table:
    """The table with dictionary columns turned back into plain ones."""
    cols = [
        c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns
    ]
    return pa.table(cols, names=table.column_names)


class RejectsWriter:
    """The rejects file: rejected rows as they were, plus a ``reason`` column.

    The header is the input's header plus ``reason``, written once, at the first batch
    of the run. Rows of delimited text keep their bytes; rows of a Parquet input
    (issue #13) are written as CSV of their values. In fragment form (a partition of a
    scale-out scan) the header is kept in ``header`` instead of written, and the final
    file takes the fragments with :meth:`append_fragment`, like the report writers.
    """

    def __init__(self, fh, *, fragment: bool = False) -> None:
        self.fh = fh
        self.fragment = fragment
        self.header: bytes | None = None
        self._started = False

    def write(self, stream, res: ScanResult) -> None:
        """Append the rejected rows of one batch (and the header at the first batch)."""
        from geofence.model import REJECT_REASONS

        b = res.batch
        parquet = b.raw is None and hasattr(stream, "row_bytes")  # a Parquet partition
        if b.raw is None and not parquet:
            raise UsageError("rejects files need a delimited text input")
        delim = b"," if parquet else stream.delimiter.encode()
        term = b"\n" if parquet else stream.line_terminator
        if not self._started:
            head = stream.header.rstrip(b"\r\n") + delim + b"reason" + term
            self._started = True
            if self.fragment:
                self.header = head
            else:
                self.fh.write(head)
        rej = np.flatnonzero(res.reason != 0)
        if len(rej) == 0:
            return
        reasons = np.asarray(REJECT_REASONS, dtype=object)[res.reason[rej]]
        if parquet:  # rows rebuilt as text by the partition; rare, and few per batch
            rows = stream.row_bytes(b, rej)
            self.fh.write(
                b"".join(
                    r + delim + why.encode() + term for r, why in zip(rows, reasons, strict=True)
                )
            )
        else:
            self.fh.write(append_fields(b.raw, b.offsets, rej, [reasons], delim.decode(), term))

    def append_fragment(self, header: bytes | None, size: int, chunks) -> None:
        """Append a partition's fragment (see :meth:`geofence.report.Writer.append_fragment`)."""
        if header is not None and not self._started:
            self.fh.write(header)
            self._started = True
        for chunk in chunks:
            self.fh.write(chunk)


@dataclass
class ScanSetup:
    """What every partition of a scan shares: compiled once per process (issue #13).

    The client builds one for ``local``; each worker process of a scale-out scan builds
    one from the site table the client sends (:mod:`geofence.distributed`).
    """

    engine: Engine
    labeller: Labeller
    positions: object = None  # geofence.cameras.CameraPositions (scan --cameras)
    columns: Mapping[str, str] | None = None
    timezone: str = "UTC"
    batch_size: int | None = None
    limits: Mapping[str, int] | None = None
    profile: object = None  # geofence.profiles.Profile


@dataclass
class PartitionScan:
    """What scanning one partition gave; ``summary`` is complete once its output ran."""

    index: int
    summary: Summary
    input_doc: dict
    reads_positioned: int


OUTPUT_PAIRS = 131_072
"""Most (read, site) matches labelled and written at once. A batch of 64k reads holds
~540k matches at 100k dense sites; labelling and formatting them in one go held ~100 MB
of report text and copies at a time, over the issue's 500 MB (issue #5). At 10k sites a
batch is one piece (~50k matches), so nothing changes there."""


def _output_batch(
    lab: Labeller, res: ScanResult, stream, label, writer, rejects, totals: Summary
) -> None:
    """The output stage of one batch: report rows, rejects, counts (output thread)."""
    if rejects is not None:
        rejects.write(stream, res)
    m = res.matches
    flagged = m.flagged
    totals.add(res.reason, flagged & (res.reason == 0))
    rows = np.flatnonzero(flagged)
    # cut where the running count of matches passes each multiple of OUTPUT_PAIRS
    cuts = np.searchsorted(m.ptr[rows + 1], np.arange(OUTPUT_PAIRS, m.ptr[-1], OUTPUT_PAIRS))
    for part in np.split(rows, np.unique(cuts[(cuts > 0) & (cuts < len(rows))])):
        t = lab.tables(res, source=label, rows=part)
        if writer is not None:
            writer.write(t)
        fl = t.flagged
        totals.add_labels(
            fl.column("category"), fl.column("site_id"), fl.column("agency"), fl.column("camera_id")
        )


def scan_partition(
    part,
    setup: ScanSetup,
    outq: OutputThread,
    *,
    storage_options: Mapping[str, object] | None = None,
    writer=None,
    rejects: RejectsWriter | None = None,
    progress: Callable[[int], None] | None = None,
) -> PartitionScan:
    """Stream one partition of a plan through the scan: the one loop of every engine.

    Matching runs here; the output stage of each batch (report rows, the writers, the
    counts) is queued on ``outq`` and runs in its thread, in order (issue #5). ``local``
    passes the writers of the final files; a scale-out worker passes fragment writers
    (issue #13). The returned summary is complete once ``outq`` has run its tasks.

    Parameters
    ----------
    part : geofence.plan.Partition
    setup : ScanSetup
    outq : OutputThread
    storage_options : mapping, optional
        fsspec options for object-store inputs.
    writer : geofence.report.Writer, optional
    rejects : RejectsWriter, optional
    progress : callable, optional
        Called with the number of reads of every batch matched.
    """
    from geofence.plan import open_partition

    totals = Summary()
    cam: dict = {}
    governor = _memory.Governor()
    with open_partition(
        part,
        storage_options,
        columns=setup.columns,
        timezone=setup.timezone,
        batch_size=setup.batch_size,
        keep_raw=rejects is not None,
        limits=setup.limits,
        profile=setup.profile,
        require_position=setup.positions is None,
    ) as stream:
        sized = setup.batch_size is None and isinstance(stream, ReadStream)
        if sized:  # a small first batch starts the output stage early (FIRST_SPAN_BYTES)
            stream.batch_size = MIN_BATCH
        for res in scan_batches(_with_cameras(stream, setup.positions, cam), setup.engine):
            outq.submit(
                functools.partial(
                    _output_batch, setup.labeller, res, stream, part.label, writer, rejects, totals
                )
            )
            governor.check()
            if sized:
                stream.batch_size = _batch_size(len(res.matches.site), len(res.batch))
            if progress:
                progress(len(res.batch))
        doc = _input_doc(part.input.url, stream)
    return PartitionScan(part.index, totals, doc, cam.get("reads_positioned", 0))


def check_in(part, scan: PartitionScan) -> None:
    """Every read of a partition counted once: ``in = clean + flagged + rejected`` and
    ``in`` = the rows its file gave (the plan's rows for Parquet) (issue #13)."""
    from geofence.errors import GeofenceError

    s = scan.summary
    expect = part.rows if part.rows is not None else scan.input_doc.get("rows")
    if s.reads_clean + s.reads_flagged + s.reads_rejected != s.reads_in or (
        expect is not None and expect != s.reads_in
    ):
        raise GeofenceError(
            f"partition {part.index} ({part.input.name}): counts do not add up ({s.reads_in:,} in, "
            f"{s.reads_clean:,} clean + {s.reads_flagged:,} flagged + {s.reads_rejected:,} rejected, "
            f"{expect} rows read); nothing was written: report this as a bug"
        )


def merge_partitions(plan, scans: Sequence[PartitionScan]) -> tuple[Summary, list[dict], int]:
    """Counts, input documents and cameras' positioned reads of a whole plan.

    Full counters are added before any top-50 cut; a Parquet file cut into partitions
    gets one input document (rows added up, the SHA-256 of the partition that hashed it).
    """
    totals = Summary()
    docs: dict[int, dict] = {}
    positioned = 0
    for part, sc in zip(plan.partitions, scans, strict=True):
        check_in(part, sc)
        totals.merge(sc.summary)
        positioned += sc.reads_positioned
        doc = docs.get(part.input.index)
        if doc is None:
            docs[part.input.index] = dict(sc.input_doc)
        else:  # a further row-group run of the same Parquet file
            doc["rows"] += sc.input_doc["rows"]
            doc["sha256"] = doc["sha256"] or sc.input_doc["sha256"]
    totals.check()
    return totals, [docs[i] for i in sorted(docs)], positioned


def _scan_local(plan, setup: ScanSetup, writer, rejects, progress) -> list[PartitionScan]:
    """``--engine local``: the plan's partitions in order, in this process."""
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done)

    scans = []
    # Matching here, output in a second thread: both cores busy (issue #5).
    with OutputThread() as outq:
        for part in plan.partitions:
            scans.append(
                scan_partition(
                    part,
                    setup,
                    outq,
                    storage_options=plan.storage_options,
                    writer=writer,
                    rejects=rejects,
                    progress=step,
                )
            )
        outq.close()
    return scans


def run_scan(
    reads: Sequence[str | os.PathLike],
    layers: Sequence[str | os.PathLike],
    *,
    policy=None,
    tier: str = "near",
    distances: Mapping[str, float] | None = None,
    crs: str | None = None,
    out: str | os.PathLike | None = None,
    fmt: str = "geojson",
    summary: str | os.PathLike | None = None,
    rejects: str | os.PathLike | None = None,
    columns: Mapping[str, str] | None = None,
    timezone: str | None = None,
    batch_size: int | None = None,
    pseudonymize_key: bytes | None = None,
    deterministic: bool = False,
    progress: Callable[[int], None] | None = None,
    limits: Mapping[str, int] | None = None,
    cameras: str | os.PathLike | None = None,
    profile=None,
    engine: str | None = None,
    jobs: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    staging: str | os.PathLike | None = None,
    storage_options: Mapping[str, object] | None = None,
    retries: int = 2,
    partition_rows: int | None = None,
    on_execution: Callable[[dict], None] | None = None,
) -> dict:
    """Scan read logs and write the report, summary and rejects files.

    Every output is written atomically (complete or absent). Returns the summary
    document (also written to ``summary`` when given).

    Parameters
    ----------
    reads : sequence of paths, globs, URLs or ``"-"``
        Read logs, scanned in the order given (a glob's matches sorted); rows are
        numbered per file. Delimited text (any compression) or Parquet; ``s3://``,
        ``gs://`` ... URLs through fsspec with ``storage_options`` (issue #13).
    layers : sequence of paths
        Site layers.
    out : path or ``"-"``, optional
        Report file; ``fmt`` is one of ``geojson``, ``geojsonseq``, ``csv``.
    summary, rejects : path, optional
        Summary JSON; rejected rows with a ``reason`` column.
    pseudonymize_key : bytes, optional
        Replace plates in the report with HMAC-SHA256 under this key.
    deterministic : bool
        Fix the one run-time field (``generated_at``) so reruns are byte-identical; a
        scale-out run then leaves out its engine, worker and timing facts (they go to
        ``on_execution``).
    progress : callable, optional
        Called with the number of reads done after every batch (every partition for a
        scale-out run).
    cameras : path, optional
        Camera table: reads with a camera id but no coordinates get the camera's
        position and ``position_source = camera`` (issue #10; see :func:`scan`).
    profile : str, path or Profile, optional
        Format profile of every read log (issue #8); ``timezone`` ``None`` means the
        profile's zone, else UTC.
    engine : {"local", "processes", "dask"}, optional
        Where partitions run (issue #13); default ``local``, or what ``jobs``
        (processes) or ``workers``/``scheduler`` (dask) imply. Outputs are byte-identical
        whichever runs them.
    jobs : int, optional
        Worker processes of ``processes`` (default: the CPU count).
    workers : int, optional
        Single-threaded worker processes of a local Dask cluster started for the run.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    staging : path or URL, optional
        Where partitions write their fragments, reachable by every worker; default a
        hidden folder beside ``out``. Removed at the end, whatever happens.
    storage_options : mapping, optional
        fsspec options for URL inputs and staging.
    retries : int
        Retries of a partition after an object-store error (not after bad input).
    partition_rows : int, optional
        Rows per Parquet partition (whole row groups).
    on_execution : callable, optional
        Called with the scale-out run's facts (engine, workers, partitions, times).
    """
    from geofence.plan import DEFAULT_PARTITION_ROWS, plan_scan

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    kind = _engine_kind(engine, jobs, workers, scheduler)
    if kind != "local" and any(str(r) == "-" for r in reads):
        raise UsageError(
            f"standard input (-) can be scanned only with --engine local: {kind} workers cannot read it"
        )
    profile, timezone = _resolve_profile(profile, timezone)
    started = time.perf_counter()
    with contextlib.ExitStack() as run:
        cluster = None
        if kind != "local":
            from geofence.distributed import Cluster

            # a local Dask cluster starts (in a thread) while the layers load
            cluster = run.enter_context(
                Cluster(kind, jobs=jobs, workers=workers, scheduler=scheduler, retries=retries)
            )
        limits_kw = {
            "policy": policy,
            "tier": tier,
            "distances": distances,
            "crs": crs,
            "limits": limits,
        }
        if kind == "local":
            eng, layer_sources = build_engine(layers, **limits_kw)
            sites_pol = None
        else:  # the sites and policy travel to the workers; this engine gives the summary's facts
            sites, layer_sources, pol = load_sites(layers, **limits_kw)
            eng, sites_pol = Engine(sites, pol), (sites, pol)
            del sites
        positions = _load_positions(cameras)
        plan = plan_scan(
            reads,
            storage_options=storage_options,
            partition_rows=partition_rows or DEFAULT_PARTITION_ROWS,
        )
        setup = ScanSetup(
            eng,
            Labeller(eng, PlatePseudonymizer(pseudonymize_key) if pseudonymize_key else None),
            positions,
            columns,
            timezone,
            batch_size,
            limits,
            profile,
        )
        execution = None
        with contextlib.ExitStack() as stack:
            writer = None
            if out is not None:
                credits = sorted({s.attribution for s in layer_sources if s.attribution})
                writer = WRITERS[fmt](
                    stack.enter_context(atomic_output(out, background=True, digest=False)),
                    attribution="; ".join(credits) or None,
                )
                writer.start()
            rej = (
                RejectsWriter(stack.enter_context(atomic_output(rejects, digest=False)))
                if rejects
                else None
            )
            if kind == "local":
                scans = _scan_local(plan, setup, writer, rej, progress)
            else:
                from geofence.distributed import run_partitions

                scans, execution = run_partitions(
                    plan,
                    setup,
                    sites_pol,
                    cluster,
                    fmt=fmt if out is not None else None,
                    writer=writer,
                    rejects=rej,
                    staging=staging,
                    beside=next(
                        (p for p in (out, rejects, summary) if p is not None and str(p) != "-"),
                        None,
                    ),
                    pseudonymize_key=pseudonymize_key,
                    progress=progress,
                )
            totals, inputs, positioned = merge_partitions(plan, scans)
            if writer is not None:
                writer.finish()
            _check_layers_unchanged(layer_sources)
            doc = {
                "tool": {"name": "geofence", "version": __version__},
                "generated_at": "1970-01-01T00:00:00Z" if deterministic else _now(),
                **totals.counts(),
                "inputs": inputs,
                "layers": [
                    {
                        "file": Path(s.path).name,
                        "sha256": s.sha256,
                        "sites": s.sites_loaded,
                        "rejected": len(s.rejected),
                        "repaired": len(s.repaired),
                        **s.credits(),
                    }
                    for s in layer_sources
                ],
                "sites_fenced": eng.n_sites,
                "sites_not_in_policy": dict(sorted(eng.skipped.items())),
                "policy": eng.policy.describe(),
                **(
                    {"cameras": _camera_doc(positions, {"reads_positioned": positioned})}
                    if positions is not None
                    else {}
                ),
                "parameters": {
                    "format": fmt,
                    "timezone": timezone,
                    "columns": dict(sorted((columns or {}).items())),
                    "pseudonymized_plates": bool(pseudonymize_key),
                    "distance": "geodesic on the WGS84 ellipsoid, 0 inside areas; points grown by footprint_m",
                },
            }
            if not deterministic:
                if execution is not None:
                    doc["execution"] = execution
                doc["elapsed_s"] = round(time.perf_counter() - started, 3)
        if execution is not None and on_execution is not None:
            on_execution(execution)
        # the summary describes the other outputs: it is renamed into place after them
        if summary is not None:
            with atomic_output(summary) as fh:
                fh.write(dumps_summary(doc))
        return doc


ENGINES = ("local", "processes", "dask")


def _engine_kind(engine, jobs, workers, scheduler) -> str:
    """The engine asked for, explicitly or by its options (issue #13)."""
    implied = {"processes"} if jobs is not None else set()
    if workers is not None or scheduler is not None:
        implied.add("dask")
    if workers is not None and scheduler is not None:
        raise UsageError(
            "--workers starts a local Dask cluster and --scheduler uses a running one: give one of them"
        )
    if engine is not None and engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if len(implied) > 1 or (engine is not None and implied and implied != {engine}):
        opts = "--jobs goes with --engine processes; --workers and --scheduler with --engine dask"
        raise UsageError(f"options of different engines given together: {opts}")
    for name, n in (("jobs", jobs), ("workers", workers)):
        if n is not None and (not isinstance(n, int) or n < 1):
            raise UsageError(f"--{name} must be a positive number of processes, not {n!r}")
    return engine or (implied.pop() if implied else "local")


def _check_layers_unchanged(layer_sources) -> None:
    """Refuse to finish when a layer file changed after it was loaded (issue #13).

    The scan used the sites as loaded and the summary gives that file's SHA-256; if the
    file now differs, the summary would describe a file nobody can check the report
    against, so no output is renamed into place.
    """
    from geofence.atomic import sha256_file
    from geofence.errors import GeofenceError

    for s in layer_sources:
        path = Path(s.path)
        if not path.is_file():
            continue
        now = sha256_file(path)
        if now != s.sha256:
            raise GeofenceError(
                f"layer {path.name} changed after the scan was planned (sha256 {s.sha256[:12]}… "
                f"is now {now[:12]}…); nothing was written: rerun the scan on the final layer"
            )


def _load_positions(cameras):
    if cameras is None:
        return None
    from geofence.cameras import load_camera_positions

    return load_camera_positions(cameras)


def _resolve_profile(profile, timezone):
    """The loaded format profile (or None) and the effective time zone (issue #8)."""
    if profile is None:
        return None, timezone or "UTC"
    from geofence.profiles import resolve

    return resolve(profile, timezone)


def _input_doc(src, stream) -> dict:
    d = {"file": "<stdin>" if str(src) == "-" else Path(str(src)).name}
    for attr in (
        "sha256",
        "rows",
        "delimiter",
        "timezone",
        "time_format",
        "mapping",
        "notes",
        "profile",
        "parquet",
    ):
        if hasattr(stream, attr):
            d[attr] = getattr(stream, attr)
    return d


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _CallableModule(types.ModuleType):
    """``geofence.scan`` is both this module and the function :func:`scan`.

    Importing a submodule sets the package attribute to the module, so the module itself
    is made callable: ``geofence.scan(reads, layers)`` works however it was imported,
    and ``import geofence`` stays light (no pandas or pyarrow until needed).
    """

    def __call__(self, *args, **kwargs):
        return scan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
