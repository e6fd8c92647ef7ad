"""Input rows with fields appended, built over whole arrays (no per-row Python).

The rejects file of ``scan`` and the withheld file of ``filter`` both copy rows of the
input as they were and add a few columns (a reason, a site, a distance). Both go
through :func:`append_fields`, which does it with numpy gathers over the batch's byte
buffer, so a log that is mostly rejected or withheld costs no Python loop per row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def csv_quoted(values, delimiter: str) -> pa.Array:
    """Values as CSV fields: null as empty, quoted (RFC 4180) where they need it."""
    s = pc.fill_null(pa.array(values).cast(pa.string()), "")
    need = pc.match_substring_regex(s, "[" + re.escape(delimiter) + '"\r\n]')
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(s, '"', '""'), '"', "")
    return pc.if_else(need, quoted, s)


def _ragged(lengths: np.ndarray) -> np.ndarray:
    """For runs of ``lengths``, each element's position within its run."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


def append_fields(
    raw: bytes,
    offsets: np.ndarray,
    rows: np.ndarray,
    fields: Sequence,
    delimiter: str,
    terminator: bytes,
) -> bytes:
    """Rows ``raw[offsets[i]:offsets[i + 1]]`` for ``i`` in ``rows``, each without its line
    break, then ``delimiter`` and each of ``fields`` (CSV-quoted where needed), then
    ``terminator``.

    Parameters
    ----------
    raw, offsets : bytes, numpy.ndarray
        A batch's bytes and row offsets (``ReadBatch.raw`` / ``offsets``).
    rows : numpy.ndarray
        Row indices to copy, in output order.
    fields : sequence of array-like
        One value per row in ``rows`` for each appended column.
    delimiter, terminator : str, bytes
        The input's delimiter and line terminator.

    Returns
    -------
    bytes
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return b""
    buf = np.frombuffer(raw, dtype=np.uint8)
    offsets = np.asarray(offsets, dtype=np.int64)
    start = offsets[rows]
    end = offsets[rows + 1].copy()
    # as bytes.rstrip(b"\r\n"): drop every trailing CR and LF
    while True:
        last = buf[np.maximum(end - 1, 0)]
        strip = (end > start) & ((last == 10) | (last == 13))
        if not strip.any():
            break
        end -= strip
    parts: list = []
    for f in fields:
        parts += [delimiter, csv_quoted(f, delimiter)]
    suffix = pc.binary_join_element_wise(*parts, terminator.decode(), "")
    if isinstance(suffix, pa.ChunkedArray):
        suffix = suffix.combine_chunks()
    s_off = np.frombuffer(suffix.buffers()[1], dtype=np.int32)[
        suffix.offset : suffix.offset + len(suffix) + 1
    ].astype(np.int64)
    s_buf = np.frombuffer(suffix.buffers()[2], dtype=np.uint8)
    body_len = end - start
    suffix_len = s_off[1:] - s_off[:-1]
    out_start = np.cumsum(body_len + suffix_len) - (body_len + suffix_len)
    out = np.empty(int((body_len + suffix_len).sum()), dtype=np.uint8)
    k = _ragged(body_len)
    out[np.repeat(out_start, body_len) + k] = buf[np.repeat(start, body_len) + k]
    k = _ragged(suffix_len)
    out[np.repeat(out_start + body_len, suffix_len) + k] = s_buf[
        np.repeat(s_off[:-1], suffix_len) + k
    ]
    return out.tobytes()
