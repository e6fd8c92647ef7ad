"""Compact, deterministic column encodings for the data embedded in the page (issue #9).

A page with 100,000 reads must stay under 6 MB, so numbers are not written as JSON text
but as little-endian typed arrays in base64 (1⅓ bytes per byte, decoded in the browser with
``atob`` into ``Uint8Array``/``Uint16Array``/``Uint32Array``/``Float64Array``), at the
smallest width that holds them. Strings repeat (cameras, agencies, sites), so they are stored
once in a dictionary with one code per row. Every encoding round-trips exactly: decimals are
stored as integers only when ``q / 10**d`` gives back the very same double (IEEE division is
correctly rounded, in numpy as in JavaScript), otherwise as float64.

The page's decoder (``assets/report.js``, ``decodeColumn``) mirrors each ``k`` below.
"""

from __future__ import annotations

import base64

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Widths of unsigned integers the page decodes, and their numpy little-endian dtypes; width 3
# (24 bits, assembled from bytes by the page) holds millimetre distances up to 16 km and
# 1e-6 degree offsets up to 16 degrees in three bytes instead of four.
_UINT = ((1, "<u1", 0xFF), (2, "<u2", 0xFFFF), (3, None, 0xFFFFFF), (4, "<u4", 0xFFFFFFFF))

# Decimals tried for fixed-point numbers: distances are written to the millimetre (3),
# coordinates usually to 6 or 7 decimals (1-10 cm); beyond 7 float64 is stored as is.
MAX_DECIMALS = 7


def b64(arr: np.ndarray) -> str:
    """Base64 of an array's little-endian bytes."""
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def uints(values: np.ndarray, reserve: int = 0) -> dict:
    """Non-negative integers at the smallest width (``reserve`` codes kept free above the max).

    Returns ``{"w": width, "b": base64}``; width 8 means float64 (exact below 2**53).
    """
    values = np.asarray(values, dtype=np.int64)
    top = int(values.max()) + reserve if len(values) else reserve
    for width, dtype, limit in _UINT:
        if top <= limit:
            if dtype is None:  # 24 bits: the low three bytes of each little-endian uint32
                packed = values.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
                return {"w": 3, "b": b64(packed)}
            return {"w": width, "b": b64(values.astype(dtype))}
    return {"w": 8, "b": b64(values.astype("<f8"))}


def ints(values: np.ndarray, null: np.ndarray | None = None) -> dict:
    """Integers (int64) as the page decodes them: ``k: "int"``.

    Sorted columns (row numbers, time-ordered logs) are stored as differences from the
    previous value, which usually fit one or two bytes; others as offsets from the minimum.
    Nulls get the code one above the largest offset (``nul``).
    """
    values = np.asarray(values, dtype=np.int64)
    out: dict = {"k": "int"}
    live = values if null is None else values[~null]
    if len(live) == 0:
        return {"k": "null"}
    if null is None and len(values) > 1 and bool(np.all(np.diff(values) >= 0)):
        steps = np.diff(values, prepend=values[0])
        out.update(delta=1, base=int(values[0]), **uints(steps))
        return out
    lo = int(live.min())
    off = values - lo
    if null is not None:
        top = int(off[~null].max())
        off = np.where(null, top + 1, off)
        out["nul"] = top + 1
    out.update(base=lo, **uints(off))
    return out


def fixed_decimals(values: np.ndarray) -> int | None:
    """Smallest number of decimals ``d`` such that ``round(v * 10**d) / 10**d == v`` for all."""
    finite = values[np.isfinite(values)]
    for d in range(MAX_DECIMALS + 1):
        scale = 10.0**d
        q = np.round(finite * scale)
        if np.abs(q).max(initial=0) >= 2**52:
            return None
        if np.array_equal(q / scale, finite):
            return d
    return None


def floats(values: np.ndarray, null: np.ndarray | None = None) -> dict:
    """Doubles: fixed-point integers (``k: "fix"``, ``d`` decimals) when exact, else float64."""
    values = np.asarray(values, dtype=np.float64)
    if null is None:
        null = np.isnan(values)
    null = null if null.any() else None
    live = values if null is None else values[~null]
    if len(live) == 0:
        return {"k": "null"}
    d = fixed_decimals(live)
    if d is None:
        out = {"k": "f64", "b": b64(np.where(np.isnan(values), np.nan, values).astype("<f8"))}
        return out
    q = np.round(np.where(np.isnan(values), 0.0, values) * 10.0**d).astype(np.int64)
    enc = ints(q, null)
    enc["k"] = "fix"
    enc["d"] = d
    return enc


def _hex_dictionary(strings: list) -> dict | None:
    """Lower-case hex strings of one even length (plate pseudonyms) as packed bytes."""
    if not strings or any(s is None for s in strings):
        return None
    n = len(strings[0])
    if n < 16 or n % 2:
        return None
    try:
        if any(len(s) != n or s != s.lower() for s in strings):
            return None
        raw = b"".join(bytes.fromhex(s) for s in strings)
    except ValueError:
        return None
    return {"hex": n // 2, "b": base64.b64encode(raw).decode("ascii")}


def dictionary(arr: pa.Array) -> tuple[dict, np.ndarray, int]:
    """A string column as a sorted dictionary plus one code per row (``k: "dict"``).

    Returns the encoding without codes, the codes (int64) and the number of values, so
    callers can still store the codes per row or as a per-key map (see :func:`by_key`). The
    dictionary is sorted (by UTF-8 bytes, i.e. code points; null last), so the same values
    give the same bytes whatever the row order, and codes sort as their values.
    """
    arr = arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    order = pc.array_sort_indices(enc.dictionary, null_placement="at_end").to_numpy(
        zero_copy_only=False
    )
    values = enc.dictionary.take(pa.array(order)).to_pylist()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[codes] if len(codes) else codes
    head: dict = {"k": "dict"}
    packed = _hex_dictionary([v for v in values if v is not None]) if values else None
    if packed is not None:
        head["hex"] = packed
        head["hasnull"] = values[-1] is None if values else False
    else:
        head["v"] = values
    return head, codes, len(values)


_INT_TEXT = r"^(0|-?[1-9][0-9]{0,14})$"


def _plain_strings(arr: pa.Array) -> dict:
    """Mostly distinct strings: integers written as text (read ids) as numbers, strings of one
    length (plates) packed into one string, others as a list."""
    live = arr.drop_null()
    null = arr.is_null().to_numpy(zero_copy_only=False)
    if len(live) and pc.all(pc.match_substring_regex(live, _INT_TEXT)).as_py():
        # the page prints the number back as the same text
        enc = ints(
            pc.cast(pc.fill_null(arr, "0"), pa.int64()).to_numpy(zero_copy_only=False),
            null if null.any() else None,
        )
        enc["k"] = "itext" if enc["k"] != "null" else "null"
        return enc
    if len(live) and pc.all(pc.string_is_ascii(live)).as_py():
        lengths = pc.utf8_length(live)
        width = pc.min(lengths).as_py()
        if width == pc.max(lengths).as_py() and width > 0:
            filled = pc.fill_null(arr, " " * width)
            out: dict = {"k": "fw", "w": width, "s": "".join(filled.to_pylist())}
            if null.any():
                out["nul"] = ints(np.flatnonzero(null))
            return out
    return {"k": "str", "v": arr.to_pylist()}


def by_key(codes: np.ndarray, key: np.ndarray, n_keys: int) -> np.ndarray | None:
    """Per-key codes when ``codes`` is a function of ``key`` (e.g. site_name of site_id), else None."""
    if len(codes) == 0:
        return None
    table = np.full(n_keys, -1, np.int64)
    table[key] = codes
    if not np.array_equal(table[key], codes):
        return None
    return table


def strings(arr: pa.Array, key_codes: dict[str, tuple[np.ndarray, int]] | None = None) -> dict:
    """A string column: a dictionary when values repeat, compact text when nearly all differ.

    ``key_codes`` maps a key column's name to (its per-row codes, its number of codes); when
    this column is a function of one of them, only the per-key map is stored (``by``).
    """
    arr = arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    n = len(arr)
    if n and pc.count_distinct(arr, mode="all").as_py() > n // 2:
        live = arr.drop_null()
        hexish = (
            len(live) and pc.all(pc.match_substring_regex(live, r"^([0-9a-f]{2}){8,}$")).as_py()
        )
        if not hexish:
            return _plain_strings(arr)
    head, codes, _ = dictionary(arr)
    for name, (key, n_keys) in (key_codes or {}).items():
        table = by_key(codes, key, n_keys)
        if table is not None:
            head["by"] = name
            head["map"] = ints(np.where(table < 0, 0, table))
            return head
    head["codes"] = uints(codes)
    return head


def column(arr: pa.Array, key_codes: dict | None = None) -> dict:
    """Encode one report property for the page, choosing the encoding by its Arrow type."""
    t = arr.type
    if pa.types.is_null(t):
        return {"k": "null"}
    if pa.types.is_integer(t):
        null = arr.is_null().to_numpy(zero_copy_only=False)
        v = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)
        return ints(v, null if null.any() else None)
    if pa.types.is_floating(t):
        null = arr.is_null().to_numpy(zero_copy_only=False)
        v = pc.fill_null(arr, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
        distinct = np.unique(v[~null])
        if 0 < len(distinct) <= 64 and len(arr) > 256:
            # few values (buffer_m): a dictionary of their text, as JavaScript prints them
            texts = pa.array([_num_text(x) for x in distinct.tolist()], pa.string())
            pos = np.searchsorted(distinct, np.where(null, distinct[0], v))
            return strings(texts.take(pa.array(pos, mask=null)), key_codes)
        return floats(v, null if null.any() else None)
    if pa.types.is_boolean(t):
        return strings(pc.cast(arr, pa.string()), key_codes)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        joined = pc.binary_join(pc.cast(arr, pa.list_(pa.string())), "; ")
        return strings(joined, key_codes)
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
    return strings(arr.cast(pa.string()), key_codes)


def _num_text(x: float) -> str:
    """A number as JSON/JavaScript prints it (``150`` not ``150.0``)."""
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)
