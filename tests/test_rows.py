"""append_fields builds rejects/withheld rows over whole arrays; checked against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from geofence.rows import append_fields


def _reference(raw, offsets, rows, fields, delim, term):
    def field(v):
        s = "" if v is None else str(v)
        if any(c in s for c in (delim, '"', "\n", "\r")):
            s = '"' + s.replace('"', '""') + '"'
        return s

    out = b""
    for k, i in enumerate(rows):
        body = raw[offsets[i] : offsets[i + 1]].rstrip(b"\r\n")
        out += body + "".join(delim + field(f[k]) for f in fields).encode() + term
    return out


@pytest.mark.parametrize("term", [b"\n", b"\r\n"])
@pytest.mark.parametrize("delim", [",", "|", "\t"])
def test_matches_a_row_by_row_copy(term, delim):
    rng = np.random.default_rng(7)
    pieces = ["a", "bé", '"q"', "x,y", "", "tab\there", "z|w", "line\nbreak"]
    rows, offsets = [], [0]
    for i in range(300):
        cells = rng.choice(pieces, 3).tolist()
        line = delim.join(cells).encode() + (term if i % 97 else b"\r\r\n")
        rows.append(line)
        offsets.append(offsets[-1] + len(line))
    rows[-1] = rows[-1].rstrip(b"\r\n")  # last line without a terminator
    offsets[-1] = offsets[-2] + len(rows[-1])
    raw = b"".join(rows)
    offsets = np.array(offsets)
    pick = np.sort(rng.choice(300, 120, replace=False))
    f1 = rng.choice(["missing_position", 'say "hi"', None, "a,b|c\td"], len(pick)).tolist()
    f2 = [None if k % 5 == 0 else f"{k * 1.5}" for k in range(len(pick))]
    got = append_fields(raw, offsets, pick, [f1, f2], delim, term)
    assert got == _reference(raw, offsets, pick.tolist(), [f1, f2], delim, term)


def test_no_rows_is_empty():
    assert (
        append_fields(b"a,b\n", np.array([0, 4]), np.array([], dtype=np.int64), [[]], ",", b"\n")
        == b""
    )
