"""numpy face of the compiled loops in ``_kernels.c`` (issue #5).

The C functions take raw pointers; every array is made contiguous and of the exact
dtype here, before the call, so a wrong type can never reach C. ctypes releases the GIL
for the length of a call. Why C and not numba: numba measured the same speed but added
119 MB of resident LLVM and 0.6 s to every start, against a 500 MB budget (issue #5).
"""

from __future__ import annotations

import ctypes
import importlib.util

import numpy as np

# Columns of the per-piece table of :func:`exact_pairs` (enum in _kernels.c).
X0, Y0, Z0, SLON, CLON, SLAT, CLAT, REACH, FOOT, LIMIT, LO, HI, BX0, BY0, BX1, BY1 = range(16)
PIECE_COLUMNS = 16

_P = ctypes.c_void_p
_I = ctypes.c_int64


def _load() -> ctypes.CDLL:
    spec = importlib.util.find_spec("geofence._ckernels")
    if spec is None or spec.origin is None:
        raise ImportError(
            "geofence._ckernels is not built; reinstall with `pip install -e .` (needs a C compiler)"
        )
    lib = ctypes.CDLL(spec.origin)
    lib.gf_exact_pairs.restype = _I
    lib.gf_exact_pairs.argtypes = [_I, *[_P] * 9]
    lib.gf_edge_distances.restype = None
    lib.gf_edge_distances.argtypes = [_I, *[_P] * 7]
    lib.gf_matches_size.restype = None
    lib.gf_matches_size.argtypes = [_I, *[_P] * 6]
    lib.gf_matches_fill.restype = None
    lib.gf_matches_fill.argtypes = [_I, *[_P] * 9]
    lib.gf_sort_runs.restype = _I
    lib.gf_sort_runs.argtypes = [_I, _P, _P, _P, _I]
    lib.gf_factorize.restype = _I
    lib.gf_factorize.argtypes = [_I, _P, _P, _I, _P, _P, _P]
    lib.gf_lookup.restype = None
    lib.gf_lookup.argtypes = [_I, _P, _P, _I, _P, _P, _P, _P, _P]
    lib.gf_csv_fields.restype = _I
    lib.gf_csv_fields.argtypes = [_I, _P, _P, _P, _I, _I, _P]
    lib.gf_csv_column.restype = None
    lib.gf_csv_column.argtypes = [_I, _P, _I, _P, _P, _P, _P]
    lib.gf_piece_columns.restype = _I
    lib.gf_piece_columns.argtypes = []
    if lib.gf_piece_columns() != PIECE_COLUMNS:  # a stale build of an older _kernels.c
        raise ImportError(
            f"{spec.origin} is a stale build; reinstall with `pip install -e .` (needs a C compiler)"
        )
    return lib


_LIB = _load()


def _arr(a, dtype, ndim: int = 1, cols: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.ndim != ndim or (cols is not None and a.shape[1] != cols):
        raise ValueError(f"expected a {ndim}-d array{f' of {cols} columns' if cols else ''}")
    return a


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def exact_pairs(read, piece, x, y, z, table, edge) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs within their fence: ``(k, distance_m)``, ``k`` indexing the pairs.

    Pair ``k`` puts read ``read[k]`` (ECEF ``x, y, z``) in the east/north plane of
    piece ``piece[k]`` (row of ``table``, columns above). A piece without edges is a
    point: the distance to the origin. Areas and lines: the distance to the nearest of
    their ``edge`` rows (``x0, y0, dx, dy``), 0 inside an area. Less the footprint,
    floored at 0, kept when at most the limit.
    """
    read = _arr(read, np.int64)
    piece = _arr(piece, np.int64)
    x, y, z = (_arr(v, np.float64) for v in (x, y, z))
    table = _arr(table, np.float64, 2, PIECE_COLUMNS)
    edge = _arr(edge, np.float64, 2, 4)
    n = len(read)
    if len(piece) != n:
        raise ValueError("read and piece differ in length")
    if n and (
        read.min() < 0
        or read.max() >= min(len(x), len(y), len(z))
        or piece.min() < 0
        or piece.max() >= len(table)
        or (len(table) and table[:, HI].max() > len(edge))
    ):
        raise ValueError("index out of range")
    keep = np.empty(n, np.int64)
    dist = np.empty(n, np.float64)
    k = _LIB.gf_exact_pairs(n, *map(_ptr, (read, piece, x, y, z, table, edge, keep, dist)))
    return keep[:k], dist[:k]


MAX_RUN = 64
"""Longest run :func:`sort_runs` takes (its sort is quadratic in a run's length)."""


def sort_runs(read, dist, site) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each run of equal ``read`` sorted by distance (stable), a site's nearest pair only.

    ``read`` must be non-decreasing (pairs grouped by read, as the grid gives them).
    Returns ``(read, dist, site)`` without the farther pairs of a site met twice by one
    read (its pieces), or None if a run is longer than :data:`MAX_RUN`.
    """
    read = np.array(read, dtype=np.int64)  # copies: compacted in place
    dist = np.array(dist, dtype=np.float64)
    site = np.array(site, dtype=np.int64)
    n = len(read)
    if read.ndim != 1 or dist.shape != (n,) or site.shape != (n,):
        raise ValueError("read, dist and site must be 1-d and of one length")
    if n > 1 and (read[1:] < read[:-1]).any():
        raise ValueError("read is not grouped in ascending order")
    k = _LIB.gf_sort_runs(n, _ptr(read), _ptr(dist), _ptr(site), MAX_RUN)
    if k < 0:
        return None
    return read[:k], dist[:k], site[:k]


def edge_distances(piece, east, north, ptr, edge, box) -> np.ndarray:
    """Planar distance from each ``(east[i], north[i])`` to the edges of ``piece[i]``
    (``edge[ptr[p]:ptr[p+1]]``), 0 inside an area (within its ``box`` row)."""
    piece = _arr(piece, np.int64)
    east = _arr(east, np.float64)
    north = _arr(north, np.float64)
    ptr = _arr(ptr, np.int64)
    edge = _arr(edge, np.float64, 2, 4)
    box = _arr(box, np.float64, 2, 4)
    n = len(piece)
    if len(east) != n or len(north) != n:
        raise ValueError("piece, east and north differ in length")
    if n and (piece.min() < 0 or piece.max() >= min(len(ptr) - 1, len(box))):
        raise ValueError("piece out of range")
    if len(ptr) and ptr[-1] > len(edge):
        raise ValueError("ptr beyond the edges")
    out = np.empty(n, np.float64)
    _LIB.gf_edge_distances(n, *map(_ptr, (piece, east, north, ptr, edge, box, out)))
    return out


def join_matches(ptr, site, mm, prefix_offsets, prefix_data):
    """The ``matches`` text of each read and the text of each read's first distance.

    Read ``i`` gets ``prefix[site[j]] + text(mm[j])`` for ``j`` in ``ptr[i]:ptr[i+1]``,
    joined by ``;``, where ``prefix`` is given as Arrow string offsets (int32) and
    bytes and ``text(v)`` writes ``v >= 0`` whole millimetres as metres with trailing
    zeros dropped (``112263 -> 112.263``, ``150000 -> 150``). Returns Arrow
    ``large_string`` offsets (int64) and bytes of both columns. ``mm`` below 1e12
    (Arrow's text of a double has exponents from 1e10 m).
    """
    ptr = _arr(ptr, np.int64)
    site = _arr(site, np.int64)
    mm = _arr(mm, np.int64)
    p_off = _arr(prefix_offsets, np.int32)
    p_data = _arr(prefix_data, np.uint8)
    n = len(ptr) - 1
    if n < 0 or ptr[0] != 0 or ptr[-1] != len(site) or len(mm) != len(site):
        raise ValueError("ptr, site and mm do not agree")
    if np.any(np.diff(ptr) < 0):
        raise ValueError("ptr is not increasing")
    if len(site) and (
        site.min() < 0 or site.max() >= len(p_off) - 1 or mm.min() < 0 or mm.max() >= 10**12
    ):
        raise ValueError("site or millimetres out of range")
    if len(p_off) and (p_off.min() < 0 or p_off.max() > len(p_data)):
        raise ValueError("prefix offsets beyond the bytes")
    m_off = np.empty(n + 1, np.int64)
    d_off = np.empty(n + 1, np.int64)
    _LIB.gf_matches_size(n, *map(_ptr, (ptr, site, mm, p_off, m_off, d_off)))
    m_data = np.empty(int(m_off[-1]), np.uint8)
    d_data = np.empty(int(d_off[-1]), np.uint8)
    _LIB.gf_matches_fill(
        n, *map(_ptr, (ptr, site, mm, p_off, p_data, m_off, m_data, d_off, d_data))
    )
    return m_off, m_data, d_off, d_data


class PositionTable:
    """Distinct ``(x, y)`` positions of two float64 arrays, compared by their bits.

    ``codes[i]`` numbers the position of ``(x[i], y[i])`` in order of first appearance;
    ``first[c]`` is the first ``i`` with code ``c``. Replaces ``pd.factorize(x + 1j*y)``
    in the engine (issue #5: 0.36 vs 2.4 ms for a 64k-read batch) and looks other
    positions up in the same table.

    Parameters
    ----------
    x, y : numpy.ndarray
        Coordinates of one length; kept (read-only) for :meth:`lookup`.
    """

    def __init__(self, x, y) -> None:
        x = _arr(x, np.float64)
        y = _arr(y, np.float64)
        n = len(x)
        if len(y) != n:
            raise ValueError("x and y differ in length")
        self.cap = 1 << max(4, int(2 * n - 1).bit_length())  # a power of two >= 2n
        self.slots = np.zeros(self.cap, np.int64)
        self.codes = np.empty(n, np.int64)
        first = np.empty(n, np.int64)
        k = _LIB.gf_factorize(
            n, *map(_ptr, (x, y)), self.cap, *map(_ptr, (self.slots, self.codes, first))
        )
        self.first = first[:k].copy()
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.first)

    def lookup(self, x, y) -> np.ndarray:
        """Code of each ``(x[i], y[i])`` in this table, -1 where it has none."""
        x = _arr(x, np.float64)
        y = _arr(y, np.float64)
        if len(y) != len(x):
            raise ValueError("x and y differ in length")
        out = np.empty(len(x), np.int64)
        _LIB.gf_lookup(
            len(x),
            *map(_ptr, (x, y)),
            self.cap,
            *map(_ptr, (self.slots, self.x, self.y, self.first, out)),
        )
        return out


def csv_columns(buf: bytes, starts, ends, n_fields: int, delimiter: str) -> list | None:
    """Text columns of plain CSV records ``buf[starts[i]:ends[i]]``, or None.

    For chunks without quotes or CRs (the caller checks): the fields are the runs between
    delimiters. Returns one ``(offsets, data)`` pair per field (Arrow ``string`` buffers:
    int32 offsets, bytes), or None when a record has another number of fields, a byte is
    not ASCII, or the chunk is too large for int32 offsets: Arrow's parser then takes the
    chunk and its faults. The text equals Arrow's for every chunk it returns (tested).
    """
    starts = _arr(starts, np.int64)
    ends = _arr(ends, np.int64)
    n = len(starts)
    if len(ends) != n or n_fields < 1 or len(delimiter.encode()) != 1:
        raise ValueError("starts and ends differ in length, or a bad field count or delimiter")
    if n == 0 or int(ends[-1]) - int(starts[0]) >= 2**31 - 1:
        return None
    if starts.min() < 0 or ends.max() > len(buf) or np.any(ends < starts):
        raise ValueError("records beyond the buffer")
    data = np.frombuffer(buf, np.uint8)
    pos = np.empty((n_fields + 1, n), np.int64)
    bad = _LIB.gf_csv_fields(
        n, _ptr(data), _ptr(starts), _ptr(ends), n_fields, delimiter.encode()[0], _ptr(pos)
    )
    if bad != -1:
        return None
    cols = []
    for j in range(n_fields):
        size = int(pos[j + 1].sum() - pos[j].sum()) - n
        offsets = np.empty(n + 1, np.int32)
        out = np.empty(size + 8, np.uint8)  # 8 bytes of slack for the kernel's short copies
        _LIB.gf_csv_column(
            n, _ptr(data), len(data), _ptr(pos[j]), _ptr(pos[j + 1]), _ptr(offsets), _ptr(out)
        )
        cols.append((offsets, out[:size]))
    return cols
