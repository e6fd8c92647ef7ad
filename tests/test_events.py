"""Event fences (issue #7): windows, DST, the space-time rtree and ``geofence events``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.errors import LayerError
from geofence.events import (
    SPAN_MAX,
    SPAN_MIN,
    EventIndex,
    EventWindows,
    parse_hours,
    parse_window,
    read_events_file,
)
from geofence.model import NO_TIME, CategoryRule, Policy

LA = "America/Los_Angeles"
US = 1_000_000
HOUR = 3600 * US


def us(text: str) -> int:
    """UTC epoch microseconds of an ISO-8601 time with an offset."""
    return (datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def _rule(cat: str, temporal: str, before_s: float = 0.0, after_s: float = 0.0) -> CategoryRule:
    return CategoryRule(
        cat,
        cat,
        150.0,
        {"at": 30.0, "near": 150.0, "vicinity": 400.0},
        30.0,
        temporal,
        before_s,
        after_s,
    )


# Pads made in code, independent of the shipped packs: 60 min [I] both sides for
# ceremonies, an asymmetric 30/90 min for demonstrations, none for bus stops.
POLICY = Policy(
    tier="near",
    categories={
        "ceremony": _rule("ceremony", "event", 3600, 3600),
        "demonstration": _rule("demonstration", "event", 1800, 5400),
        "school_bus_stop": _rule("school_bus_stop", "event"),
        "school": _rule("school", "permanent"),
    },
    packs=(),
)


def windows(*rows: dict, policy: Policy = POLICY) -> EventWindows:
    cols = ("site_id", "category", "start", "end", "timezone", "hours")
    frame = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=list(cols))
    return EventWindows.from_sites(frame, policy)


def active_at(w: EventWindows, site: int, *times: int) -> list[bool]:
    return w.active(np.full(len(times), site), np.array(times, dtype=np.int64)).tolist()


# --------------------------------------------------------------------------- one-off windows


@pytest.mark.parametrize(
    ("category", "before", "after"),
    [("ceremony", 3600, 3600), ("demonstration", 1800, 5400), ("school_bus_stop", 0, 0)],
)
def test_once_window_edges_with_pads(category, before, after):
    w = windows(
        {
            "site_id": "e",
            "category": category,
            "start": "2025-05-01T14:00:00-07:00",
            "end": "2025-05-01T16:00:00-07:00",
        }
    )
    t0, t1 = us("2025-05-01T14:00:00-07:00"), us("2025-05-01T16:00:00-07:00")
    lo, hi = t0 - before * US, t1 + after * US
    assert active_at(w, 0, lo, hi, lo - 1, hi + 1, (t0 + t1) // 2) == [
        True,
        True,
        False,
        False,
        True,
    ]
    span = w.span_us()
    assert (span[0][0], span[1][0]) == (lo, hi)


def test_once_window_naive_times_and_dates_use_the_timezone():
    w = windows(
        {
            "site_id": "n",
            "category": "school_bus_stop",
            "start": "2025-05-01T14:00",
            "end": "2025-05-01 16:00",
            "timezone": LA,
        },
        {
            "site_id": "d",
            "category": "school_bus_stop",
            "start": "2025-05-01",
            "end": "2025-05-02",
            "timezone": LA,
        },
        {
            "site_id": "z",
            "category": "school_bus_stop",
            "start": "2025-05-01T21:00Z",
            "end": "2025-05-01T23:00:00+00:00",
        },
    )
    lo, hi = w.span_us()
    assert (lo[0], hi[0]) == (us("2025-05-01T14:00-07:00"), us("2025-05-01T16:00-07:00"))
    # a date-only end runs to the end of that local day (the next local midnight)
    assert (lo[1], hi[1]) == (us("2025-05-01T00:00-07:00"), us("2025-05-03T00:00-07:00"))
    assert (lo[2], hi[2]) == (us("2025-05-01T21:00Z"), us("2025-05-01T23:00Z"))


def test_once_window_in_the_fall_back_hour_takes_the_widest_reading():
    # 2025-11-02 01:30 happens twice in Los Angeles: 08:30Z (PDT) and 09:30Z (PST)
    w = windows(
        {
            "site_id": "f",
            "category": "school_bus_stop",
            "start": "2025-11-02T01:30",
            "end": "2025-11-02T01:30",
            "timezone": LA,
        }
    )
    lo, hi = w.span_us()
    assert (lo[0], hi[0]) == (us("2025-11-02T08:30Z"), us("2025-11-02T09:30Z"))
    assert (
        active_at(w, 0, us("2025-11-02T08:30Z"), us("2025-11-02T09:00Z"), us("2025-11-02T09:30Z"))
        == [True] * 3
    )
    assert active_at(w, 0, us("2025-11-02T08:30Z") - 1, us("2025-11-02T09:30Z") + 1) == [
        False,
        False,
    ]


def test_no_time_is_never_active_and_permanent_sites_always_are():
    w = windows(
        {
            "site_id": "e",
            "category": "ceremony",
            "start": "2025-05-01T14:00Z",
            "end": "2025-05-01T16:00Z",
        },
        {"site_id": "h", "category": "school_bus_stop", "hours": "24/7", "timezone": LA},
        {"site_id": "s", "category": "school"},  # permanent: no window needed, always fenced
    )
    assert w.active(np.array([0, 1, 2, 2]), np.array([NO_TIME, NO_TIME, NO_TIME, 0])).tolist() == [
        False,
        False,
        True,
        True,
    ]
    lo, hi = w.span_us()
    assert (lo[1], hi[1], lo[2], hi[2]) == (SPAN_MIN, SPAN_MAX, SPAN_MIN, SPAN_MAX)
    assert SPAN_MIN != NO_TIME


def test_shipped_packs_pad_event_categories_by_an_hour():
    from geofence.policy import load_policy

    w = windows(
        {
            "site_id": "e",
            "category": "demonstration",
            "start": "2025-05-01T14:00Z",
            "end": "2025-05-01T16:00Z",
        },
        policy=load_policy(),
    )
    assert active_at(
        w, 0, us("2025-05-01T13:00Z"), us("2025-05-01T17:00Z"), us("2025-05-01T17:00Z") + 1
    ) == [True, True, False]


# --------------------------------------------------------------------------- weekly hours


def test_parse_hours_subset():
    r = parse_hours("Mo-Fr 07:00-09:00,14:00-17:30; Sa-Mo 22:00-02:00; 10:00-24:00")
    assert [(x.days, x.start_min, x.end_min) for x in r] == [
        (0b0011111, 420, 540),
        (0b0011111, 840, 1050),
        (0b1100001, 1320, 1560),  # Sa, Su, Mo; runs past midnight
        (0b1111111, 600, 1440),
    ]
    assert [x.text for x in r] == [
        "Mo-Fr 07:00-09:00",
        "Mo-Fr 14:00-17:30",
        "Sa-Mo 22:00-02:00",
        "10:00-24:00",
    ]
    assert parse_hours("Mo, We,Fr 08:00-09:00")[0].days == 0b0010101


def test_weekly_window_across_midnight():
    # Friday 22:00 to Saturday 02:00, no pads. 2025-05-02 is a Friday (PDT, -07:00).
    w = windows(
        {"site_id": "b", "category": "school_bus_stop", "hours": "Fr 22:00-02:00", "timezone": LA}
    )
    inside = [
        "2025-05-02T22:00-07:00",
        "2025-05-02T23:59:59.999999-07:00",
        "2025-05-03T00:00-07:00",
        "2025-05-03T02:00-07:00",
    ]
    outside = [
        "2025-05-02T21:59:59.999999-07:00",
        "2025-05-03T02:00:00.000001-07:00",
        "2025-05-01T23:00-07:00",
        "2025-05-03T23:00-07:00",
    ]
    assert active_at(w, 0, *map(us, inside)) == [True] * 4
    assert active_at(w, 0, *map(us, outside)) == [False] * 4
    d = w.describe(np.array([0]), np.array([us("2025-05-03T01:00-07:00")]))
    assert d["window"][0] == "Fr 22:00-02:00"
    assert (d["window_start_local"][0], d["window_end_local"][0]) == (
        "2025-05-02T22:00:00-07:00",
        "2025-05-03T02:00:00-07:00",
    )
    assert (d["window_start_utc"][0], d["window_end_utc"][0]) == (
        "2025-05-03T05:00:00Z",
        "2025-05-03T09:00:00Z",
    )


def test_weekly_window_pads_reach_across_days():
    # 00:30-01:00 Mondays with 60 min pads: 23:30 Sunday is inside, 23:29:59.999999 is not
    w = windows(
        {"site_id": "c", "category": "ceremony", "hours": "Mo 00:30-01:00", "timezone": "UTC"}
    )
    assert active_at(w, 0, us("2025-05-04T23:30Z"), us("2025-05-05T02:00Z")) == [True, True]
    assert active_at(w, 0, us("2025-05-04T23:30Z") - 1, us("2025-05-05T02:00Z") + 1) == [
        False,
        False,
    ]
    assert active_at(w, 0, us("2025-05-11T23:45Z"), us("2025-05-06T00:45Z")) == [True, False]


def test_weekly_hours_only_between_the_validity_dates():
    w = windows(
        {
            "site_id": "y",
            "category": "school_bus_stop",
            "hours": "Mo-Fr 07:00-09:00; Fr 23:00-01:00",
            "timezone": LA,
            "start": "2025-09-03",
            "end": "2025-09-05",
        }
    )
    days = ["2025-09-02", "2025-09-03", "2025-09-05", "2025-09-08"]  # Tu We Fr Mo
    assert active_at(w, 0, *(us(f"{d}T08:00-07:00") for d in days)) == [False, True, True, False]
    # the occurrence beginning on the last date runs past it
    assert active_at(w, 0, us("2025-09-06T00:30-07:00"), us("2025-09-13T00:30-07:00")) == [
        True,
        False,
    ]
    lo, hi = w.span_us()
    assert lo[0] <= us("2025-09-03T07:00-07:00") and hi[0] >= us("2025-09-06T01:00-07:00")


def test_fall_back_repeated_hour_matches_both_occurrences():
    # 2025-11-02 (a Sunday): Los Angeles clocks go 01:59:59 PDT -> 01:00 PST.
    w = windows(
        {"site_id": "f", "category": "school_bus_stop", "hours": "Su 01:00-02:00", "timezone": LA}
    )
    first, second = us("2025-11-02T01:30-07:00"), us("2025-11-02T01:30-08:00")
    assert second - first == HOUR
    assert active_at(w, 0, first, second) == [True, True]
    # window edges: 01:00 PDT (08:00Z) .. 02:00 PST (10:00Z), both inclusive
    assert active_at(w, 0, us("2025-11-02T08:00Z"), us("2025-11-02T10:00Z")) == [True, True]
    assert active_at(w, 0, us("2025-11-02T08:00Z") - 1, us("2025-11-02T10:00Z") + 1) == [
        False,
        False,
    ]
    d = w.describe(np.array([0, 0]), np.array([first, second]))
    assert d["window_start_local"].tolist() == ["2025-11-02T01:00:00-07:00"] * 2
    assert d["window_end_local"].tolist() == ["2025-11-02T02:00:00-08:00"] * 2
    assert d["window_start_utc"].tolist() == ["2025-11-02T08:00:00Z"] * 2
    assert d["window_end_utc"].tolist() == ["2025-11-02T10:00:00Z"] * 2


def test_spring_forward_gap_matches_nothing_before_three():
    # 2025-03-09 (a Sunday): Los Angeles clocks go 01:59:59 PST -> 03:00 PDT (10:00Z).
    w = windows(
        {"site_id": "g", "category": "school_bus_stop", "hours": "Su 02:00-03:00", "timezone": LA},
        {"site_id": "p", "category": "ceremony", "hours": "Su 02:00-03:00", "timezone": LA},
    )
    jump = us("2025-03-09T10:00Z")
    assert active_at(w, 0, jump - HOUR, jump - 1) == [False, False]  # 01:00 .. 01:59:59.999999 PST
    assert active_at(w, 0, jump, jump + 1) == [True, False]  # 03:00 PDT is the (inclusive) end
    # wall-clock pads of an hour: 01:00 PST .. 04:00 PDT, i.e. 09:00Z .. 11:00Z
    assert active_at(w, 1, us("2025-03-09T09:00Z"), us("2025-03-09T11:00Z")) == [True, True]
    assert active_at(w, 1, us("2025-03-09T09:00Z") - 1, us("2025-03-09T11:00Z") + 1) == [
        False,
        False,
    ]
    d = w.describe(np.array([0]), np.array([jump]))
    assert (d["window_start_utc"][0], d["window_end_utc"][0]) == (
        "2025-03-09T10:00:00Z",
        "2025-03-09T10:00:00Z",
    )
    assert d["window_start_local"][0] == "2025-03-09T03:00:00-07:00"


def test_describe_one_off_window_and_inactive_pairs():
    w = windows(
        {
            "site_id": "o",
            "category": "ceremony",
            "start": "2025-05-01T14:00:00-07:00",
            "end": "2025-05-01T16:00:00-07:00",
        },
        {
            "site_id": "t",
            "category": "ceremony",
            "start": "2025-05-01T14:00",
            "end": "2025-05-01T16:00",
            "timezone": "Europe/Dublin",
        },
    )
    d = w.describe(
        np.array([0, 0, 1]), np.array([us("2025-05-01T22:00Z"), NO_TIME, us("2025-05-01T12:00Z")])
    )
    assert d["active"].tolist() == [True, False, True]
    assert d["window"].tolist() == [
        "2025-05-01T14:00:00-07:00/2025-05-01T16:00:00-07:00",
        "",
        "2025-05-01T14:00/2025-05-01T16:00",
    ]
    assert d["window_start_utc"].tolist() == ["2025-05-01T21:00:00Z", "", "2025-05-01T13:00:00Z"]
    assert d["window_end_local"].tolist() == [
        "2025-05-01T16:00:00-07:00",
        "",
        "2025-05-01T16:00:00+01:00",
    ]
    assert d["timezone"].tolist() == ["", "", "Europe/Dublin"]
    assert d["pad_before_s"].tolist() == [3600.0, 3600.0, 3600.0]


# An independent, slow evaluation of weekly hours with zoneinfo, one read at a time.
def _brute_weekly(t_us: int, tz: str, ranges, pad_before_s: float, pad_after_s: float) -> bool:
    local = (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t_us))
        .astimezone(ZoneInfo(tz))
        .replace(tzinfo=None)
    )
    for weekdays, a, b in ranges:
        for back in range(-1, 4):
            day = local.date() - timedelta(days=back)
            if day.weekday() not in weekdays:
                continue
            midnight = datetime.combine(day, time())
            lo = midnight + timedelta(minutes=a) - timedelta(seconds=pad_before_s)
            hi = midnight + timedelta(minutes=b) + timedelta(seconds=pad_after_s)
            if lo <= local <= hi:
                return True
    return False


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.frozensets(st.integers(0, 6), min_size=1),
            st.integers(0, 23 * 60 + 59),
            st.integers(1, 24 * 60 - 1),
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["ceremony", "demonstration", "school_bus_stop"]),
    st.sampled_from([LA, "Europe/Dublin", "Australia/Lord_Howe", "UTC"]),
    st.lists(
        st.integers(us("2025-01-01T00:00Z"), us("2026-01-01T00:00Z")), min_size=1, max_size=40
    ),
)
def test_weekly_hours_agree_with_a_per_read_evaluation(spec, category, tz, times):
    names = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
    ranges = [(days, a, (a + length) % 1440 or 1440) for days, a, length in spec]
    hours = "; ".join(
        f"{','.join(names[d] for d in sorted(days))} {a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"
        for days, a, b in ranges
    )
    w = windows({"site_id": "h", "category": category, "hours": hours, "timezone": tz})
    rule = POLICY.categories[category]
    expected_ranges = [(days, a, b if b > a else b + 1440) for days, a, b in ranges]
    t = np.array(times, dtype=np.int64)
    got = w.active(np.zeros(len(t), np.int64), t)
    want = [
        _brute_weekly(int(x), tz, expected_ranges, rule.pad_before_s, rule.pad_after_s) for x in t
    ]
    assert got.tolist() == want


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (
            {"category": "ceremony"},
            r"site 'x1': start/end/hours: no active window.*give start and end",
        ),
        ({"category": "ceremony", "start": "2025-05-01T14:00Z"}, r"site 'x1': end: missing"),
        (
            {"category": "ceremony", "hours": "Mo-Fr 07:00-09:00; PH off", "timezone": LA},
            r"site 'x1': hours: 'PH off'.*not supported",
        ),
        (
            {"category": "ceremony", "hours": "Mo-Fr 7:00-9:00", "timezone": LA},
            r"hours: '7:00-9:00' in 'Mo-Fr 7:00-9:00' is not supported",
        ),
        (
            {"category": "ceremony", "hours": "Mo-Fr 08:00-25:00", "timezone": LA},
            r"hours: '08:00-25:00'.*not a valid time range",
        ),
        (
            {"category": "ceremony", "hours": "Mo 08:00-08:00", "timezone": LA},
            r"hours: .*empty; write 00:00-24:00",
        ),
        (
            {"category": "ceremony", "hours": "Mo-Fr 07:00-09:00"},
            r"site 'x1': timezone: missing; hours are local",
        ),
        (
            {
                "category": "ceremony",
                "start": "2025-03-09T02:30",
                "end": "2025-03-09T04:00",
                "timezone": LA,
            },
            r"site 'x1': start: '2025-03-09T02:30' never existed in America/Los_Angeles",
        ),
        (
            {"category": "ceremony", "start": "2025-05-01T16:00Z", "end": "2025-05-01T14:00Z"},
            r"site 'x1': end: '2025-05-01T14:00Z' is before start",
        ),
        (
            {"category": "ceremony", "start": "2025-05-01T14:00", "end": "2025-05-01T16:00"},
            r"start: '2025-05-01T14:00' has no UTC offset.*add an offset",
        ),
        (
            {"category": "ceremony", "start": "May 1st", "end": "2025-05-01T16:00Z"},
            r"start: 'May 1st' is not an ISO-8601 time",
        ),
        (
            {
                "category": "ceremony",
                "start": "2025-05-01T14:00Z",
                "end": "2025-05-01T16:00Z",
                "timezone": "Mars/Olympus",
            },
            r"timezone: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            {
                "category": "ceremony",
                "hours": "Mo 08:00-09:00",
                "timezone": LA,
                "start": "2025-09-03T08:00",
            },
            r"start: with hours, start is the first/last date",
        ),
        ({"category": "worship"}, r"category: 'worship' is not covered by the chosen policy packs"),
    ],
)
def test_window_errors_name_site_field_and_fix(row, match):
    with pytest.raises(LayerError, match=match):
        windows({"site_id": "x1", **row})


def test_window_errors_name_the_source_file():
    frame = pd.DataFrame(
        {"site_id": ["m7"], "category": ["ceremony"], "source": ["events.geojson"]}
    )
    with pytest.raises(LayerError, match=r"^events\.geojson: site 'm7': start/end/hours"):
        EventWindows.from_sites(frame, POLICY)


def test_parse_window_accepts_missing_values_of_any_kind():
    w = parse_window(
        "a",
        start=pd.Timestamp("2025-05-01T14:00", tz="UTC"),
        end="2025-05-01T15:00Z",
        timezone=float("nan"),
        hours=pd.NA,
    )
    assert (w.kind, w.end_us - w.start_us) == ("once", HOUR)


# --------------------------------------------------------------------------- the space-time index


def test_index_add_and_remove_between_queries():
    idx = EventIndex()
    lon, lat = np.array([0.5, 0.5, 5.5]), np.array([0.5, 0.5, 5.5])
    t = np.array([100 * US, NO_TIME, 100 * US])
    assert [a.tolist() for a in idx.query(lon, lat, t)] == [[], []]
    idx.insert(1, (0, 0, 1, 1), 0, 200 * US)
    idx.insert(2, (0, 0, 1, 1), 300 * US, 400 * US)
    idx.insert(3, (5, 5, 6, 6), 0, 200 * US)
    assert [a.tolist() for a in idx.query(lon, lat, t)] == [[0, 1, 1, 2], [1, 1, 2, 3]]
    idx.delete(1)
    assert [a.tolist() for a in idx.query(lon, lat, t)] == [[1, 2], [2, 3]]
    idx.insert(1, (0, 0, 1, 1), 50 * US, 150 * US)
    idx.delete(3)
    assert [a.tolist() for a in idx.query(lon, lat, t)] == [[0, 1, 1], [1, 1, 2]]
    assert sorted(idx.keys()) == [1, 2] and len(idx) == 2 and 3 not in idx
    with pytest.raises(KeyError):
        idx.delete(3)


def test_index_key_with_several_boxes_and_the_antimeridian():
    idx = EventIndex()
    idx.insert(9, (179.9, 10, -179.9, 11), 0, HOUR)  # crosses 180°: stored as two boxes
    idx.insert(9, (179.95, 10.5, 179.99, 10.6), 0, HOUR)  # a second piece overlapping the first
    read, key = idx.query(
        np.array([179.97, -179.95, 0.0]), np.array([10.55, 10.5, 10.5]), np.zeros(3, np.int64)
    )
    assert (read.tolist(), key.tolist()) == ([0, 1], [9, 9])  # each pair once
    idx.delete(9)
    assert len(idx.query(np.array([179.97]), np.array([10.55]), np.zeros(1, np.int64))[0]) == 0


def test_index_rejects_bad_boxes():
    idx = EventIndex()
    with pytest.raises(ValueError, match="ends before it starts"):
        idx.insert(1, (0, 0, 1, 1), 10, 5)
    with pytest.raises(ValueError, match="not \\(minlon, minlat, maxlon, maxlat\\)"):
        idx.insert(1, (0, 1, 1, 0), 0, 5)


def _random_events(rng, n):
    """n one-off events: boxes over ~2 km, windows of 10 min to 6 h within a week."""
    minlon = -122.36 + rng.uniform(0, 0.02, n)
    minlat = 47.60 + rng.uniform(0, 0.02, n)
    size = rng.uniform(0.0005, 0.006, (n, 2))
    bounds = np.column_stack([minlon, minlat, minlon + size[:, 0], minlat + size[:, 1]])
    # start times at microsecond resolution, far past 2**53 µs, to test the float handling
    t0 = us("2025-05-01T00:00Z") + rng.integers(0, 7 * 24 * HOUR, n)
    t1 = t0 + rng.integers(10 * 60 * US, 6 * HOUR, n)
    cats = rng.choice(["ceremony", "demonstration", "school_bus_stop"], n)
    return bounds, t0, t1, cats


def _iso_z(t_us) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(t_us))).isoformat()


def test_many_overlapping_events_match_brute_force():
    rng = np.random.default_rng(7)
    n = 2000
    bounds, t0, t1, cats = _random_events(rng, n)
    w = windows(
        *(
            {"site_id": f"e{i}", "category": cats[i], "start": _iso_z(t0[i]), "end": _iso_z(t1[i])}
            for i in range(n)
        )
    )
    pad0 = np.array([POLICY.categories[c].pad_before_s for c in cats]) * US
    pad1 = np.array([POLICY.categories[c].pad_after_s for c in cats]) * US
    lo_span, hi_span = w.span_us()
    idx = EventIndex()
    for i in range(n):
        idx.insert(i, tuple(bounds[i]), lo_span[i], hi_span[i])

    # random reads, reads exactly on padded window edges and 1 µs beyond, untimed reads
    m = 6000
    pick = rng.integers(0, n, m)
    lon = rng.uniform(bounds[pick, 0], bounds[pick, 2])
    lat = rng.uniform(bounds[pick, 1], bounds[pick, 3])
    edges = np.stack([t0 - pad0, t1 + pad1, t0 - pad0 - 1, t1 + pad1 + 1]).astype(np.int64)
    t = np.where(
        rng.random(m) < 0.5,
        edges[rng.integers(0, 4, m), pick],
        us("2025-05-01T00:00Z") + rng.integers(0, 8 * 24 * HOUR, m),
    )
    t[rng.random(m) < 0.1] = NO_TIME

    def brute(keep):
        in_box = (lon[:, None] >= bounds[None, keep, 0]) & (lon[:, None] <= bounds[None, keep, 2])
        in_box &= (lat[:, None] >= bounds[None, keep, 1]) & (lat[:, None] <= bounds[None, keep, 3])
        timed = t[:, None] != NO_TIME
        in_time = (t[:, None] >= (t0 - pad0)[None, keep]) & (t[:, None] <= (t1 + pad1)[None, keep])
        r, k = np.nonzero(in_box & (~timed | in_time))
        return set(zip(r.tolist(), keep[k].tolist(), strict=True))

    def via_index():
        read, key = idx.query(lon, lat, t)
        keep = (t[read] == NO_TIME) | w.active(key, t[read])
        return set(zip(read[keep].tolist(), key[keep].tolist(), strict=True))

    everything = np.arange(n)
    want = brute(everything)
    assert len(want) > 5000  # the events overlap heavily
    assert via_index() == want

    # remove half the events, then add some back, querying in between
    gone = rng.choice(n, n // 2, replace=False)
    for k in gone:
        idx.delete(int(k))
    assert via_index() == brute(np.setdiff1d(everything, gone))
    back = gone[:300]
    for k in back:
        idx.insert(int(k), tuple(bounds[k]), lo_span[k], hi_span[k])
    assert via_index() == brute(np.setdiff1d(everything, gone[300:]))


def test_weekly_events_in_the_index():
    w = windows(
        {
            "site_id": "b1",
            "category": "school_bus_stop",
            "hours": "Mo-Fr 06:30-09:00,14:00-17:30",
            "timezone": LA,
        },
        {
            "site_id": "b2",
            "category": "school_bus_stop",
            "hours": "Mo-Fr 06:30-09:00",
            "timezone": LA,
            "start": "2025-09-03",
            "end": "2026-06-19",
        },
    )
    lo, hi = w.span_us()
    idx = EventIndex()
    for i in range(2):
        idx.insert(i, (-122.31, 47.61, -122.30, 47.62), lo[i], hi[i])
    t = np.array(
        [us("2025-09-04T07:00-07:00"), us("2025-08-28T07:00-07:00"), us("2025-09-04T15:00-07:00")]
    )
    read, key = idx.query(np.full(3, -122.305), np.full(3, 47.615), t)
    ok = w.active(key, t[read])
    assert list(zip(read[ok].tolist(), key[ok].tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (2, 0),
    ]


# --------------------------------------------------------------------------- command line


@pytest.fixture
def runner():
    return CliRunner()


def _cli():
    import geofence.cli.events  # noqa: F401  (registers `events` until commands.py imports it)
    from geofence.cli import cli

    return cli


def test_cli_add_list_remove_round_trip(runner, tmp_path):
    cli = _cli()
    path = tmp_path / "events.geojson"
    r = runner.invoke(cli, ["events", "add", str(path), "--name", "May Day march", "--category", "demonstration",
                            "--line", "-122.336 47.608,-122.330 47.612,-122.321 47.615", "--buffer-m", "50",
                            "--start", "2025-05-01T14:00", "--end", "2025-05-01T16:00", "--timezone", LA])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "event-1"
    r = runner.invoke(cli, ["events", "add", str(path), "--name", "Stop 12", "--category", "school_bus_stop", "--id", "stop-12",
                            "--point", "-122.30,47.62", "--hours", "Mo-Fr 06:30-09:00,14:00-17:30", "--timezone", LA])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["events", "add", str(path), "--name", "Relief camp", "--category", "disaster_relief",
                            "--geometry", "POLYGON ((-122.3 47.6, -122.29 47.6, -122.29 47.61, -122.3 47.6))",
                            "--start", "2025-05-01", "--end", "2025-05-31", "--timezone", LA])  # fmt: skip
    assert r.exit_code == 0, r.output

    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    first = doc["features"][0]
    assert first["geometry"]["type"] == "LineString"
    assert first["properties"] == {
        "site_id": "event-1", "name": "May Day march", "category": "demonstration", "start": "2025-05-01T14:00",
        "end": "2025-05-01T16:00", "timezone": LA, "hours": None, "buffer_m": 50.0,
    }  # fmt: skip
    assert "buffer_m" not in doc["features"][1]["properties"]

    r = runner.invoke(cli, ["events", "list", str(path), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["site_id"], x["geometry_type"]) for x in rows] == [
        ("event-1", "LineString"),
        ("stop-12", "Point"),
        ("event-3", "Polygon"),
    ]
    r = runner.invoke(cli, ["events", "list", str(path)])
    assert (
        r.exit_code == 0
        and "Mo-Fr 06:30-09:00,14:00-17:30" in r.stdout
        and "May Day march" in r.stdout
    )

    # the file is a site layer: its windows load with the same parser
    frame = pd.DataFrame([f["properties"] for f in read_events_file(path)["features"]])
    w = EventWindows.from_sites(frame, _policy_with_relief())
    assert w.active(
        np.array([0, 1, 2]),
        np.array(
            [
                us("2025-05-01T15:00-07:00"),
                us("2025-05-02T08:00-07:00"),
                us("2025-05-31T23:00-07:00"),
            ]
        ),
    ).all()

    r = runner.invoke(cli, ["events", "remove", str(path), "stop-12"])
    assert r.exit_code == 0, r.output
    assert [f["properties"]["site_id"] for f in read_events_file(path)["features"]] == [
        "event-1",
        "event-3",
    ]
    r = runner.invoke(cli, ["events", "remove", str(path), "stop-12"])
    assert r.exit_code == 1 and "no event with site_id 'stop-12'" in r.stderr


def _policy_with_relief() -> Policy:
    cats = dict(POLICY.categories, disaster_relief=_rule("disaster_relief", "event", 3600, 3600))
    return Policy(tier="near", categories=cats, packs=())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            [
                "--point",
                "1,2",
                "--start",
                "2025-03-09T02:30",
                "--end",
                "2025-03-09T04:00",
                "--timezone",
                LA,
            ],
            1,
            "never existed",
        ),
        (
            ["--point", "1,2", "--hours", "Mo-Fr 07:00-09:00; PH off", "--timezone", LA],
            1,
            "'PH off'",
        ),
        (["--point", "1,2"], 1, "no active window"),
        (
            ["--point", "1,2", "--start", "2025-05-01T16:00Z", "--end", "2025-05-01T14:00Z"],
            1,
            "is before start",
        ),
        (
            ["--start", "2025-05-01T14:00Z", "--end", "2025-05-01T16:00Z"],
            2,
            "exactly one of --geometry, --point or --line",
        ),
        (
            ["--point", "200,2", "--start", "2025-05-01T14:00Z", "--end", "2025-05-01T16:00Z"],
            1,
            "lon within ±180",
        ),
        (
            ["--point", "1", "--start", "2025-05-01T14:00Z", "--end", "2025-05-01T16:00Z"],
            2,
            "is not LON,LAT",
        ),
        (
            [
                "--point",
                "1,2",
                "--start",
                "2025-05-01T14:00Z",
                "--end",
                "2025-05-01T16:00Z",
                "--id",
                "keep",
            ],
            1,
            "exists",
        ),
    ],
)
def test_cli_add_never_writes_an_event_it_cannot_evaluate(runner, tmp_path, args, code, message):
    cli = _cli()
    path = tmp_path / "events.geojson"
    r = runner.invoke(cli, ["events", "add", str(path), "--name", "keep", "--category", "ceremony", "--id", "keep",
                            "--point", "3,4", "--start", "2025-05-01T14:00Z", "--end", "2025-05-01T16:00Z"])  # fmt: skip
    assert r.exit_code == 0, r.output
    before = path.read_bytes()
    r = runner.invoke(
        cli, ["events", "add", str(path), "--name", "x", "--category", "ceremony", *args]
    )
    assert r.exit_code == code, r.output
    assert message in r.output
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["events.geojson"]  # no partial file left


def test_cli_list_missing_file_is_an_error(runner, tmp_path):
    r = runner.invoke(_cli(), ["events", "list", str(tmp_path / "none.geojson")])
    assert r.exit_code == 1 and "no such events file" in r.stderr
