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
import os
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from geofence._version import __version__
from geofence.atomic import atomic_output
from geofence.engine import Engine, Matches
from geofence.errors import UsageError
from geofence.model import REASON_CODE, ReadBatch
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

STATUS_CLEAN, STATUS_FLAGGED, STATUS_REJECTED = 0, 1, 2


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
        self.cat_buffer = np.array([r.buffer_m for r in rules])
        self.cat_packs = pa.array([";".join(r.packs) for r in rules], type=pa.string())
        self.cat_clauses = pa.array([";".join(f"{c.pack}:{c.clause_id}" for c in r.clauses) for r in rules], type=pa.string())
        self.site_cat = f.site_cat_code
        self.tier = pol.tier

    def tables(self, res: ScanResult, source: str | None = None) -> ScanTables:
        """Build the report rows of the flagged reads of one batch."""
        m = res.matches
        flagged = np.flatnonzero(m.flagged)
        fm = m.take(flagged)
        near_site, near_dist = fm.nearest()
        cat = self.site_cat[near_site]
        cols = res.batch.columns
        fl = pa.array(flagged)
        out = {"row": pa.array(res.batch.row[flagged])}
        if source is not None:
            out["source"] = pa.array([source] * len(flagged), type=pa.string())
        for name in READ_FIELDS:
            col = cols.column(name).take(fl) if name in cols.column_names else pa.nulls(len(flagged), pa.string())
            if name == "plate" and self.pseudonymizer is not None:
                col = self.pseudonymizer(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
            out[name] = col
        # Dictionary arrays: zero-copy views of the per-site and per-category strings.
        near = pa.array(near_site.astype(np.int32))
        cat_idx = pa.array(cat.astype(np.int32))
        out["site_id"] = pa.DictionaryArray.from_arrays(near, self.site_id)
        out["site_name"] = pa.DictionaryArray.from_arrays(near, self.site_name)
        out["category"] = pa.DictionaryArray.from_arrays(near, self.site_category)
        out["distance_m"] = pa.array(np.round(near_dist, DISTANCE_DECIMALS))
        out["buffer_m"] = pa.array(self.cat_buffer[cat])
        out["tier"] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(flagged), np.int32)), pa.array([self.tier]))
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
            match_site_id=self.site_id.take(pa.array(fm.site)),
            match_category=self.site_category.take(pa.array(fm.site)),
            match_distance_m=np.round(fm.distance_m, DISTANCE_DECIMALS),
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
        out = {"event_site_id": np.full(n, "", dtype=object)}
        out["event_site_id"][read] = eng.fences.site_id[fm.site[pair]]
        for name in self.WINDOW_FIELDS:
            col = np.full(n, "", dtype=object)
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
):
    """Load layers and policy and compile the engine.

    Returns
    -------
    engine : Engine
    layer_sources : list of geofence.model.LayerSource
    """
    from geofence.layers import load_layers
    from geofence.policy import load_policy

    if policy is None or isinstance(policy, (str, list, tuple)):
        names = [policy] if isinstance(policy, str) else (list(policy) if policy else None)
        policy = load_policy(names, tier=tier, overrides=dict(distances or {}))
    sources = []
    if sites is None:
        if not layers:
            raise UsageError("no site layers given: pass --layers PATH (e.g. sample_data/seattle/schools.toml)")
        lim = {k: v for k, v in (limits or {}).items() if k in ("max_vertices_per_site", "max_features")}
        layer = load_layers(list(layers), crs=crs, **lim)
        sites, sources = layer.sites, layer.sources
    return Engine(sites, policy), sources


def iter_reads(reads, *, columns=None, timezone="UTC", batch_size=None, keep_raw=False, limits=None):
    """Open ``reads`` (path, ``-``, file object, DataFrame, Arrow table or batches).

    Returns a context manager yielding an iterable of ReadBatch (a ReadStream for files).
    """
    from geofence import reads as _reads

    kw = {} if batch_size is None else {"batch_size": batch_size}
    if isinstance(reads, (str, os.PathLike)) or hasattr(reads, "read"):
        if limits and "max_line_bytes" in limits:
            kw["max_line_bytes"] = limits["max_line_bytes"]
        return _reads.open_reads(reads, columns=columns, timezone=timezone, keep_raw=keep_raw, **kw)
    return contextlib.nullcontext(_reads.batches_from_table(reads, columns=columns, timezone=timezone, **kw))


def scan(
    reads,
    layers: Sequence[str | os.PathLike] | None = None,
    *,
    sites=None,
    policy=None,
    tier: str = "near",
    distances: Mapping[str, float] | None = None,
    columns: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    batch_size: int | None = None,
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
        Reading options (see :func:`geofence.reads.open_reads`).

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
    with iter_reads(reads, columns=columns, timezone=timezone, batch_size=batch_size) as stream:
        for res in scan_batches(stream, engine):
            t = lab.tables(res)
            df = _decoded(t.flagged).to_pandas()
            ids, cats = t.match_site_id.to_pylist(), t.match_category.to_pylist()
            df["matches"] = [
                [
                    {"site_id": ids[j], "category": cats[j], "distance_m": float(t.match_distance_m[j])}
                    for j in range(t.match_ptr[i], t.match_ptr[i + 1])
                ]
                for i in range(len(df))
            ]
            frames.append(gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(t.lon, t.lat), crs="EPSG:4326"))
    if not frames:
        return gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
    import pandas as pd

    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")


def _decoded(table: pa.Table) -> pa.Table:
    """The table with dictionary columns turned back into plain ones."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names)


def write_rejects_rows(fh, stream, res: ScanResult, header_written: list) -> None:
    """Append the rejected rows of a batch, as they were, plus a ``reason`` column."""
    from geofence.model import REJECT_REASONS

    rej = np.flatnonzero(res.reason != 0)
    b = res.batch
    if b.raw is None:
        raise UsageError("rejects files need a delimited text input")
    delim = stream.delimiter.encode()
    term = stream.line_terminator
    if not header_written:
        fh.write(stream.header.rstrip(b"\r\n") + delim + b"reason" + term)
        header_written.append(True)
    if len(rej) == 0:
        return
    raw = b.raw
    off = b.offsets
    parts = []
    for i, code in zip(rej.tolist(), res.reason[rej].tolist(), strict=True):
        parts.append(raw[off[i] : off[i + 1]].rstrip(b"\r\n") + delim + REJECT_REASONS[code].encode() + term)
    fh.write(b"".join(parts))


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
    timezone: str = "UTC",
    batch_size: int | None = None,
    pseudonymize_key: bytes | None = None,
    deterministic: bool = False,
    progress: Callable[[int], None] | None = None,
    limits: Mapping[str, int] | None = None,
) -> dict:
    """Scan read logs and write the report, summary and rejects files.

    Every output is written atomically (complete or absent). Returns the summary
    document (also written to ``summary`` when given).

    Parameters
    ----------
    reads : sequence of paths or ``"-"``
        Read logs, scanned in the order given; rows are numbered per file.
    layers : sequence of paths
        Site layers.
    out : path or ``"-"``, optional
        Report file; ``fmt`` is one of ``geojson``, ``geojsonseq``, ``csv``.
    summary, rejects : path, optional
        Summary JSON; rejected rows with a ``reason`` column.
    pseudonymize_key : bytes, optional
        Replace plates in the report with HMAC-SHA256 under this key.
    deterministic : bool
        Fix the one run-time field (``generated_at``) so reruns are byte-identical.
    progress : callable, optional
        Called with the number of reads done after every batch.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    started = time.perf_counter()
    engine, layer_sources = build_engine(layers, policy=policy, tier=tier, distances=distances, crs=crs, limits=limits)
    lab = Labeller(engine, PlatePseudonymizer(pseudonymize_key) if pseudonymize_key else None)
    totals = Summary()
    inputs = []
    with contextlib.ExitStack() as stack:
        writer = None
        if out is not None:
            writer = WRITERS[fmt](stack.enter_context(atomic_output(out)))
            writer.start()
        rej_fh = stack.enter_context(atomic_output(rejects)) if rejects else None
        rej_header: list = []
        done = 0
        for src in reads:
            with iter_reads(src, columns=columns, timezone=timezone, batch_size=batch_size, keep_raw=rej_fh is not None, limits=limits) as stream:
                label = str(src) if len(reads) > 1 else None
                for res in scan_batches(stream, engine):
                    t = lab.tables(res, source=label)
                    if writer is not None:
                        writer.write(t)
                    if rej_fh is not None:
                        write_rejects_rows(rej_fh, stream, res, rej_header)
                    fl = t.flagged
                    totals.add(
                        res.reason,
                        res.matches.flagged & (res.reason == 0),
                        fl.column("category"),
                        fl.column("site_id"),
                        fl.column("agency"),
                        fl.column("camera_id"),
                    )
                    done += len(res.batch)
                    if progress:
                        progress(done)
                inputs.append(_input_doc(src, stream))
        if writer is not None:
            writer.finish()
        doc = {
            "tool": {"name": "geofence", "version": __version__},
            "generated_at": "1970-01-01T00:00:00Z" if deterministic else _now(),
            **totals.counts(),
            "inputs": inputs,
            "layers": [
                {"file": Path(s.path).name, "sha256": s.sha256, "sites": s.sites_loaded, "rejected": len(s.rejected), "repaired": len(s.repaired)}
                for s in layer_sources
            ],
            "sites_fenced": engine.n_sites,
            "sites_not_in_policy": dict(sorted(engine.skipped.items())),
            "policy": engine.policy.describe(),
            "parameters": {
                "format": fmt,
                "timezone": timezone,
                "columns": dict(sorted((columns or {}).items())),
                "pseudonymized_plates": bool(pseudonymize_key),
                "distance": "geodesic on the WGS84 ellipsoid, 0 inside areas; points grown by footprint_m",
            },
        }
        if not deterministic:
            doc["elapsed_s"] = round(time.perf_counter() - started, 3)
    # the summary describes the other outputs: it is renamed into place after them
    if summary is not None:
        with atomic_output(summary) as fh:
            fh.write(dumps_summary(doc))
    return doc


def _input_doc(src, stream) -> dict:
    d = {"file": "<stdin>" if str(src) == "-" else Path(str(src)).name}
    for attr in ("sha256", "rows", "delimiter", "timezone", "time_format", "mapping", "notes"):
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
