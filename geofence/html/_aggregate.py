"""Aggregates of reports with more flagged reads than the page draws one by one (issue #9).

Above ``max_points`` the page shows a density grid and per-site totals instead of dots. Both
are accumulated block by block, so memory depends on the number of grid cells, sites,
cameras, agencies and days, never on the number of reads.

The grid is the Web Mercator pixel grid Leaflet draws in: at level ``g`` the world is
``2**g`` cells across (level 19: 76 m at the equator, 60 m in San Francisco). Cells are
counted per category, so the page's category filter still works on the grid. The finest
level is coarsened while the grid would exceed ``MAX_CELLS``; the page gets that level and
two coarser ones (4 and 16 times the cell size) for lower zooms.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geofence.html._encode import ints, uints

FINEST_LEVEL = 19
MAX_CELLS = 2_000_000
"""Distinct (cell, category) pairs kept while reading; beyond, the grid is coarsened."""

PAGE_CELLS = 200_000
"""Distinct (cell, category) pairs of the finest level embedded (about 2.5 MB of page)."""

LEVEL_STEP = 2
"""Levels embedded are ``g``, ``g - 2`` and ``g - 4``: cells 4 and 16 times wider."""

TOP_N = 20
"""Agencies, cameras and sites listed in the charts."""

MAX_LAT = 85.0511287798  # Web Mercator's limit (EPSG:3857)


def mercator_cells(lon: np.ndarray, lat: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row of the level-``level`` Web Mercator cell of each point."""
    n = float(1 << level)
    x = (lon + 180.0) / 360.0
    phi = np.radians(np.clip(lat, -MAX_LAT, MAX_LAT))
    y = (1.0 - np.log(np.tan(phi) + 1.0 / np.cos(phi)) / np.pi) / 2.0
    cx = np.clip(np.floor(x * n), 0, n - 1).astype(np.int64)
    cy = np.clip(np.floor(y * n), 0, n - 1).astype(np.int64)
    return cx, cy


def _merge(
    keys: np.ndarray, counts: np.ndarray, new_keys: np.ndarray, new_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sum two sparse count vectors (sorted unique keys)."""
    allk = np.concatenate([keys, new_keys])
    allc = np.concatenate([counts, new_counts])
    u, inv = np.unique(allk, return_inverse=True)
    return u, np.bincount(inv, weights=allc, minlength=len(u)).astype(np.int64)


class Aggregator:
    """Counts of flagged reads by grid cell, site, time, agency and camera, per category.

    Parameters
    ----------
    n_categories : int
        Category codes are ``0 .. n_categories - 1``.
    n_sites : int
        Site codes are ``0 .. n_sites - 1``.
    """

    def __init__(self, n_categories: int, n_sites: int) -> None:
        self.n_cat = n_categories
        self.level = FINEST_LEVEL
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)
        self.site_count = np.zeros(n_sites, np.int64)
        self.site_min_m = np.full(n_sites, np.inf)
        self.weekhour = np.zeros((n_categories, 7 * 24), np.int64)
        self.untimed = np.zeros(n_categories, np.int64)
        self.days: Counter = Counter()
        self.agency: Counter = Counter()
        self.camera: Counter = Counter()

    def _key(self, cx: np.ndarray, cy: np.ndarray, cat: np.ndarray) -> np.ndarray:
        # (cx, cy, category) in one int64: 20 + 20 bits of cell, category above
        return (cx << 20 | cy) * 64 + cat

    def add(
        self, lon, lat, cat, site, distance_m, local_s, agency: pa.Array, camera: pa.Array
    ) -> None:
        """Count one block (numpy arrays; ``local_s`` local epoch seconds, NaN/None-free int64 with a mask below)."""
        cx, cy = mercator_cells(lon, lat, self.level)
        k, c = np.unique(self._key(cx, cy, cat), return_counts=True)
        self.keys, self.counts = _merge(self.keys, self.counts, k, c)
        while len(self.keys) > MAX_CELLS and self.level > 0:
            self._coarsen()
        np.add.at(self.site_count, site, 1)
        np.minimum.at(self.site_min_m, site, distance_m)
        timed, secs = local_s
        t = secs[timed]
        tc = cat[timed]
        day = np.floor_divide(t, 86_400)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        hour = np.floor_divide(t - day * 86_400, 3_600)
        np.add.at(self.weekhour, (tc, weekday * 24 + hour), 1)
        np.add.at(self.untimed, cat[~timed], 1)
        if len(day):
            u, cnt = np.unique(day * 64 + tc, return_counts=True)
            for key, v in zip(u.tolist(), cnt.tolist(), strict=True):
                self.days[key] += v
        for counter, values in ((self.agency, agency), (self.camera, camera)):
            enc = pc.dictionary_encode(pc.fill_null(values.cast(pa.string()), "(none)"))
            if isinstance(enc, pa.ChunkedArray):
                enc = enc.combine_chunks()
            codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            u, cnt = np.unique(codes * 64 + cat, return_counts=True)
            names = enc.dictionary.to_pylist()
            for key, v in zip(u.tolist(), cnt.tolist(), strict=True):
                counter[(names[key // 64], key % 64)] += v

    def _coarsen(self) -> None:
        cell, cat = self.keys // 64, self.keys % 64
        cx, cy = cell >> 20, cell & ((1 << 20) - 1)
        self.level -= 1
        k = self._key(cx >> 1, cy >> 1, cat)
        u, inv = np.unique(k, return_inverse=True)
        self.keys, self.counts = (
            u,
            np.bincount(inv, weights=self.counts, minlength=len(u)).astype(np.int64),
        )

    def grid_levels(self) -> list[dict]:
        """The embedded levels, finest last, each sorted by cell then category."""
        while len(self.keys) > PAGE_CELLS and self.level > 0:
            self._coarsen()
        levels = []
        keys, counts, level = self.keys, self.counts, self.level
        for step in range(3):
            if step:
                cell, cat = keys // 64, keys % 64
                cx, cy = cell >> 20, cell & ((1 << 20) - 1)
                k = ((cx >> LEVEL_STEP) << 20 | (cy >> LEVEL_STEP)) * 64 + cat
                keys, inv = np.unique(k, return_inverse=True)
                counts = np.bincount(inv, weights=counts, minlength=len(keys)).astype(np.int64)
                level -= LEVEL_STEP
                if level < 0:
                    break
            cell, cat = keys // 64, keys % 64
            cx, cy = cell >> 20, cell & ((1 << 20) - 1)
            levels.append(
                {
                    "g": int(level),
                    "x": ints(cx),
                    "y": ints(cy),
                    "cat": uints(cat),
                    "n": ints(counts),
                }
            )
        return levels[::-1]

    def charts(self, top: int = TOP_N) -> dict:
        """Chart data per category: week-hour matrix, days, top agencies and cameras."""
        days = sorted({k // 64 for k in self.days})
        day_counts = np.zeros((self.n_cat, len(days)), np.int64)
        pos = {d: i for i, d in enumerate(days)}
        for key, v in self.days.items():
            day_counts[key % 64, pos[key // 64]] = v
        return {
            "weekhour": [ints(row) for row in self.weekhour],
            "untimed": self.untimed.tolist(),
            "days": days,
            "day_counts": [ints(row) for row in day_counts],
            "agency": _top_by_category(self.agency, self.n_cat, top),
            "camera": _top_by_category(self.camera, self.n_cat, top),
        }


def _top_by_category(counter: Counter, n_cat: int, top: int) -> dict:
    """Labels with per-category counts: the ``top`` largest overall, plus every category's own top."""
    total: Counter = Counter()
    for (label, _), v in counter.items():
        total[label] += v
    per_cat: dict[int, Counter] = {}
    for (label, cat), v in counter.items():
        per_cat.setdefault(cat, Counter())[label] += v
    keep = {lab for lab, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:top]}
    for c in per_cat.values():
        keep |= {lab for lab, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:top]}
    labels = sorted(keep)
    matrix = np.zeros((n_cat, len(labels)), np.int64)
    index = {lab: i for i, lab in enumerate(labels)}
    for (label, cat), v in counter.items():
        if label in index:
            matrix[cat, index[label]] = v
    return {"labels": labels, "counts": [ints(row) for row in matrix], "distinct": len(total)}
