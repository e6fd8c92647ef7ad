"""The one matching engine that scan, filter, verify and the audits all call.

``Engine.match(lon, lat)`` answers, for arrays of read positions, every site whose fence
holds the read, with the exact geodesic distance on the WGS84 ellipsoid (0 inside an
area). The pipeline per batch, whole arrays at every step:

1. distinct positions only (fixed cameras repeat theirs; issue #5), those matched in an
   earlier batch taken from the repeat cache, the rest in grid-cell order,
2. grid candidates (:mod:`geofence.index`),
3. each candidate in its piece's tangent plane (:mod:`geofence.geodesy`), dropped when
   farther from the origin than the piece can reach, else measured to the point or to
   the nearest edge (0 inside an area): one compiled pass (:mod:`geofence._kernels`),
4. the minimum over a site's pieces, sorted by distance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from geofence import _kernels as K
from geofence.fences import Fences, compile_fences
from geofence.geodesy import ecef
from geofence.index import GridIndex
from geofence.model import NO_TIME, Policy


@dataclass
class Matches:
    """Matches of a batch of reads in compressed-row form.

    Read ``i`` matches sites ``site[ptr[i]:ptr[i+1]]`` at ``distance_m[ptr[i]:ptr[i+1]]``,
    nearest first (ties by site order).
    """

    ptr: np.ndarray
    site: np.ndarray
    distance_m: np.ndarray
    untimed: np.ndarray | None = None  # reads near an event fence without a time (#7)

    @property
    def count(self) -> np.ndarray:
        """Number of matching sites per read."""
        return np.diff(self.ptr)

    @property
    def flagged(self) -> np.ndarray:
        """True where a read matches at least one site."""
        return self.ptr[1:] > self.ptr[:-1]

    def nearest(self) -> tuple[np.ndarray, np.ndarray]:
        """Nearest site and its distance for every flagged read (in read order)."""
        first = self.ptr[:-1][self.flagged]
        return self.site[first], self.distance_m[first]

    def take(self, reads: np.ndarray) -> Matches:
        """The matches of ``reads`` (an index array), in that order."""
        cnt = self.count[reads]
        ptr = np.zeros(len(reads) + 1, np.int64)
        np.cumsum(cnt, out=ptr[1:])
        src = np.repeat(self.ptr[reads], cnt) + np.arange(ptr[-1]) - np.repeat(ptr[:-1], cnt)
        return Matches(ptr, self.site[src], self.distance_m[src])


def _empty_matches(n: int) -> Matches:
    return Matches(np.zeros(n + 1, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))


def _merge_rows(n: int, rows_a: np.ndarray, a: Matches, rows_b: np.ndarray, b: Matches) -> Matches:
    """Matches of ``n`` rows: row ``rows_a[i]`` gets ``a``'s row ``i``, ``rows_b[j]`` gets
    ``b``'s row ``j`` (the two index arrays together name every row once)."""
    cnt = np.empty(n, np.int64)
    cnt[rows_a] = a.count
    cnt[rows_b] = b.count
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(cnt, out=ptr[1:])
    site = np.empty(ptr[-1], np.int64)
    dist = np.empty(ptr[-1], np.float64)
    for rows, m in ((rows_a, a), (rows_b, b)):
        dst = np.repeat(ptr[rows] - m.ptr[:-1], m.count) + np.arange(len(m.site))
        site[dst] = m.site
        dist[dst] = m.distance_m
    return Matches(ptr, site, dist)


REPEAT_CACHE_PAIRS = 1 << 19
"""Most (position, site) matches the engine keeps for repeated positions (~8 MB); when
full it starts over, so a log whose cameras change over time keeps the current ones.
2M pairs raised the 100k-site scan's peak by ~100 MB (rebuild copies) for no speed."""

REPEAT_ADMIT = 3
"""Reads at one position in one batch that make it cached. In the benchmark's log (16k-read
batches), 2 cached 51k positions per 1M reads (patrol cars standing still) for 37 % hits,
3 cached 12k for 35 %, 4 cached 4k for 32 %."""


class _RepeatCache:
    """Matches of positions that repeat, kept across batches (issue #5).

    Fixed cameras give most reads of a log at a few thousand positions, and each batch
    matched them again: in the benchmark's log, 35 % of the distinct positions of a
    16k-read batch (100k sites) had been read :data:`REPEAT_ADMIT` times in one earlier
    batch. A position's matches do not depend on the other positions of its batch, so a
    cached row is the row the engine would compute. Such positions are added; new rows
    are folded into the lookup table in bulk, once a quarter more (at least
    :attr:`MIN_REBUILD`) wait, so patrol cars' one-off positions cost nothing. Readers
    take one snapshot of the state, so concurrent ``match`` calls (``geofence serve``)
    need no lock to read.
    """

    MIN_REBUILD = 32
    """Fewest waiting positions that rebuild the table (a hash table per rebuild)."""

    def __init__(self, max_pairs: int = REPEAT_CACHE_PAIRS) -> None:
        self.max_pairs = max_pairs
        self._lock = threading.Lock()
        self.state: tuple[K.PositionTable | None, Matches] = (None, _empty_matches(0))
        self._waiting: list[tuple[np.ndarray, np.ndarray, Matches]] = []

    def lookup(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, Matches]:
        """Cached row of each position (-1 where none) and the matches those rows index."""
        table, cached = self.state
        if table is None:
            return np.full(len(lon), -1, np.int64), cached
        return table.lookup(lon, lat), cached

    def add(self, lon: np.ndarray, lat: np.ndarray, rows: Matches) -> None:
        """Keep the matches of positions ``(lon[i], lat[i])`` (not cached yet)."""
        if len(lon) == 0:
            return
        with self._lock:
            self._waiting.append((lon, lat, rows))
            table, cached = self.state
            held = 0 if table is None else len(table)
            waiting = sum(len(w[0]) for w in self._waiting)
            if waiting < max(self.MIN_REBUILD, held // 4):  # amortised: O(1) per position
                return
            parts = [] if table is None else [(table.x[table.first], table.y[table.first], cached)]
            parts += self._waiting
            self._waiting = []
            every = [p[2] for p in parts]
            if sum(len(r.site) for r in every) > self.max_pairs:
                self.state = (None, _empty_matches(0))
                return
            ptr = np.concatenate(
                [[0], np.cumsum(np.concatenate([np.diff(r.ptr) for r in every]))]
            ).astype(np.int64)
            rows = Matches(
                ptr,
                np.concatenate([r.site for r in every]),
                np.concatenate([r.distance_m for r in every]),
            )
            # a position added by two batches before a rebuild is kept once: row = code
            table = K.PositionTable(
                np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            )
            self.state = (table, rows.take(table.first))


class Engine:
    """Sites under a policy, compiled once, queried with whole arrays of reads.

    Parameters
    ----------
    sites : geopandas.GeoDataFrame
        Sites as :func:`geofence.layers.load_layers` returns them.
    policy : Policy
        Categories, distances and footprints.
    keep_geometry : bool, default False
        Keep the sites' geometry for :meth:`geofence.fences.Fences.planar`.
    """

    def __init__(self, sites, policy: Policy, *, keep_geometry: bool = False) -> None:
        self.policy = policy
        self.fences, self.skipped = compile_fences(sites, policy, keep_geometry=keep_geometry)
        f = self.fences
        # farthest a read can be from a piece's plane origin and still be in its fence
        self.reach_m = f.limit_m + f.footprint_m + f.radius_m
        self._table = _piece_table(f, self.reach_m)
        # sites cut into pieces, or multi-part: a read near two pieces keeps the nearer
        self.multi_site = np.bincount(f.site, minlength=f.n_sites) > 1
        if not self.multi_site.any():
            self.multi_site = None
        temporal = np.array(
            [policy.categories[c].temporal == "event" for c in f.categories], dtype=bool
        )
        event_site = temporal[f.site_cat_code] if f.n_sites else np.zeros(0, bool)
        # Permanent fences go to the grid; event fences to an rtree over space and time
        # (issue #7) so that events can be added or removed without rebuilding.
        self.index = GridIndex(f, piece_mask=~event_site[f.site])
        self._repeats = _RepeatCache()
        self.windows = None
        self.events = None
        self.event_sites = np.flatnonzero(event_site)
        if len(self.event_sites):
            from geofence.events import EventIndex, EventWindows

            covered = sites[sites["category"].astype(str).isin(list(policy.categories))]
            self.windows = EventWindows.from_sites(covered.iloc[self.event_sites], policy)
            self.window_row = np.full(f.n_sites, -1, np.int64)
            self.window_row[self.event_sites] = np.arange(len(self.event_sites))
            lo, hi = self.windows.span_us()
            self.events = EventIndex()
            for b, piece in zip(f.bounds.tolist(), f.box_piece.tolist(), strict=True):
                row = self.window_row[f.site[piece]]
                if row >= 0:
                    self.events.insert(piece, tuple(b), int(lo[row]), int(hi[row]))

    @property
    def n_sites(self) -> int:
        """Number of fenced sites."""
        return self.fences.n_sites

    def match(self, lon: np.ndarray, lat: np.ndarray, time_us: np.ndarray | None = None) -> Matches:
        """Every fenced site within its distance of each read, with exact distances.

        Parameters
        ----------
        lon, lat : numpy.ndarray
            Read positions in degrees, finite and in range (rejects are removed first).
        time_us : numpy.ndarray, optional
            UTC epoch microseconds (``NO_TIME`` where unknown), for time-bound fences.

        Returns
        -------
        Matches
        """
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        n = len(lon)
        if n == 0 or len(self.fences) == 0:
            return _empty_matches(n)
        # Distinct positions: fixed cameras give many reads at one coordinate (issue #5).
        # A hash factorisation is O(n); those matched in an earlier batch come from the
        # cache of repeated positions.
        positions = K.PositionTable(lon, lat)
        inv = positions.codes
        ulon, ulat = lon[positions.first], lat[positions.first]
        row, cached = self._repeats.lookup(ulon, ulat)
        miss = np.flatnonzero(row < 0)
        order, computed = self._match_positions(ulon[miss], ulat[miss])
        if len(miss) == len(ulon):
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            m = computed.take(rank[inv])
        else:
            hit = np.flatnonzero(row >= 0)
            distinct = _merge_rows(len(ulon), hit, cached.take(row[hit]), miss[order], computed)
            m = distinct.take(inv)
        # positions read several times in this batch are likely to come again
        seen = np.bincount(inv, minlength=len(ulon))[miss[order]]
        again = np.flatnonzero(seen >= REPEAT_ADMIT)
        pos = miss[order[again]]
        self._repeats.add(ulon[pos], ulat[pos], computed.take(again))
        if self.events is None:
            return m
        return self._with_events(m, lon, lat, time_us)

    def _with_events(self, m: Matches, lon, lat, time_us) -> Matches:
        """Add the matches of event fences active at each read's time (issue #7)."""
        n = len(lon)
        if time_us is None:
            time_us = np.full(n, NO_TIME, np.int64)
        read, piece = self.events.query(lon, lat, time_us)
        read, site, dist = self._exact(lon, lat, read, piece)
        untimed = np.zeros(n, bool)
        if len(read):
            t = time_us[read]
            timed = t != NO_TIME
            untimed[read[~timed]] = True
            ok = np.zeros(len(read), bool)
            ok[timed] = self.windows.active(self.window_row[site[timed]], t[timed])
            read, site, dist = read[ok], site[ok], dist[ok]
        base = np.repeat(np.arange(n), m.count)
        out = _to_matches(
            n,
            np.concatenate([base, read]),
            np.concatenate([m.site, site]),
            np.concatenate([m.distance_m, dist]),
            multi_site=self.multi_site,
        )
        out.untimed = untimed
        return out

    def _exact(self, lon, lat, read, piece):
        """Exact distances of candidate pairs; keep those within their fence.

        One compiled pass over the pairs (:func:`geofence._kernels.exact_pairs`): the
        numpy version made ~20 temporaries per point-to-edge term and took 3x as long
        at 100k sites: 1.5 s against 0.45 s per 1M reads (issue #5).
        """
        if len(read) == 0:
            e = np.empty(0, np.int64)
            return e, e, np.empty(0)
        x, y, z = ecef(lon, lat)
        k, dist = K.exact_pairs(read, piece, x, y, z, self._table, self.fences.segments.edge)
        return read[k], self.fences.site[piece[k]], dist

    def _match_positions(self, ulon: np.ndarray, ulat: np.ndarray) -> tuple[np.ndarray, Matches]:
        """Matches of distinct positions: row ``i`` is position ``order[i]``.

        They are visited cell by cell: neighbours share candidate pieces and edges, which
        then stay in the CPU cache (exact test 1.2x faster at 100k sites).
        """
        order = self.index.cell_order(ulon, ulat)
        return order, self._match_distinct(ulon[order], ulat[order])

    def _match_distinct(self, lon: np.ndarray, lat: np.ndarray) -> Matches:
        read, piece = self.index.candidates(lon, lat)
        read, site, dist = self._exact(lon, lat, read, piece)
        return _to_matches(len(lon), read, site, dist, multi_site=self.multi_site)


def _piece_table(f: Fences, reach_m: np.ndarray) -> np.ndarray:
    """One row per piece with what :func:`geofence._kernels.exact_pairs` reads."""
    fr, sg = f.frames, f.segments
    cols = {
        K.X0: fr.x0, K.Y0: fr.y0, K.Z0: fr.z0,
        K.SLON: fr.slon, K.CLON: fr.clon, K.SLAT: fr.slat, K.CLAT: fr.clat,
        K.REACH: reach_m, K.FOOT: f.footprint_m, K.LIMIT: f.limit_m,
        K.LO: sg.ptr[:-1], K.HI: sg.ptr[1:],
        K.BX0: sg.box[:, 0], K.BY0: sg.box[:, 1], K.BX1: sg.box[:, 2], K.BY1: sg.box[:, 3],
    }  # fmt: skip
    table = np.empty((len(f), K.PIECE_COLUMNS))
    for col, values in cols.items():
        table[:, col] = values
    # the kernel takes a piece without edges for a point
    if not np.array_equal(sg.ptr[:-1] == sg.ptr[1:], f.is_point):
        raise AssertionError("an area or line piece without edges")
    return table


def _to_matches(n, read, site, dist, *, multi_site: np.ndarray | None) -> Matches:
    """Compressed rows of (read, site, distance) pairs: one per site, nearest first.

    ``multi_site[s]`` is True for sites made of several pieces: a read near two of them
    keeps the nearer. Equal distances keep the candidates' order (piece order), which
    does not depend on the batching.
    """
    # Candidates come grouped by read (ascending), so each read's few sites are sorted
    # and a cut site's farther pieces dropped in one compiled pass (issue #5: the
    # lexsort and the global stable sort it replaced took 0.36 s per 1M reads at 100k
    # sites). Equal distances keep the candidates' order (piece order), which does not
    # depend on the batching.
    runs = None
    if len(read) and not (read[1:] < read[:-1]).any():
        runs = K.sort_runs(read, dist, site)
    if runs is not None:
        read, dist, site = runs
    elif len(read):  # pieces checked against every read, or a read near very many sites
        o = np.lexsort((dist, read))
        read, site, dist = read[o], site[o], dist[o]
        if multi_site is not None:
            pair = read * (int(site.max()) + 1) + site
            _, first = np.unique(pair, return_index=True)  # first = nearest, then earliest
            keep = np.sort(first)
            read, site, dist = read[keep], site[keep], dist[keep]
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(read, minlength=n), out=ptr[1:])
    return Matches(ptr, site, dist)


__all__ = ["Engine", "Fences", "Matches"]
