"""Tests of the streaming read-log reader, ``geofence.reads``.

All data is made in the tests; the one real file (the Seattle sample) is used only if a
copy is in ``sample_data/``.
"""

from __future__ import annotations

import bz2
import csv
import datetime as dt
import functools
import gzip
import hashlib
import io
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from geofence import reads
from geofence.errors import ReadFormatError, ResourceLimitError, UsageError
from geofence.model import NO_TIME, REASON_CODE, REJECT_REASONS
from geofence.reads import ReadStream, batches_from_table, open_reads

SEATTLE = Path(__file__).resolve().parents[1] / "sample_data/seattle/spd_alpr_2021-10-01_04.csv.gz"

HEADER = "read_id,plate,timestamp,lat,lon,camera_id,agency\n"


def us(text: str) -> int:
    """UTC epoch microseconds of an ISO 8601 time with offset."""
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "bz2":
        return bz2.compress(data)
    if kind == "zstd":
        zstandard = pytest.importorskip("zstandard")
        return zstandard.ZstdCompressor().compress(data)
    return data


class Result:
    """All batches of a stream, concatenated, plus the stream for its attributes."""

    def __init__(self, stream: ReadStream, batches: list) -> None:
        self.stream = stream
        self.batches = batches
        cat = (lambda k: np.concatenate([getattr(b, k) for b in batches])) if batches else None
        empty = {
            "row": np.int64,
            "lon": float,
            "lat": float,
            "time_us": np.int64,
            "reason": np.int8,
        }
        for k, dtype in empty.items():
            setattr(self, k, cat(k) if batches else np.zeros(0, dtype=dtype))
        self.columns = pa.concat_tables([b.columns for b in batches]) if batches else None
        self.raw_rows = [
            b.raw[b.offsets[i] : b.offsets[i + 1]]
            for b in batches
            if b.raw is not None
            for i in range(len(b))
        ]

    def reasons(self) -> dict[int, str]:
        """Row number -> reason name, for the rejected rows."""
        return {int(r): REJECT_REASONS[c] for r, c in zip(self.row, self.reason, strict=True) if c}

    def col(self, name: str) -> list:
        return self.columns.column(name).to_pylist()


def read_all(source, **kw) -> Result:
    chunk = kw.pop("chunk_bytes", reads.CHUNK_BYTES)
    with ReadStream(source, chunk_bytes=chunk, **kw) as stream:
        batches = list(stream)
    return Result(stream, batches)


def write(tmp_path: Path, text: str | bytes, name: str = "reads.csv", kind: str = "plain") -> Path:
    data = text.encode() if isinstance(text, str) else text
    path = tmp_path / name
    path.write_bytes(compress(data, kind))
    return path


# ---------------------------------------------------------------------------------------
# Format detection


@pytest.mark.parametrize("delim", [",", "\t", "|", ";"])
def test_delimiter_is_detected(tmp_path, delim):
    rows = [
        ["read_id", "lat", "lon", "timestamp"],
        ["a1", "47.6", "-122.3", "2025-03-01T12:00:00Z"],
    ]
    text = "".join(delim.join(r) + "\n" for r in rows)
    res = read_all(write(tmp_path, text))
    assert res.stream.delimiter == delim
    assert res.stream.fields == rows[0]
    assert res.lat.tolist() == [47.6] and res.lon.tolist() == [-122.3]
    assert res.time_us.tolist() == [us("2025-03-01T12:00:00Z")]
    assert res.col("read_id") == ["a1"]


def test_delimiter_override(tmp_path):
    text = "lat;lon;a,b,c,d\n1;2;3,4,5,6\n"
    assert (
        open_reads(write(tmp_path, text), columns={"lat": "lat;lon;a", "lon": "d"}).delimiter == ","
    )
    res = read_all(write(tmp_path, text), delimiter=";")
    assert res.stream.fields == ["lat", "lon", "a,b,c,d"]
    assert res.lat.tolist() == [1.0]


def test_bad_delimiter_option(tmp_path):
    with pytest.raises(UsageError, match="delimiter"):
        open_reads(write(tmp_path, "lat,lon\n1,2\n"), delimiter="||")


SIMPLE = HEADER + (
    "r1,ABC1,2025-03-01T12:34:56Z,47.61,-122.33,cam1,WA01\n"
    "r2,ABC2,2025-03-01T12:35:00Z,NA,NA,cam1,WA01\n"
    "r3,ABC3,2025-03-01T12:36:00Z,47.62,-122.34,cam2,WA01\n"
)


@pytest.mark.parametrize("kind", ["plain", "gzip", "bz2", "zstd"])
def test_compression_by_magic_bytes(tmp_path, kind):
    # The name says .csv whatever the compression: detection must not trust it.
    path = write(tmp_path, SIMPLE, kind=kind)
    res = read_all(path)
    assert res.stream.compression == ("none" if kind == "plain" else kind)
    assert res.row.tolist() == [1, 2, 3]
    assert res.reasons() == {2: "missing_position"}
    assert res.stream.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert res.stream.rows == 3
    assert res.stream.path_label == "reads.csv"
    assert res.stream.header + b"".join(res.raw_rows) == SIMPLE.encode()


@pytest.mark.parametrize("kind", ["plain", "gzip", "zstd"])
def test_binary_file_object_and_path_types(tmp_path, kind):
    data = compress(SIMPLE.encode(), kind)
    from_obj = read_all(io.BytesIO(data))
    path = write(tmp_path, data)
    from_str = read_all(str(path))
    assert from_obj.stream.path_label == "<stream>"
    assert from_obj.row.tolist() == from_str.row.tolist() == [1, 2, 3]
    assert from_obj.raw_rows == from_str.raw_rows
    assert from_obj.stream.sha256 == hashlib.sha256(data).hexdigest()


class _Pipe(io.RawIOBase):
    """A non-seekable source that returns short reads, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(n if n >= 0 else len(self._data), 5)
        out, self._data = self._data[:n], self._data[n:]
        return out


def test_stdin_dash(monkeypatch):
    data = gzip.compress(SIMPLE.encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(_Pipe(data)))
    res = read_all("-")
    assert res.stream.path_label == "<stdin>"
    assert res.stream.compression == "gzip"
    assert res.row.tolist() == [1, 2, 3]
    assert res.stream.sha256 == hashlib.sha256(data).hexdigest()


def test_text_mode_file_is_refused():
    with pytest.raises(UsageError, match="binary mode"):
        open_reads(io.StringIO(SIMPLE))


@pytest.mark.parametrize("chunk", [1, 2, 5, reads.CHUNK_BYTES])
def test_bom_is_stripped_and_noted(tmp_path, chunk):
    data = b"\xef\xbb\xbf" + SIMPLE.encode()
    res = read_all(write(tmp_path, data), chunk_bytes=chunk)
    assert res.stream.bom is True
    assert res.stream.format["encoding"] == "utf-8-sig"
    assert res.stream.header == HEADER.encode()
    assert res.stream.fields[0] == "read_id"
    assert res.stream.mapping["read_id"] == "read_id"
    assert b"\xef\xbb\xbf" + res.stream.header + b"".join(res.raw_rows) == data


def test_crlf(tmp_path):
    data = SIMPLE.replace("\n", "\r\n").encode()
    res = read_all(write(tmp_path, data))
    assert res.stream.line_terminator == b"\r\n"
    assert all(r.endswith(b"\r\n") for r in res.raw_rows)
    assert res.col("agency") == ["WA01"] * 3  # no stray \r in the last column
    assert res.stream.header + b"".join(res.raw_rows) == data


def test_last_row_without_terminator_is_kept_as_is(tmp_path):
    data = SIMPLE.encode().rstrip(b"\n")
    res = read_all(write(tmp_path, data))
    assert res.raw_rows[-1] == b"r3,ABC3,2025-03-01T12:36:00Z,47.62,-122.34,cam2,WA01"
    assert res.stream.header + b"".join(res.raw_rows) == data


def test_not_a_text_file(tmp_path):
    with pytest.raises(ReadFormatError, match="zip archive"):
        open_reads(write(tmp_path, b"PK\x03\x04rest"))


# ---------------------------------------------------------------------------------------
# Quoting (RFC 4180) and byte-exact rows


QUOTED = (
    "id,lat,lon,note\r\n"
    '1,47.1,-122.1,"has, comma"\r\n'
    '2,47.2,-122.2,"say ""hi"""\r\n'
    '3,47.3,-122.3,"two\nlines"\r\n'
    '4,47.4,-122.4,"crlf\r\ninside, and ""quotes"""\r\n'
    '"5","47.5","-122.5",""\r\n'
    "6,47.6,-122.6,plain"
)


@pytest.mark.parametrize("chunk", [1, 7, 64, reads.CHUNK_BYTES])
def test_quoted_fields_round_trip(tmp_path, chunk):
    res = read_all(write(tmp_path, QUOTED), chunk_bytes=chunk)
    assert res.row.tolist() == [1, 2, 3, 4, 5, 6]
    assert res.reasons() == {}
    assert res.col("note") == [
        "has, comma",
        'say "hi"',
        "two\nlines",
        'crlf\r\ninside, and "quotes"',
        "",
        "plain",
    ]
    assert res.col("read_id") == ["1", "2", "3", "4", "5", "6"]
    assert res.raw_rows[3] == b'4,47.4,-122.4,"crlf\r\ninside, and ""quotes"""\r\n'
    assert res.stream.header + b"".join(res.raw_rows) == QUOTED.encode()


def test_stray_quotes_make_malformed_rows(tmp_path):
    # RFC 4180 2.5: a quote may only appear in a quoted field. A stray quote opens
    # a quoted section up to the next quote, so lines 1-2 are one (malformed) record.
    text = 'lat,lon,x\n47.1,-122.1,a"b\n47.2,-122.2,c"d\n47.3,-122.3,ok\n'
    res = read_all(write(tmp_path, text))
    assert res.row.tolist() == [1, 2]
    assert res.reasons() == {1: "malformed_row"}
    assert res.raw_rows[0] == b'47.1,-122.1,a"b\n47.2,-122.2,c"d\n'
    assert res.col("x") == [None, "ok"]
    assert res.stream.header + b"".join(res.raw_rows) == text.encode()


def test_unbalanced_quote_at_end_is_malformed(tmp_path):
    text = 'lat,lon,x\n47.1,-122.1,ok\n47.2,-122.2,"open\n47.3,-122.3,swallowed\n'
    res = read_all(write(tmp_path, text))
    assert res.reasons() == {2: "malformed_row"}
    assert res.stream.header + b"".join(res.raw_rows) == text.encode()


def test_text_after_closing_quote_is_malformed(tmp_path):
    text = 'lat,lon,x\n47.1,-122.1,"a"b\n47.2,-122.2,"fine"\n'
    res = read_all(write(tmp_path, text))
    assert res.reasons() == {1: "malformed_row"}
    assert res.col("x") == [None, "fine"]


def test_blank_lines_are_not_records(tmp_path):
    text = "lat,lon\n\n1,2\n\r\n\n3,4\n\n"
    res = read_all(write(tmp_path, text))
    assert res.row.tolist() == [1, 2]  # rows count records, not lines
    assert res.raw_rows == [b"1,2\n", b"3,4\n"]
    assert res.lat.tolist() == [1.0, 3.0]
    assert any("blank line" in n for n in res.stream.notes)


def test_keep_raw_false(tmp_path):
    res = read_all(write(tmp_path, SIMPLE), keep_raw=False)
    assert all(b.raw is None and b.offsets is None for b in res.batches)
    assert res.row.tolist() == [1, 2, 3]


# ---------------------------------------------------------------------------------------
# Rejections


REJECTS = (
    "read_id,lat,lon,timestamp\n"
    "ok,47.6,-122.3,2025-03-01T00:00:00Z\n"  # 1
    "mal,47.6,-122.3\n"  # 2 wrong field count
    "empty,,-122.3,2025-03-01T00:00:00Z\n"  # 3
    "na,NA,NA,2025-03-01T00:00:00Z\n"  # 4
    "nan,NaN,-122.3,2025-03-01T00:00:00Z\n"  # 5
    "null,47.6,null,2025-03-01T00:00:00Z\n"  # 6
    "none,None,None,2025-03-01T00:00:00Z\n"  # 7
    "n/a,N/A,-122.3,2025-03-01T00:00:00Z\n"  # 8
    "word,north,-122.3,2025-03-01T00:00:00Z\n"  # 9
    "inf,inf,-122.3,2025-03-01T00:00:00Z\n"  # 10
    "long,47.6000000000000000000000000000000001,-122.3,2025-03-01T00:00:00Z\n"  # 11
    "lat91,91,-122.3,2025-03-01T00:00:00Z\n"  # 12
    "lon181,47.6,-181,2025-03-01T00:00:00Z\n"  # 13
    "zero,0,0,2025-03-01T00:00:00Z\n"  # 14
    "zero2,0.0,-0,2025-03-01T00:00:00Z\n"  # 15
    "nots,47.6,-122.3,\n"  # 16
    "badts,47.6,-122.3,yesterday\n"  # 17
    "feb30,47.6,-122.3,2025-02-30T00:00:00Z\n"  # 18
    "toomany,47.6,-122.3,2025-03-01T00:00:00Z,extra\n"  # 19
    "ok2, 47.7 ,-122.3,2025-03-01T00:00:00Z\n"  # 20 padded numbers are numbers
    "zerolat,0,-122.3,2025-03-01T00:00:00Z\n"  # 21 on the equator: fine
)

EXPECTED_REJECTS = {
    2: "malformed_row",
    3: "missing_position",
    4: "missing_position",
    5: "missing_position",
    6: "missing_position",
    7: "missing_position",
    8: "missing_position",
    9: "bad_position",
    10: "bad_position",
    11: "bad_position",
    12: "position_out_of_range",
    13: "position_out_of_range",
    14: "null_island",
    15: "null_island",
    16: "missing_timestamp",
    17: "bad_timestamp",
    18: "bad_timestamp",
    19: "malformed_row",
}


def test_every_reject_reason_with_its_row(tmp_path):
    res = read_all(write(tmp_path, REJECTS))
    assert res.row.tolist() == list(range(1, 22))
    assert res.reasons() == EXPECTED_REJECTS
    position_reasons = np.isin(res.reason, [REASON_CODE[r] for r in REJECT_REASONS[1:6]])
    assert np.isnan(res.lat[position_reasons]).all() and np.isnan(res.lon[position_reasons]).all()
    assert not np.isnan(res.lat[~position_reasons]).any()
    assert res.lat[19] == 47.7 and res.lat[20] == 0.0
    time_rejected = np.isin(
        res.reason, [REASON_CODE["missing_timestamp"], REASON_CODE["bad_timestamp"]]
    )
    assert (res.time_us[time_rejected] == NO_TIME).all()
    assert res.col("timestamp")[15] is None and res.col("timestamp")[16] is None
    # Malformed rows keep their bytes, but have no cell values.
    assert res.raw_rows[1] == b"mal,47.6,-122.3\n"
    assert res.col("read_id")[1] is None and res.col("read_id")[2] == "empty"
    assert res.stream.header + b"".join(res.raw_rows) == REJECTS.encode()


def test_reject_reasons_do_not_depend_on_the_fast_path(tmp_path):
    # The same rows one per file: each goes through the fast path alone or fails alone.
    lines = REJECTS.splitlines(keepends=True)
    for i, line in enumerate(lines[1:], start=1):
        res = read_all(write(tmp_path, lines[0] + line))
        assert res.reasons() == ({1: EXPECTED_REJECTS[i]} if i in EXPECTED_REJECTS else {}), line


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("NA,x,", "missing_position"),  # missing beats bad position and missing time
        ("x,200,", "bad_position"),  # bad beats out of range
        ("95,200,nope", "position_out_of_range"),  # beats a bad timestamp
        ("0,0,", "null_island"),  # beats a missing timestamp
        ("47,-122,", "missing_timestamp"),
        ("47,-122,nope", "bad_timestamp"),
        ("NA,NA,nope,extra", "malformed_row"),  # beats everything
    ],
)
def test_reason_priority(tmp_path, line, reason):
    res = read_all(write(tmp_path, f"lat,lon,time\n{line}\n"))
    assert res.reasons() == {1: reason}


def test_timestamp_rejections_keep_the_position(tmp_path):
    res = read_all(write(tmp_path, "lat,lon,time\n47.5,-122.5,garbage\n"))
    assert res.reasons() == {1: "bad_timestamp"}
    assert (res.lat[0], res.lon[0]) == (47.5, -122.5)


def test_undecodable_bytes_in_a_row(tmp_path):
    data = b"lat,lon,name\n47.1,-122.1,caf\xc3\xa9\n47.2,-122.2,bad\xff\xfe\n47.3,-122.3,ok\n"
    res = read_all(write(tmp_path, data))
    assert res.reasons() == {2: "malformed_row"}
    assert res.col("name") == ["café", None, "ok"]
    assert res.raw_rows[1] == b"47.2,-122.2,bad\xff\xfe\n"


def test_undecodable_header(tmp_path):
    with pytest.raises(ReadFormatError, match=r"reads\.csv: the header row is not valid UTF-8"):
        open_reads(write(tmp_path, b"lat,lon,n\xe9\n1,2,3\n"))


def test_no_time_column_is_allowed(tmp_path):
    res = read_all(write(tmp_path, "lat,lon\n47,-122\n"))
    assert res.reasons() == {}
    assert res.time_us.tolist() == [NO_TIME]
    assert res.stream.time_format is None
    assert res.col("timestamp") == [None] and res.col("plate") == [None]


# ---------------------------------------------------------------------------------------
# Times


@pytest.mark.parametrize(
    ("cell", "utc"),
    [
        ("10/01/2021 - 00:02:08", "2021-10-01T07:02:08Z"),  # Seattle export, PDT (UTC-7)
        ("12/01/2021 - 00:02:08", "2021-12-01T08:02:08Z"),  # PST (UTC-8)
        ("1/2/2021 - 3:04:05", "2021-01-02T11:04:05Z"),
        ("10/01/2021 00:02:08", "2021-10-01T07:02:08Z"),
        ("2021-10-01T00:02:08", "2021-10-01T07:02:08Z"),  # naive ISO: local too
        ("2021-10-01 00:02:08.250", "2021-10-01T07:02:08.25Z"),
    ],
)
def test_local_times_in_timezone(tmp_path, cell, utc):
    res = read_all(write(tmp_path, f"lat,lon,dt\n47,-122,{cell}\n"), timezone="America/Los_Angeles")
    assert res.reasons() == {}
    assert res.time_us.tolist() == [us(utc)]
    assert res.col("timestamp") == [utc]


def test_seattle_export_form(tmp_path):
    text = (
        "zipcode|dt|location|device|plate_hash|lon|lat\n"
        "98101|10/03/2021 - 03:53:03|WEST 034028|SPD2020681MDC|25c8f1|-122.3360764|47.6150657\n"
        "98101|10/03/2021 - 03:53:05|WEST 034028|SPD2020681MDC|5b78ef|NA|NA\n"
    )
    with open_reads(write(tmp_path, text), timezone="America/Los_Angeles") as stream:
        # Known as soon as the header is read.
        assert stream.time_format == "MM/DD/YYYY - HH:MM:SS local time (America/Los_Angeles)"
        assert stream.mapping == {
            "lat": "lat",
            "lon": "lon",
            "plate": "plate_hash",
            "timestamp": "dt",
            "camera_id": "device",
        }
        (batch,) = list(stream)
    assert batch.time_us.tolist() == [us("2021-10-03T10:53:03Z"), us("2021-10-03T10:53:05Z")]
    assert REJECT_REASONS[batch.reason[1]] == "missing_position"
    assert batch.columns.column("plate").to_pylist() == ["25c8f1", "5b78ef"]
    assert batch.columns.column("camera_id").to_pylist() == ["SPD2020681MDC"] * 2


@pytest.mark.parametrize(
    ("cell", "utc"),
    [
        ("2025-03-01T12:34:56Z", "2025-03-01T12:34:56Z"),
        ("2025-03-01T12:34:56+02:00", "2025-03-01T10:34:56Z"),
        ("2025-03-01T12:34:56-0700", "2025-03-01T19:34:56Z"),
        ("2025-03-01 12:34:56.123456Z", "2025-03-01T12:34:56.123456Z"),
        ("2025-03-01T12:34:56.5+05:30", "2025-03-01T07:04:56.5Z"),
    ],
)
def test_iso_times_with_offsets(tmp_path, cell, utc):
    # The zone option applies to naive times only.
    res = read_all(write(tmp_path, f"lat,lon,time\n47,-122,{cell}\n"), timezone="Asia/Tokyo")
    assert res.reasons() == {}
    assert res.time_us.tolist() == [us(utc)]
    assert res.col("timestamp") == [utc]


def test_mixed_time_forms_in_one_file(tmp_path):
    text = "lat,lon,time\n47,-122,2025-03-01T12:00:00Z\n47,-122,1740830400\n47,-122,03/01/2025 12:00:00\n"
    res = read_all(write(tmp_path, text))
    assert res.time_us.tolist() == [us("2025-03-01T12:00:00Z")] * 3
    assert res.stream.time_format == "ISO 8601 with UTC offset"


@pytest.mark.parametrize(
    ("cells", "fmt"),
    [
        (["1633046528", "1633046528.5"], "epoch seconds"),
        (["1633046528000", "1633046528500"], "epoch milliseconds"),
    ],
)
def test_epoch_seconds_and_milliseconds(tmp_path, cells, fmt):
    text = "lat,lon,epoch_start\n" + "".join(f"47,-122,{c}\n" for c in cells)
    res = read_all(write(tmp_path, text))
    assert res.stream.time_format == fmt
    assert res.time_us.tolist() == [us("2021-10-01T00:02:08Z"), us("2021-10-01T00:02:08.5Z")]
    assert res.col("timestamp") == ["2021-10-01T00:02:08Z", "2021-10-01T00:02:08.5Z"]


def test_epoch_in_microseconds_is_rejected(tmp_path):
    res = read_all(write(tmp_path, "lat,lon,epoch\n47,-122,1633046528000000\n"))
    assert res.reasons() == {1: "bad_timestamp"}


def test_dst_gap_and_repeated_hour(tmp_path):
    text = (
        "lat,lon,dt\n"
        "47,-122,03/14/2021 - 01:59:59\n"  # PST
        "47,-122,03/14/2021 - 02:30:00\n"  # never existed in Los Angeles
        "47,-122,03/14/2021 - 03:00:00\n"  # PDT
        "47,-122,11/07/2021 - 01:30:00\n"  # happened twice: PDT first
        "47,-122,11/07/2021 - 01:45:00\n"
        "47,-122,11/07/2021 - 02:00:00\n"  # PST
    )
    res = read_all(write(tmp_path, text), timezone="America/Los_Angeles")
    assert res.reasons() == {2: "bad_timestamp"}
    assert res.time_us.tolist() == [
        us("2021-03-14T09:59:59Z"),
        NO_TIME,
        us("2021-03-14T10:00:00Z"),
        us("2021-11-07T08:30:00Z"),  # the earlier occurrence, 01:30 PDT
        us("2021-11-07T08:45:00Z"),
        us("2021-11-07T10:00:00Z"),
    ]
    repeated = [n for n in res.stream.notes if "repeated" in n]
    skipped = [n for n in res.stream.notes if "never existed" in n]
    assert len(repeated) == 1 and "earlier (first)" in repeated[0]
    assert len(skipped) == 1


@pytest.mark.parametrize(
    "cell", ["02/30/2021 - 00:00:00", "13/01/2021 - 00:00:00", "2021-02-30T00:00:00"]
)
def test_impossible_dates_are_bad(tmp_path, cell):
    # Arrow's strptime rolls 02/30 over into March; the reader must not.
    res = read_all(write(tmp_path, f"lat,lon,dt\n47,-122,{cell}\n47,-122,02/28/2021 - 00:00:00\n"))
    assert res.reasons() == {1: "bad_timestamp"}


def test_unknown_timezone(tmp_path):
    with pytest.raises(UsageError, match="unknown timezone 'Mars/Base'"):
        open_reads(write(tmp_path, SIMPLE), timezone="Mars/Base")


# ---------------------------------------------------------------------------------------
# Columns


def test_normalised_columns_first_then_input_columns(tmp_path):
    text = "ID,Plate Number,when,Latitude,Longitude,Camera_Name,ORI,extra\nx1,AB1,2025-03-01T00:00:00Z,1,2,c,o,e\n"
    res = read_all(write(tmp_path, text))
    assert res.columns.column_names == [
        *reads.NORMALISED_COLUMNS,
        "ID",
        "Plate Number",
        "when",
        "Latitude",
        "Longitude",
        "Camera_Name",
        "ORI",
        "extra",
    ]
    assert res.stream.mapping == {
        "lat": "Latitude",
        "lon": "Longitude",
        "plate": "Plate Number",
        "camera_id": "Camera_Name",
        "agency": "ORI",
        "read_id": "ID",
    }  # "when" is not a known time name
    assert res.columns.slice(0, 1).to_pylist()[0]["extra"] == "e"


def test_input_column_with_a_normalised_name_is_prefixed(tmp_path):
    text = "plate,timestamp,lat,lon\nAB1,10/01/2021 - 00:02:08,1,2\n"
    res = read_all(write(tmp_path, text), timezone="America/Los_Angeles")
    row = res.columns.to_pylist()[0]
    assert row["timestamp"] == "2021-10-01T07:02:08Z"
    assert row["input:timestamp"] == "10/01/2021 - 00:02:08"
    assert row["plate"] == row["input:plate"] == "AB1"


def test_empty_cells_are_null_in_normalised_columns(tmp_path):
    res = read_all(write(tmp_path, "plate,lat,lon\n,1,2\nX,1,2\n"))
    assert res.col("plate") == [None, "X"]
    assert res.col("input:plate") == ["", "X"]


def test_column_override(tmp_path):
    text = "X,Y,lat,when\n-122.3,47.6,999,1633046528\n"
    res = read_all(write(tmp_path, text), columns={"lat": "Y", "lon": "X", "timestamp": "when"})
    assert res.stream.mapping["lat"] == "Y"
    assert (res.lat[0], res.lon[0]) == (47.6, -122.3)
    assert res.time_us.tolist() == [us("2021-10-01T00:02:08Z")]


def test_override_can_drop_a_detected_column(tmp_path):
    res = read_all(write(tmp_path, "lat,lon,time\n1,2,junk\n"), columns={"timestamp": None})
    assert res.reasons() == {}
    assert "timestamp" not in res.stream.mapping


def test_override_naming_a_missing_column(tmp_path):
    # The header is not echoed: a headerless file's "header" is a read (plates).
    with pytest.raises(
        UsageError, match=r"lat='Y' names no column of reads\.csv; its header has 2"
    ) as err:
        open_reads(write(tmp_path, "AB123,b\n1,2\n"), columns={"lat": "Y", "lon": "b"})
    assert "AB123" not in str(err.value)


def test_override_with_unknown_field(tmp_path):
    with pytest.raises(UsageError, match="unknown field 'altitude'"):
        open_reads(write(tmp_path, "lat,lon\n1,2\n"), columns={"altitude": "lat"})


def test_missing_lat_lon_columns(tmp_path):
    with pytest.raises(ReadFormatError) as err:
        open_reads(write(tmp_path, "northing,easting,time\n1,2,3\n"))
    msg = str(err.value)
    assert msg.startswith("reads.csv: no latitude or longitude column")
    assert "its 3 header columns" in msg and "northing" not in msg
    assert "--columns lat=COLUMN,lon=COLUMN" in msg
    assert "\n" not in msg


def test_repeated_and_blank_header_names(tmp_path):
    res = read_all(write(tmp_path, "lat,lon,x,x,\n1,2,a,b,c\n"))
    assert res.stream.fields == ["lat", "lon", "x", "x_2", "column_5"]
    assert res.col("x_2") == ["b"]
    assert len([n for n in res.stream.notes if "renamed" in n]) == 2


def test_swapped_coordinates_note(tmp_path):
    text = "lat,lon\n-122.3,47.6\n-122.4,47.7\nNA,NA\n"
    res = read_all(write(tmp_path, text))
    assert set(res.reasons().values()) == {"position_out_of_range", "missing_position"}
    (note,) = [n for n in res.stream.notes if "swapped" in n]
    assert note.startswith("coordinates look swapped: every latitude")
    assert "--columns lat=lon,lon=lat" in note


def test_no_swapped_note_for_good_coordinates(tmp_path):
    res = read_all(write(tmp_path, SIMPLE))
    assert res.stream.notes == []


# ---------------------------------------------------------------------------------------
# Empty, truncated and oversized inputs


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n", b"\r\n"])
@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_empty_file(tmp_path, data, kind):
    with pytest.raises(ReadFormatError, match=r"reads\.csv is empty; expected a header row"):
        open_reads(write(tmp_path, data, kind=kind))
    with pytest.raises(ReadFormatError, match="is empty"):
        ReadStream(write(tmp_path, data, kind=kind), chunk_bytes=1)


@pytest.mark.parametrize("text", ["lat,lon\n", "lat,lon", "lat,lon\r\n\r\n", "\n\nlat,lon\n"])
@pytest.mark.parametrize("chunk", [1, 3, reads.CHUNK_BYTES])
def test_header_only(tmp_path, text, chunk):
    path = write(tmp_path, text)
    res = read_all(path, chunk_bytes=chunk)
    assert res.batches == []
    assert res.stream.rows == 0
    assert res.stream.fields == ["lat", "lon"]
    assert res.stream.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def _big_log(n: int) -> bytes:
    lines = [HEADER] + [
        f"r{i},P{i},2025-03-01T00:00:{i % 60:02d}Z,47.{i},-122.{i},c,a\n" for i in range(n)
    ]
    return "".join(lines).encode()


@pytest.mark.parametrize("kind", ["gzip", "bz2", "zstd"])
def test_truncated_compressed_file_raises(tmp_path, kind):
    data = compress(_big_log(20_000), kind)
    path = write(tmp_path, data[: len(data) * 2 // 3])
    with pytest.raises(ReadFormatError, match=rf"reads\.csv: truncated or corrupt {kind} data"):
        with ReadStream(path, chunk_bytes=64 << 10) as stream:
            for _ in stream:
                pass


def test_missing_zstandard_names_the_extra(tmp_path, monkeypatch):
    path = write(tmp_path, SIMPLE, kind="zstd")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ReadFormatError, match=r"pip install 'geofence\[zstd\]'"):
        open_reads(path)


def test_line_over_the_limit(tmp_path):
    text = (
        HEADER
        + "r1,P,2025-03-01T00:00:00Z,47,-122,c,a\n"
        + "r2,P,"
        + "x" * (2 << 20)
        + ",47,-122,c,a\n"
    )
    with pytest.raises(
        ResourceLimitError, match=r"row 2 is .* over max_line_bytes=1,048,576"
    ) as err:
        list(open_reads(write(tmp_path, text)))
    assert "--max-line-bytes" in str(err.value)
    # Raising the limit reads it.
    res = read_all(write(tmp_path, text), max_line_bytes=4 << 20)
    assert res.row.tolist() == [1, 2]


def test_unbalanced_quote_early_hits_the_limit(tmp_path):
    text = 'lat,lon,x\n1,2,"open\n' + "3,4,5\n" * 300_000
    with pytest.raises(ResourceLimitError, match=r"row 1 is more than .* unbalanced quote"):
        list(ReadStream(write(tmp_path, text), chunk_bytes=256 << 10))


# ---------------------------------------------------------------------------------------
# Batching and chunking never change the output


def test_batches_have_exactly_batch_size_rows(tmp_path):
    res = read_all(write(tmp_path, _big_log(1000)), batch_size=300, chunk_bytes=4096)
    assert [len(b) for b in res.batches] == [300, 300, 300, 100]
    assert res.row.tolist() == list(range(1, 1001))
    for b in res.batches:
        assert len(b.offsets) == len(b) + 1 and b.offsets[0] == 0 and b.offsets[-1] == len(b.raw)
        assert b.columns.num_rows == len(b)


cell = st.one_of(
    st.text(alphabet='ab,"\n\r; 1', max_size=6),
    st.sampled_from(["", "NA", "x", "0", "47.5", "-122.25", "1e3", "inf"]),
)
lat_cell = st.one_of(
    st.floats(-100, 100, allow_nan=False).map(lambda v: f"{v:.5f}"),
    st.sampled_from(["", "NA", "0", "bad", '"47.1"']),
)
time_cell = st.sampled_from(
    [
        "",
        "NA",
        "2025-03-01T00:00:00Z",
        "2025-03-01 01:02:03+02:00",
        "2025-03-01T00:00:00.25Z",
        "03/14/2021 - 02:30:00",
        "11/07/2021 - 01:30:00",
        "02/30/2021 - 00:00:00",
        "10/01/2021 - 00:02:08",
        "1633046528",
        "junk",
    ]
)
record = st.tuples(lat_cell, lat_cell, time_cell, cell).map(list)
odd_line = st.sampled_from(
    ["1,2\n", '1,2,3,"x\n', "\n", "\r\n", "1,2,3,x,y\n", '1,2,3,a"b"\n', "1,2,3,\xe9\n"]
)


@st.composite
def logs(draw) -> bytes:
    out = io.StringIO()
    out.write("lat,lon,time,note\n")
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    for item in draw(st.lists(st.one_of(record, odd_line), max_size=25)):
        if isinstance(item, str):
            out.write(item)
        else:
            writer.writerow(item)
    data = out.getvalue().encode("utf-8")
    if draw(st.booleans()):
        data = data.rstrip(b"\r\n")
    if draw(st.booleans()):
        data = data.replace("é".encode(), b"\xff")
    return data


def _outputs(
    data: bytes, batch_size: int, chunk_bytes: int, first_bytes: int | None = None
) -> dict:
    with mock.patch.object(reads, "FIRST_SPAN_BYTES", first_bytes or reads.FIRST_SPAN_BYTES):
        res = read_all(
            io.BytesIO(data),
            batch_size=batch_size,
            chunk_bytes=chunk_bytes,
            timezone="America/Los_Angeles",
        )
    return {
        "row": res.row.tolist(),
        "lon": res.lon.tobytes(),
        "lat": res.lat.tobytes(),
        "time_us": res.time_us.tolist(),
        "reason": res.reason.tolist(),
        "columns": res.columns.to_pylist() if res.columns is not None else [],
        "raw": res.raw_rows,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=logs(),
    batch_size=st.sampled_from([1, 7]),
    chunk=st.sampled_from([1, 5, 33, 200]),
    first=st.sampled_from([1, 4, 9, 40, 10**6]),
)
@example(data=b'lat,lon,time,note\n1,2,,"a\nb"\n\n3,4,,x', batch_size=1, chunk=1, first=10**6)
@example(data=b'lat,lon,time,note\n1,2,,"a\nb"\n\n3,4,,x', batch_size=7, chunk=200, first=9)
def test_batch_chunk_and_first_span_size_never_change_the_output(data, batch_size, chunk, first):
    # first: bytes of the first span (FIRST_SPAN_BYTES), cut out of what the header read
    # left over; it may end inside a quoted line break or a blank line (#13)
    reference = _outputs(data, reads._DEFAULT_BATCH, reads.CHUNK_BYTES)
    assert _outputs(data, batch_size, chunk, first) == reference
    # Every record comes out once: rows are 1..n and the bytes add back up (no blank lines
    # are records, so compare with them removed).
    assert reference["row"] == list(range(1, len(reference["row"]) + 1))
    body = data.split(b"\n", 1)[1] if b"\n" in data else b""
    assert len(b"".join(reference["raw"])) <= len(body)


@settings(max_examples=60, deadline=None)
@given(data=logs())
def test_raw_rows_are_the_input_without_blank_lines(data):
    with ReadStream(io.BytesIO(data), chunk_bytes=16) as stream:
        raw = b"".join(b.raw for b in stream)
    rebuilt = stream.header + raw
    if any("blank line(s) skipped" in n for n in stream.notes):
        assert len(rebuilt) < len(data)
    else:
        assert rebuilt == data


# ---------------------------------------------------------------------------------------
# In-memory tables


def test_batches_from_dataframe():
    df = pd.DataFrame(
        {
            "Latitude": [47.6, np.nan, 0.0, 95.0, 47.7],
            "Longitude": [-122.3, -122.3, 0.0, -122.3, -122.4],
            "time": pd.to_datetime(
                [
                    "2021-10-01 00:02:08",
                    "2021-10-01 00:02:09",
                    None,
                    "2021-10-01 00:02:10",
                    "2021-10-01 00:02:11",
                ]
            ),
            "plate": ["A", "B", None, "D", "E"],
        }
    )
    batches = list(batches_from_table(df, timezone="America/Los_Angeles", batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(b.raw is None and b.offsets is None for b in batches)
    reason = np.concatenate([b.reason for b in batches])
    assert [REJECT_REASONS[r] for r in reason] == [
        "",
        "missing_position",
        "null_island",
        "position_out_of_range",
        "",
    ]
    time_us = np.concatenate([b.time_us for b in batches])
    assert time_us[0] == us("2021-10-01T07:02:08Z")
    table = pa.concat_tables([b.columns for b in batches])
    assert table.column("timestamp").to_pylist()[0] == "2021-10-01T07:02:08Z"
    assert table.column("Latitude").to_pylist()[0] == "47.6"
    assert np.concatenate([b.row for b in batches]).tolist() == [1, 2, 3, 4, 5]


def test_batches_from_arrow_table_and_record_batches():
    table = pa.table(
        {
            "lat": ["47.5", "NA", "x"],
            "lon": [-122.0, -122.0, -122.0],
            "epoch": [1633046528000, 1633046528000, None],
        }
    )
    for data in (table, table.to_batches(max_chunksize=1)):
        batches = list(batches_from_table(data))
        reason = np.concatenate([b.reason for b in batches])
        assert [REJECT_REASONS[r] for r in reason] == ["", "missing_position", "bad_position"]
        assert np.concatenate([b.time_us for b in batches])[0] == us("2021-10-01T00:02:08Z")


def test_batches_from_table_timezone_aware_times():
    table = pa.table(
        {
            "lat": [1.0],
            "lon": [2.0],
            "timestamp": pa.array([us("2021-10-01T00:02:08Z")], pa.timestamp("us", "Europe/Paris")),
        }
    )
    (batch,) = batches_from_table(table, timezone="America/Los_Angeles")
    assert batch.time_us.tolist() == [us("2021-10-01T00:02:08Z")]
    # The normalised column is the 5th-to-last before the input's own (renamed) column.
    assert batch.columns.column("timestamp").to_pylist() == ["2021-10-01T00:02:08Z"]


# ---------------------------------------------------------------------------------------
# Real data


@pytest.mark.skipif(not SEATTLE.exists(), reason="sample_data/seattle copy not present")
def test_seattle_sample():
    check_seattle(SEATTLE)


def check_seattle(path: Path) -> None:
    """All 35,486 reads come out; 8,768 have no position (counts from the data's SOURCE.md)."""
    res = read_all(path, timezone="America/Los_Angeles", batch_size=10_000)
    assert res.stream.rows == 35_486
    assert res.row.tolist() == list(range(1, 35_487))
    assert int((res.reason == REASON_CODE["missing_position"]).sum()) == 8_768
    assert int((res.reason != 0).sum()) == 8_768
    assert res.stream.delimiter == "|"
    ok = res.reason == 0
    # SOURCE.md gives the box to 4 decimals.
    assert 47.5104 - 5e-5 <= res.lat[ok].min() and res.lat[ok].max() <= 47.9642 + 5e-5
    assert -122.4070 - 5e-5 <= res.lon[ok].min() and res.lon[ok].max() <= -122.0017 + 5e-5
    # 2021-10-01 .. 2021-10-04 local time, so 07:00Z on the 1st to 07:00Z on the 5th.
    assert us("2021-10-01T07:00:00Z") <= res.time_us.min() and res.time_us.max() < us(
        "2021-10-05T07:00:00Z"
    )
    assert res.stream.header + b"".join(res.raw_rows) == gzip.decompress(path.read_bytes())


@settings(max_examples=60, deadline=None)
@given(data=logs(), chunk=st.sampled_from([3, 50, reads.CHUNK_BYTES]))
def test_cells_match_their_raw_bytes(data, chunk):
    # What the filter shares (raw bytes) must be the row whose cells were checked.
    res = read_all(io.BytesIO(data), chunk_bytes=chunk)
    if res.columns is None:
        return
    names = res.stream.fields
    for i, raw in enumerate(res.raw_rows):
        if REJECT_REASONS[res.reason[i]] == "malformed_row":
            continue
        text = raw.decode("utf-8")
        (cells,) = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        assert cells == [res.columns.column(n)[i].as_py() for n in names]


def test_a_short_first_span_is_not_a_long_row(tmp_path):
    # The first span is a prefix of the header read's chunk (FIRST_SPAN_BYTES, #13): the
    # rest of that chunk is not an unfinished row over max_line_bytes, and a first row
    # longer than the prefix is read whole.
    short = ["lat,lon,note"] + [f"47.{i},-122.{i},r{i}" for i in range(300)]
    long_first = [short[0], "47.1,-122.1," + "x" * 150, *short[1:]]
    spans: list[int] = []
    split = reads._split_spans

    def counted(*args):
        for span in split(*args):
            spans.append(len(span.starts))
            yield span

    for rows, limit in ((short, 50), (long_first, 200)):
        path = write(tmp_path, "\n".join(rows) + "\n")
        reference = read_all(path, max_line_bytes=limit, chunk_bytes=4096)
        spans.clear()
        with (
            mock.patch.object(reads, "FIRST_SPAN_BYTES", 64),
            mock.patch.object(reads, "_split_spans", counted),
        ):
            got = read_all(path, max_line_bytes=limit, chunk_bytes=4096)
        assert got.row.tolist() == reference.row.tolist() == list(range(1, len(rows)))
        assert got.raw_rows == reference.raw_rows
        assert got.col("note") == reference.col("note")
        # the short log's first span: its rows that end within 64 bytes; the long first
        # row is in none, so the first span is the whole log (a chunk more is read)
        ends = np.cumsum([len(r) + 1 for r in rows[1:]])
        assert spans[0] == (int((ends <= 64).sum()) if rows is short else len(rows) - 1)
        assert 0 < spans[0] < 10 or rows is long_first
    with pytest.raises(ResourceLimitError, match="row 1 is"):  # the limit still holds
        with mock.patch.object(reads, "FIRST_SPAN_BYTES", 64):
            read_all(path, max_line_bytes=100, chunk_bytes=4096)


def test_header_longer_than_the_limit(tmp_path):
    text = ",".join(["lat", "lon"] + [f"c{i}" for i in range(100)]) + "\n"
    with pytest.raises(ResourceLimitError, match="header row is longer than max_line_bytes=50"):
        ReadStream(write(tmp_path, text), max_line_bytes=50, chunk_bytes=16)


@pytest.mark.parametrize("form", ["%m/%d/%Y - %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S"])
def test_local_times_agree_with_zoneinfo(tmp_path, form):
    # Two years of wall times in Los Angeles, both DST changes included, against the
    # standard library's reading (fold=0 is the earlier instant of a repeated hour).
    import zoneinfo

    tz = zoneinfo.ZoneInfo("America/Los_Angeles")
    rng = np.random.default_rng(7)
    walls = [
        dt.datetime(2021, 1, 1) + dt.timedelta(seconds=int(s))
        for s in rng.integers(0, 730 * 86400, 3000)
    ]
    walls += [dt.datetime(2021, 11, 7, 1, 30), dt.datetime(2022, 3, 13, 2, 30)]
    text = "lat,lon,dt\n" + "".join(f"47,-122,{w.strftime(form)}\n" for w in walls)
    res = read_all(write(tmp_path, text), timezone="America/Los_Angeles")
    for wall, got in zip(walls, res.time_us.tolist(), strict=True):
        aware = wall.replace(tzinfo=tz)
        exists = aware.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) == wall
        assert got == (round(aware.timestamp() * 1_000_000) if exists else NO_TIME), wall


def _reader_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "geofence-read" and t.is_alive()]


def test_stopping_early_ends_the_read_ahead_thread(tmp_path):
    import gc

    path = write(tmp_path, _big_log(5000))
    with ReadStream(path, batch_size=10, chunk_bytes=4096) as stream:
        next(stream)
        assert _reader_threads()
    assert not _reader_threads()
    # An abandoned stream (no close) is collected and its thread stops too.
    stream = ReadStream(path, batch_size=10, chunk_bytes=4096)
    next(stream)
    del stream
    gc.collect()
    assert not _reader_threads()


# ---------------------------------------------------------------------------------------
# The compiled split of plain records (issue #5) against Arrow's parser


def _arrow_text(buf: bytes, n_fields: int, delim: str) -> pa.Table:
    names = [f"f{i}" for i in range(n_fields)]
    return pacsv.read_csv(
        pa.BufferReader(buf),
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(delimiter=delim, quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
        ),
    )


def _records(records: list[bytes], *, last_newline: bool, blank_every: int = 0):
    """``records`` laid out as a chunk (a blank line after every ``blank_every``-th, which
    the reader would skip): the buffer and each record's start and end."""
    buf, starts, ends = bytearray(), [], []
    for i, rec in enumerate(records):
        starts.append(len(buf))
        buf += rec + (b"\n" if last_newline or i < len(records) - 1 else b"")
        ends.append(len(buf))
        if blank_every and i % blank_every == 1 and i < len(records) - 1:
            buf += b"\n"
    return bytes(buf), np.array(starts, np.int64), np.array(ends, np.int64)


@pytest.mark.parametrize("delim", [",", "\t", ";", "|"])
def test_compiled_split_gives_arrows_columns(delim):
    """Random plain records (empty fields, short and long ones, the last with or without a
    line end, blank lines between): the same text as Arrow's parser; a record with
    another field count, or a non-ASCII byte, is left to Arrow (None)."""
    from geofence._kernels import csv_columns

    rng = np.random.default_rng(7)
    alphabet = np.array(list("abcXYZ019 .:-_/+"))
    for trial in range(40):
        n_fields = int(rng.integers(1, 9))
        fields = [
            [
                "".join(rng.choice(alphabet, int(rng.choice([0, 1, 3, 8, 9, 17, 40]))))
                for _ in range(n_fields)
            ]
            for _ in range(int(rng.integers(1, 300)))
        ]
        records = [delim.join(f).encode() for f in fields if delim.join(f)]  # no blank records
        if not records:
            continue
        buf, starts, ends = _records(records, last_newline=trial % 2 == 1, blank_every=trial % 3)
        got = reads._text_table(csv_columns(buf, starts, ends, n_fields, delim), len(records))
        want = _arrow_text(b"\n".join(records), n_fields, delim)
        assert got.equals(want), trial
        i = int(rng.integers(0, len(records)))
        more = records[i] + delim.encode() + b"x"
        fewer = records[i].rsplit(delim.encode(), 1)[0] if n_fields > 1 else None
        for bad in (more, fewer, records[i] + "é".encode()):
            if bad is not None and bad:
                b2, s2, e2 = _records([*records[:i], bad, *records[i + 1 :]], last_newline=True)
                assert csv_columns(b2, s2, e2, n_fields, delim) is None, (trial, bad)


_SPLIT = reads.K.csv_columns


def _counted(calls: list, *args):
    calls.append(_SPLIT(*args))
    return calls[-1]


def test_reader_gives_the_same_batches_with_and_without_the_compiled_split(tmp_path, monkeypatch):
    """Chunks of plain records go through the compiled split, others (quotes, CRLF,
    non-ASCII, malformed rows) through Arrow: the batches are the same either way."""
    lines = [HEADER]
    for i in range(400):
        lat, lon = 47.5 + i * 1e-4, -122.3 - i * 1e-4
        row = f"r{i},P{i:04d},2025-03-01T12:{i % 60:02d}:00Z,{lat},{lon},cam{i % 7},WA0{i % 3}"
        if i % 97 == 5:
            row = row.replace(f"cam{i % 7}", '"cam, quoted"')
        if i % 89 == 7:
            row = row.replace("WA0", "WÄ0")
        if i % 83 == 3:
            row += ",extra"
        if i % 101 == 9:
            row = row.rsplit(",", 2)[0]
        lines.append(row)
    text = "\n".join(lines) + "\n"
    crlf = "\r\n".join(lines[:50]) + "\r\n"
    for data in (text, crlf, text.rstrip("\n")):
        path = write(tmp_path, data)
        for chunk in (64, 700, reads.CHUNK_BYTES):
            split = []
            with monkeypatch.context() as m:  # count the chunks the compiled split took
                m.setattr(reads.K, "csv_columns", functools.partial(_counted, split))
                fast = read_all(path, chunk_bytes=chunk, keep_raw=True)
            # CRLF chunks, and one chunk of the whole file (it has quotes), go to Arrow;
            # small chunks of the other files are mostly plain and split in C
            assert any(c is not None for c in split) == ("\r" not in data and chunk < 1000)
            with monkeypatch.context() as m:
                m.setattr(reads.K, "csv_columns", lambda *a: None)
                slow = read_all(path, chunk_bytes=chunk, keep_raw=True)
            assert fast.columns.equals(slow.columns)
            for k in ("row", "lon", "lat", "time_us", "reason"):
                assert np.array_equal(
                    getattr(fast, k), getattr(slow, k), equal_nan=k in ("lon", "lat")
                )
            assert fast.raw_rows == slow.raw_rows
