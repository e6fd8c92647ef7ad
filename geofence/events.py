"""Time-bound (event) fences: active windows and an rtree over space and time (issue #7).

Some policy categories are events, not places (policy.md section B): a funeral or
wedding, a demonstration, a disaster relief site, a school bus stop "during periods when
children are present". A site of such a category carries an *active window*, and a read
is flagged for it only when its time falls inside that window widened by the category's
pads (``pad_before_s`` / ``pad_after_s``, 60 minutes each by default [I]).

Window formats
--------------
Sites give their window in the optional text fields ``start``, ``end``, ``timezone``
and ``hours``:

``start`` and ``end`` (a one-off window)
    ISO-8601 with a UTC offset (``2025-05-01T14:00:00-07:00``, ``...Z``), or a naive
    time (``2025-05-01T14:00``) read in the site's IANA ``timezone``. Both are needed;
    ``end`` may not be before ``start``; both bounds are inclusive. A date alone
    (``2025-05-01``, needs ``timezone``) means the start of that local day for ``start``
    and the end of that local day (the next local midnight) for ``end``.

    A naive time in the fall-back repeated hour is read as the *earlier* instant for
    ``start`` and the *later* one for ``end`` (the widest, protective reading). A naive
    time in the spring-forward gap never existed and is an error. With an explicit
    offset the offset decides the instant and ``timezone`` only sets the local time
    shown in reports.

``hours`` (weekly recurring windows, needs ``timezone``)
    A subset of OpenStreetMap ``opening_hours``: rules separated by ``;``, each
    ``[<days> ]<ranges>``.  ``<days>`` is a comma list of ``Mo Tu We Th Fr Sa Su`` and
    day ranges ``Mo-Fr`` (a wrapping ``Sa-Mo`` is Sa, Su, Mo); without days a rule holds
    every day. ``<ranges>`` is a comma list of ``HH:MM-HH:MM``; ``24:00`` is allowed as
    an end, and an end before the start (``22:00-02:00``) runs past midnight into the
    next day. ``24/7`` is every day, all day. Example::

        Mo-Fr 06:30-09:00,14:00-17:30; Sa 22:00-02:00

    Rules are *unioned* (unlike OSM, where a later rule replaces earlier ones for the
    same days); the union is never narrower, which is the protective reading. Anything
    else (``off``, ``PH``, months, weeks, ``sunrise``, ...) is an error quoting the part.

    ``start`` / ``end`` are optional with ``hours`` and are then *dates* (``YYYY-MM-DD``,
    inclusive): only occurrences that begin on a local date in that range count (a
    ``22:00-02:00`` window on the last date runs to 02:00 the day after).

    Hours are local wall-clock times and are evaluated on the read's wall-clock time in
    the site's zone (UTC instant -> local time), and the pads widen them in wall-clock
    seconds. So on the fall-back day a ``01:00-02:00`` window holds both real 01:30s, and
    on the spring-forward day a ``02:00-03:00`` window holds nothing before 03:00.

Reads without a usable time (:data:`geofence.model.NO_TIME`) cannot be judged against a
window: :meth:`EventWindows.active` is False for them and :meth:`EventIndex.query` returns
them on space alone, so the engine can reject them as "near an event but untimed".

Events files
------------
``geofence events add|list|remove`` keep events in a GeoJSON FeatureCollection whose
features carry the properties ``site_id``, ``name``, ``category``, ``start``, ``end``,
``timezone``, ``hours`` and, when given, ``buffer_m``: the event's extent in metres either
side of its geometry. A march route is a LineString with a ``buffer_m``; a read is
flagged within the category's distance of the route grown by that extent, and its
distance is measured to the grown route (``max(d - buffer_m, 0)``, exact on the ellipsoid).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from geofence._arrays import full_object
from geofence.errors import LayerError, UsageError
from geofence.model import NO_TIME, Policy

__all__ = [
    "SPAN_MAX",
    "SPAN_MIN",
    "EventIndex",
    "EventWindows",
    "WeeklyRange",
    "Window",
    "add_event",
    "event_feature",
    "parse_hours",
    "parse_window",
    "read_events_file",
    "remove_event",
]

US = 1_000_000
DAY_US = 86_400 * US
WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
ALL_DAYS = 0b1111111

SPAN_MIN = int(np.iinfo(np.int64).min) + 1
"""Earliest possible active instant (one above :data:`NO_TIME`, so the two never mix)."""
SPAN_MAX = int(np.iinfo(np.int64).max)
"""Latest possible active instant, for windows without an end date."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY = r"(?:Mo|Tu|We|Th|Fr|Sa|Su)"
_DAYSPEC = rf"{_DAY}(?:-{_DAY})?"
_RULE_RE = re.compile(rf"^(?:(?P<days>{_DAYSPEC}(?:\s*,\s*{_DAYSPEC})*)\s+)?(?P<times>\S.*)$")
_RANGE_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_HOURS_HELP = (
    "write e.g. 'Mo-Fr 07:00-09:00,14:00-17:30; Sa 22:00-02:00' (days Mo..Su, times HH:MM-HH:MM)"
)

# The kinds of site window, as stored in EventWindows.kind.
ONCE, WEEKLY, ALWAYS = 0, 1, 2


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class WeeklyRange:
    """One weekly range of an ``hours`` value.

    Attributes
    ----------
    days : int
        Bit mask of the days the range *starts* on, Monday = bit 0 ... Sunday = bit 6.
    start_min, end_min : int
        Minutes after local midnight; ``end_min > start_min``; an end past 1440 runs into
        the next day.
    text : str
        The range as a one-range rule (``"Mo-Fr 14:00-17:30"``), for reports.
    """

    days: int
    start_min: int
    end_min: int
    text: str


@dataclass(frozen=True)
class Window:
    """The parsed active window of one site (see the module docstring for the formats).

    Attributes
    ----------
    kind : {"once", "weekly"}
    start_us, end_us : int or None
        For ``"once"``: the UTC epoch microseconds of the (unpadded) bounds, inclusive.
    timezone : str or None
        IANA zone of the site, if given.
    ranges : tuple of WeeklyRange
        For ``"weekly"``: the ranges, in rule order.
    valid_from_day, valid_to_day : int or None
        For ``"weekly"``: first and last local date (days since 1970-01-01) on which an
        occurrence may begin.
    start_offset_s, end_offset_s : int or None
        The UTC offsets written in ``start`` / ``end``, for local times in reports when
        the site has no timezone.
    text : str
        The window as written, for reports.
    """

    kind: Literal["once", "weekly"]
    start_us: int | None = None
    end_us: int | None = None
    timezone: str | None = None
    ranges: tuple[WeeklyRange, ...] = ()
    valid_from_day: int | None = None
    valid_to_day: int | None = None
    start_offset_s: int | None = None
    end_offset_s: int | None = None
    text: str = ""


def _text(value) -> str | None:
    """A cell as stripped text, or None when missing (None, NaN, NA, empty)."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | date):  # a layer reader that parsed dates for us
        return value.isoformat()
    text = str(value).strip()
    return text or None


class _Fail:
    """Builds the one-line LayerError of one site: where, which field, what to do."""

    def __init__(self, site_id: str, source: str | None) -> None:
        self.where = f"{source}: site {site_id!r}" if source else f"site {site_id!r}"

    def __call__(self, field: str, problem: str) -> LayerError:
        return LayerError(f"{self.where}: {field}: {problem}")


def _zone(fail: _Fail, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(
            "timezone", f"{name!r} is not an IANA time zone; use e.g. America/Los_Angeles"
        ) from None


def _wall_to_utc_us(
    wall_us: np.ndarray, tz: str, *, earlier: bool, gap: Literal["shift", "nat"]
) -> np.ndarray:
    """UTC epoch microseconds of local wall-clock times in ``tz``.

    A wall time in the repeated hour takes the earlier instant when ``earlier`` (else the
    later); one in the spring-forward gap becomes the instant the clocks jumped
    (``gap="shift"``) or :data:`NO_TIME` (``gap="nat"``).
    """
    import pandas as pd

    wall_us = np.asarray(wall_us, dtype=np.int64)
    if len(wall_us) == 0:
        return wall_us.copy()
    idx = pd.DatetimeIndex(wall_us.astype("datetime64[us]"))
    # pandas: True = the DST reading = the earlier of the two instants (checked for
    # America/Los_Angeles and for Europe/Dublin, whose tzdata DST is negative).
    loc = idx.tz_localize(
        tz,
        ambiguous=np.full(len(wall_us), earlier),
        nonexistent="shift_forward" if gap == "shift" else "NaT",
    )
    return np.asarray(loc.as_unit("us").asi8, dtype=np.int64)


def _utc_to_wall_us(time_us: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock times in ``tz`` (as epoch microseconds of a naive clock)."""
    import pandas as pd

    time_us = np.asarray(time_us, dtype=np.int64)
    if len(time_us) == 0:
        return time_us.copy()
    idx = pd.DatetimeIndex(time_us.astype("datetime64[us]")).tz_localize("UTC")
    return np.asarray(idx.tz_convert(tz).tz_localize(None).as_unit("us").asi8, dtype=np.int64)


def _instant(fail: _Fail, field: str, text: str, tz: str | None) -> tuple[int, int | None]:
    """Parse a one-off bound: (UTC epoch microseconds, UTC offset written or None)."""
    is_end = field == "end"
    if _DATE_RE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise fail(field, f"{text!r} is not a valid date; write YYYY-MM-DD") from None
        if tz is None:
            raise fail(
                field,
                f"the date {text!r} needs the site's timezone (e.g. America/Los_Angeles), or give a time with an offset",
            )
        if is_end:
            day += timedelta(days=1)  # through the end of the day: the next local midnight
        wall = (datetime(day.year, day.month, day.day) - _EPOCH_NAIVE) // _ONE_US
        # A midnight inside a gap (some zones change at 00:00): the day starts at the jump.
        return int(_wall_to_utc_us(np.array([wall]), tz, earlier=not is_end, gap="shift")[0]), None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            field,
            f"{text!r} is not an ISO-8601 time; write e.g. 2025-05-01T14:00:00-07:00, or a naive time with a timezone",
        ) from None
    if dt.tzinfo is not None:
        offset = dt.utcoffset()
        return (dt - _EPOCH) // _ONE_US, int(offset.total_seconds()) if offset is not None else None
    if tz is None:
        raise fail(
            field,
            f"{text!r} has no UTC offset and the site has no timezone; add an offset (e.g. -07:00) or a timezone (e.g. America/Los_Angeles)",
        )
    wall = (dt - _EPOCH_NAIVE) // _ONE_US
    # The protective reading of the repeated hour: earliest start, latest end.
    utc = int(_wall_to_utc_us(np.array([wall]), tz, earlier=not is_end, gap="nat")[0])
    if utc == NO_TIME:
        raise fail(
            field,
            f"{text!r} never existed in {tz} (spring-forward gap); give a time outside the gap, or one with an explicit offset",
        )
    return utc, None


def _day_number(fail: _Fail, field: str, text: str) -> int:
    if not _DATE_RE.match(text):
        raise fail(
            field,
            f"with hours, {field} is the first/last date (YYYY-MM-DD) the weekly hours hold; got {text!r}",
        )
    try:
        return (date.fromisoformat(text) - date(1970, 1, 1)).days
    except ValueError:
        raise fail(field, f"{text!r} is not a valid date; write YYYY-MM-DD") from None


def _clock(text: str, *, end: bool) -> int | None:
    """Minutes after midnight of ``HH:MM``; ``24:00`` only as an end; None if invalid."""
    h, m = int(text[:2]), int(text[3:])
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        return None
    return 60 * h + m


def _days_mask(spec: str) -> int:
    mask = 0
    for part in spec.split(","):
        a, _, b = part.strip().partition("-")
        i = WEEKDAYS.index(a)
        j = WEEKDAYS.index(b) if b else i
        for k in range(j - i + 1 if j >= i else j - i + 8):  # wrapping Sa-Mo
            mask |= 1 << ((i + k) % 7)
    return mask


def parse_hours(hours: str, *, fail: _Fail | None = None) -> tuple[WeeklyRange, ...]:
    """Parse an ``hours`` value (the ``opening_hours`` subset of the module docstring).

    Parameters
    ----------
    hours : str
        For example ``"Mo-Fr 07:00-09:00,14:00-17:30; Sa 22:00-02:00"``.

    Returns
    -------
    tuple of WeeklyRange
        One entry per time range, in the order written.

    Raises
    ------
    LayerError
        On syntax outside the subset, quoting the part that is not understood.

    Examples
    --------
    >>> [(r.days, r.start_min, r.end_min) for r in parse_hours("Sa-Mo 22:00-02:00")]
    [(97, 1320, 1560)]
    """
    fail = fail or _Fail("?", None)
    out: list[WeeklyRange] = []
    for rule in hours.split(";"):
        rule = rule.strip()
        if not rule:
            continue
        if rule == "24/7":
            out.append(WeeklyRange(ALL_DAYS, 0, 1440, "24/7"))
            continue
        m = _RULE_RE.match(rule)
        if m is None:  # pragma: no cover - the pattern matches any non-blank rule
            raise fail("hours", f"{rule!r} is not supported; {_HOURS_HELP}")
        days = m["days"]
        mask = _days_mask(days) if days else ALL_DAYS
        for part in m["times"].split(","):
            part = part.strip()
            r = _RANGE_RE.match(part)
            if r is None:
                raise fail("hours", f"{part!r} in {rule!r} is not supported; {_HOURS_HELP}")
            a = _clock(part[:5], end=False)
            b = _clock(part[6:], end=True)
            if a is None or b is None:
                raise fail(
                    "hours",
                    f"{part!r} in {rule!r} is not a valid time range (00:00-23:59, 24:00 only as an end)",
                )
            if b == a:
                raise fail(
                    "hours", f"{part!r} in {rule!r} is empty; write 00:00-24:00 for a whole day"
                )
            if b < a:
                b += 1440  # runs past midnight into the next day
            label = f"{days.replace(' ', '')} {part}" if days else part
            out.append(WeeklyRange(mask, a, b, label))
    if not out:
        raise fail("hours", f"{hours!r} has no time range; {_HOURS_HELP}")
    return tuple(out)


def parse_window(
    site_id: str,
    *,
    start=None,
    end=None,
    timezone=None,
    hours=None,
    source: str | None = None,
) -> Window:
    """Parse the active window of one event site.

    This is the one parser behind :class:`EventWindows` and ``geofence events add``, so an
    event that cannot be evaluated is never written.

    Parameters
    ----------
    site_id : str
        The site, for error messages.
    start, end, timezone, hours : str or None
        The site's fields (missing values may be None, NaN or empty).
    source : str, optional
        The file the site came from, for error messages.

    Returns
    -------
    Window

    Raises
    ------
    LayerError
        One line naming the site, the field and the fix: no window at all, a start
        without an end, an unparsable time, a naive time without a timezone or in the
        spring-forward gap, an end before the start, an unknown timezone, or ``hours``
        syntax outside the supported subset.

    Examples
    --------
    >>> w = parse_window("march-1", start="2025-05-01T14:00:00-07:00", end="2025-05-01T16:00:00-07:00")
    >>> w.kind, (w.end_us - w.start_us) // 3_600_000_000
    ('once', 2)
    """
    fail = _Fail(str(site_id), source)
    start, end, tz, hours = _text(start), _text(end), _text(timezone), _text(hours)
    if tz is not None:
        _zone(fail, tz)
    if hours is not None:
        if tz is None:
            raise fail(
                "timezone",
                "missing; hours are local wall-clock times, give the site's IANA timezone (e.g. America/Los_Angeles)",
            )
        ranges = parse_hours(hours, fail=fail)
        vfrom = _day_number(fail, "start", start) if start else None
        vto = _day_number(fail, "end", end) if end else None
        if vfrom is not None and vto is not None and vto < vfrom:
            raise fail("end", f"{end!r} is before start {start!r}; swap them or fix the date")
        text = hours if not (start or end) else f"{hours} ({start or '...'}/{end or '...'})"
        return Window(
            "weekly", timezone=tz, ranges=ranges, valid_from_day=vfrom, valid_to_day=vto, text=text
        )
    if start is None and end is None:
        raise fail(
            "start/end/hours",
            "no active window for an event category; give start and end (ISO-8601 with an offset or a timezone), or weekly hours with a timezone",
        )
    if start is None or end is None:
        missing = "start" if start is None else "end"
        raise fail(
            missing,
            "missing; an event window needs both start and end (or weekly hours with a timezone)",
        )
    t0, off0 = _instant(fail, "start", start, tz)
    t1, off1 = _instant(fail, "end", end, tz)
    if t1 < t0:
        raise fail("end", f"{end!r} is before start {start!r}; swap them or fix the date")
    return Window(
        "once",
        start_us=t0,
        end_us=t1,
        timezone=tz,
        start_offset_s=off0,
        end_offset_s=off1,
        text=f"{start}/{end}",
    )


# --------------------------------------------------------------------------- windows


def _column(sites, name: str, n: int) -> list:
    return sites[name].tolist() if name in sites.columns else [None] * n


def _pairs_expand(ptr: np.ndarray, site: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair, item) for every item ``ptr[s]:ptr[s+1]`` of every pair's site, in order."""
    cnt = ptr[site + 1] - ptr[site]
    pair = np.repeat(np.arange(len(site)), cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    item = np.repeat(ptr[site], cnt) + (np.arange(len(pair)) - first)
    return pair, item


def _iso(us: np.ndarray, offset_s: np.ndarray, *, utc: bool = False) -> np.ndarray:
    """ISO-8601 strings of instants shown at the given UTC offsets (``Z`` when ``utc``)."""
    us = np.asarray(us, dtype=np.int64)
    out = full_object(len(us), "")
    if len(us) == 0:
        return out
    offset_s = np.asarray(offset_s, dtype=np.int64)
    wall = us + offset_s * US
    unit = "s" if not (wall % US).any() else "us"
    text = np.datetime_as_string(wall.astype("datetime64[us]"), unit=unit)
    for off in np.unique(offset_s):
        sel = offset_s == off
        if utc:
            suffix = "Z"
        else:
            sign = "+" if off >= 0 else "-"
            h, rem = divmod(abs(int(off)), 3600)
            suffix = f"{sign}{h:02d}:{rem // 60:02d}" + (f":{rem % 60:02d}" if rem % 60 else "")
        out[sel] = np.char.add(text[sel], suffix)
    return out


class EventWindows:
    """Active windows of event sites, vectorised.

    Build with :meth:`from_sites`; site ``i`` is row ``i`` of the sites given. All the
    queries take parallel arrays ``site`` (int indices) and ``time_us`` (UTC epoch
    microseconds, :data:`~geofence.model.NO_TIME` where unknown) of (read, site) pairs.

    Attributes
    ----------
    site_id : numpy.ndarray
        Site ids (object).
    kind : numpy.ndarray
        int8 per site: 0 one-off window, 1 weekly hours, 2 always active (a site whose
        category the policy treats as permanent; its window is ignored).
    windows : list of Window or None
        The parsed windows (None for always-active sites).
    """

    def __init__(self, site_id, windows: list[Window | None], pad_before_s, pad_after_s) -> None:
        n = len(windows)
        self.site_id = np.asarray(site_id, dtype=object)
        self.windows = list(windows)
        self.kind = np.array(
            [ALWAYS if w is None else (ONCE if w.kind == "once" else WEEKLY) for w in windows],
            dtype=np.int8,
        )
        self.pad_before_us = np.round(np.asarray(pad_before_s, dtype=np.float64) * US).astype(
            np.int64
        )
        self.pad_after_us = np.round(np.asarray(pad_after_s, dtype=np.float64) * US).astype(
            np.int64
        )
        zones = sorted({w.timezone for w in windows if w is not None and w.timezone})
        self.timezones = tuple(zones)
        self.tz_code = np.array(
            [zones.index(w.timezone) if w is not None and w.timezone else -1 for w in windows],
            dtype=np.int64,
        )
        self.start_us = np.array(
            [w.start_us if w is not None and w.kind == "once" else 0 for w in windows],
            dtype=np.int64,
        )
        self.end_us = np.array(
            [w.end_us if w is not None and w.kind == "once" else 0 for w in windows], dtype=np.int64
        )
        self.start_offset_s = np.array(
            [(w.start_offset_s or 0) if w is not None else 0 for w in windows], dtype=np.int64
        )
        self.end_offset_s = np.array(
            [(w.end_offset_s or 0) if w is not None else 0 for w in windows], dtype=np.int64
        )
        big = np.iinfo(np.int64)
        self.valid_from_day = np.array(
            [
                w.valid_from_day if w is not None and w.valid_from_day is not None else big.min
                for w in windows
            ],
            dtype=np.int64,
        )
        self.valid_to_day = np.array(
            [
                w.valid_to_day if w is not None and w.valid_to_day is not None else big.max
                for w in windows
            ],
            dtype=np.int64,
        )
        ranges = [w.ranges if w is not None else () for w in windows]
        self.range_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(r) for r in ranges], out=self.range_ptr[1:])
        flat = [r for rs in ranges for r in rs]
        self.range_days = np.array([r.days for r in flat], dtype=np.int64)
        self.range_start_us = np.array([r.start_min for r in flat], dtype=np.int64) * 60 * US
        self.range_end_us = np.array([r.end_min for r in flat], dtype=np.int64) * 60 * US
        self.range_text = np.array([r.text for r in flat], dtype=object)

    @classmethod
    def from_sites(cls, sites, policy: Policy) -> EventWindows:
        """Parse the windows of event sites.

        Parameters
        ----------
        sites : pandas.DataFrame or geopandas.GeoDataFrame
            Rows of event-category sites, in the engine's site order, with ``site_id``,
            ``category`` and any of ``start``, ``end``, ``timezone``, ``hours`` (and
            ``source``, the file, for messages).
        policy : Policy
            Gives each category's ``temporal`` and pads.

        Returns
        -------
        EventWindows

        Raises
        ------
        LayerError
            When a site's category is not in the policy, or an event site has no
            window or one that cannot be parsed (see :func:`parse_window`).
        """
        n = len(sites)
        ids = [str(v) for v in _column(sites, "site_id", n)]
        cats = [str(v) for v in _column(sites, "category", n)]
        src = [_text(v) for v in _column(sites, "source", n)]
        cols = {c: _column(sites, c, n) for c in ("start", "end", "timezone", "hours")}
        windows: list[Window | None] = []
        pb = np.zeros(n)
        pa = np.zeros(n)
        for i in range(n):
            rule = policy.categories.get(cats[i])
            if rule is None:
                where = f"{src[i]}: site {ids[i]!r}" if src[i] else f"site {ids[i]!r}"
                raise LayerError(
                    f"{where}: category: {cats[i]!r} is not covered by the chosen policy packs; pass only sites of event categories"
                )
            if rule.temporal != "event":
                windows.append(None)  # permanent under this policy: always fenced
                continue
            windows.append(
                parse_window(
                    ids[i],
                    start=cols["start"][i],
                    end=cols["end"][i],
                    timezone=cols["timezone"][i],
                    hours=cols["hours"][i],
                    source=src[i],
                )
            )
            pb[i], pa[i] = rule.pad_before_s, rule.pad_after_s
        return cls(ids, windows, pb, pa)

    def __len__(self) -> int:
        return len(self.kind)

    def span_us(self) -> tuple[np.ndarray, np.ndarray]:
        """Earliest and latest UTC microsecond at which each site can be active, pads included.

        Exact for one-off windows. Weekly hours without dates span
        (:data:`SPAN_MIN`, :data:`SPAN_MAX`); with dates the span is widened by a day on
        each side, which covers every UTC offset (the index only needs a superset;
        :meth:`active` decides exactly). Always-active sites span everything.
        """
        n = len(self)
        lo = np.full(n, SPAN_MIN, dtype=np.int64)
        hi = np.full(n, SPAN_MAX, dtype=np.int64)
        once = self.kind == ONCE
        lo[once] = self.start_us[once] - self.pad_before_us[once]
        hi[once] = self.end_us[once] + self.pad_after_us[once]
        for i in np.flatnonzero(self.kind == WEEKLY):
            r = slice(self.range_ptr[i], self.range_ptr[i + 1])
            if self.valid_from_day[i] != np.iinfo(np.int64).min:
                first = int(self.valid_from_day[i]) * DAY_US + int(
                    (self.range_start_us[r] - self.pad_before_us[i]).min()
                )
                lo[i] = first - DAY_US
            if self.valid_to_day[i] != np.iinfo(np.int64).max:
                last = int(self.valid_to_day[i]) * DAY_US + int(
                    (self.range_end_us[r] + self.pad_after_us[i]).max()
                )
                hi[i] = last + DAY_US
        return lo, hi

    # -- evaluation ---------------------------------------------------------------

    def _wall(self, site: np.ndarray, time_us: np.ndarray) -> np.ndarray:
        """Local wall-clock microseconds of each pair's time in its site's zone."""
        wall = np.empty(len(site), dtype=np.int64)
        code = self.tz_code[site]
        for c in np.unique(code):
            sel = code == c
            wall[sel] = _utc_to_wall_us(time_us[sel], self.timezones[c]) if c >= 0 else time_us[sel]
        return wall

    def _weekly(
        self, site: np.ndarray, wall: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For pairs of weekly sites: (hit, range index, local day) of the first match.

        An occurrence of range ``r`` on local day ``D`` covers the wall-clock interval
        ``[D + start - pad_before, D + end + pad_after]``; the days that can hold the
        read's wall time ``L`` are ``ceil((L - hi) / day) .. floor((L - lo) / day)``,
        usually one or two, tried in a short loop over the offset (never over pairs).
        """
        n = len(site)
        hit = np.zeros(n, dtype=bool)
        rng_out = np.full(n, -1, dtype=np.int64)
        day_out = np.zeros(n, dtype=np.int64)
        pair, rng = _pairs_expand(self.range_ptr, site)
        if len(pair) == 0:
            return hit, rng_out, day_out
        s = site[pair]
        wall_p = wall[pair]
        lo = self.range_start_us[rng] - self.pad_before_us[s]
        hi = self.range_end_us[rng] + self.pad_after_us[s]
        d_first = -((hi - wall_p) // DAY_US)  # ceil((L - hi) / day)
        d_last = (wall_p - lo) // DAY_US
        days = self.range_days[rng]
        vfrom, vto = self.valid_from_day[s], self.valid_to_day[s]
        found = np.zeros(len(pair), dtype=bool)
        day = np.zeros(len(pair), dtype=np.int64)
        for k in range(int((d_last - d_first).max()) + 1):
            d = d_first + k
            weekday = (d + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
            ok = (
                ~found
                & (d <= d_last)
                & ((days >> weekday) & 1).astype(bool)
                & (d >= vfrom)
                & (d <= vto)
            )
            day[ok] = d[ok]
            found |= ok
        idx = np.flatnonzero(found)
        # ranges of a site are expanded in rule order: the first hit per pair is reported
        # (``pair`` is sorted, so the first hit of each pair starts a run; no sort needed)
        hp = pair[idx]
        first = np.ones(len(idx), dtype=bool)
        first[1:] = hp[1:] != hp[:-1]
        idx = idx[first]
        hit[pair[idx]] = True
        rng_out[pair[idx]] = rng[idx]
        day_out[pair[idx]] = day[idx]
        return hit, rng_out, day_out

    def active(self, site: np.ndarray, time_us: np.ndarray) -> np.ndarray:
        """True per (site, time) pair where the time is inside the site's padded window.

        Parameters
        ----------
        site : numpy.ndarray
            int indices into the sites.
        time_us : numpy.ndarray
            int64 UTC epoch microseconds; ``NO_TIME`` is never active (except for
            always-active sites).

        Returns
        -------
        numpy.ndarray
            bool per pair. Both padded bounds are inclusive.
        """
        site = np.asarray(site, dtype=np.int64)
        time_us = np.asarray(time_us, dtype=np.int64)
        return self._evaluate(site, time_us)[0]

    def _evaluate(self, site: np.ndarray, time_us: np.ndarray):
        n = len(site)
        out = np.zeros(n, dtype=bool)
        rng = np.full(n, -1, dtype=np.int64)
        day = np.zeros(n, dtype=np.int64)
        if n == 0:
            return out, rng, day
        kind = self.kind[site]
        timed = time_us != NO_TIME
        out[kind == ALWAYS] = True
        once = np.flatnonzero(timed & (kind == ONCE))
        s = site[once]
        t = time_us[once]
        out[once] = (t >= self.start_us[s] - self.pad_before_us[s]) & (
            t <= self.end_us[s] + self.pad_after_us[s]
        )
        weekly = np.flatnonzero(timed & (kind == WEEKLY))
        if len(weekly):
            s = site[weekly]
            hit, r, d = self._weekly(s, self._wall(s, time_us[weekly]))
            out[weekly] = hit
            rng[weekly] = r
            day[weekly] = d
        return out, rng, day

    def describe(self, site: np.ndarray, time_us: np.ndarray) -> dict[str, np.ndarray]:
        """The window each pair matched, for reports ("which window matched", issue #7).

        Parameters
        ----------
        site, time_us : numpy.ndarray
            As for :meth:`active`.

        Returns
        -------
        dict of str to numpy.ndarray
            Parallel arrays, one entry per pair:

            ``active`` (bool), ``window`` (the window or weekly range as written),
            ``timezone``, ``window_start_utc``, ``window_end_utc`` (ISO-8601, ``Z``),
            ``window_start_local``, ``window_end_local`` (ISO-8601 with the local
            offset), ``pad_before_s``, ``pad_after_s``. The bounds are those of the
            occurrence that matched, without pads (for weekly hours, the occurrence
            on the local day it began; for overlapping ranges the first in rule order).
            Text fields are empty where the pair is not active or the site is always
            active.
        """
        site = np.asarray(site, dtype=np.int64)
        time_us = np.asarray(time_us, dtype=np.int64)
        n = len(site)
        ok, rng, day = self._evaluate(site, time_us)
        out = {
            "active": ok,
            "window": full_object(n, ""),
            "timezone": full_object(n, ""),
            "window_start_utc": full_object(n, ""),
            "window_end_utc": full_object(n, ""),
            "window_start_local": full_object(n, ""),
            "window_end_local": full_object(n, ""),
            "pad_before_s": self.pad_before_us[site] / US,
            "pad_after_s": self.pad_after_us[site] / US,
        }
        sel = np.flatnonzero(ok & (self.kind[site] != ALWAYS))
        if len(sel) == 0:
            return out
        s = site[sel]
        t0 = self.start_us[s].copy()
        t1 = self.end_us[s].copy()
        text = np.array([self.windows[i].text for i in s], dtype=object)
        wk = np.flatnonzero(self.kind[s] == WEEKLY)
        for c in np.unique(self.tz_code[s[wk]]):
            g = wk[self.tz_code[s[wk]] == c]
            r = rng[sel[g]]
            base = day[sel[g]] * DAY_US
            tz = self.timezones[c]
            t0[g] = _wall_to_utc_us(base + self.range_start_us[r], tz, earlier=True, gap="shift")
            t1[g] = _wall_to_utc_us(base + self.range_end_us[r], tz, earlier=False, gap="shift")
            text[g] = self.range_text[r]
        # offsets for the local times: the site's zone, else the offsets written
        off0 = self.start_offset_s[s].copy()
        off1 = self.end_offset_s[s].copy()
        code = self.tz_code[s]
        for c in np.unique(code[code >= 0]):
            g = np.flatnonzero(code == c)
            tz = self.timezones[c]
            off0[g] = (_utc_to_wall_us(t0[g], tz) - t0[g]) // US
            off1[g] = (_utc_to_wall_us(t1[g], tz) - t1[g]) // US
        out["window"][sel] = text
        out["timezone"][sel] = np.array(
            [self.timezones[c] if c >= 0 else "" for c in code], dtype=object
        )
        zero = np.zeros(len(sel), np.int64)
        out["window_start_utc"][sel] = _iso(t0, zero, utc=True)
        out["window_end_utc"][sel] = _iso(t1, zero, utc=True)
        out["window_start_local"][sel] = _iso(t0, off0)
        out["window_end_local"][sel] = _iso(t1, off1)
        return out


# --------------------------------------------------------------------------- index


class EventIndex:
    """rtree over (lon, lat, time) so event fences can be added and removed in place.

    A key (e.g. a site index) may hold several boxes (one per fence piece, or the two
    halves of a box across the antimeridian); :meth:`delete` removes them all.

    Time is stored in whole seconds, widened by one second on each side: epoch
    microseconds do not fit a float64 exactly past 2**53, so the index is a superset
    filter and :meth:`EventWindows.active` decides exactly.

    Examples
    --------
    >>> idx = EventIndex()
    >>> idx.insert(7, (-122.35, 47.60, -122.33, 47.62), 0, 3_600_000_000)
    >>> idx.query(np.array([-122.34]), np.array([47.61]), np.array([60_000_000]))
    (array([0]), array([7]))
    """

    def __init__(self) -> None:
        from rtree import index

        self._index = index.Index(properties=index.Property(dimension=3))
        self._boxes: dict[int, list[tuple[float, ...]]] = {}

    @staticmethod
    def _boxes_of(bounds_lonlat, t0_us: int, t1_us: int) -> list[tuple[float, ...]]:
        minlon, minlat, maxlon, maxlat = (float(v) for v in bounds_lonlat)
        t0_us, t1_us = int(t0_us), int(t1_us)
        if not all(math.isfinite(v) for v in (minlon, minlat, maxlon, maxlat)) or minlat > maxlat:
            raise ValueError(
                f"bounds {bounds_lonlat!r} are not (minlon, minlat, maxlon, maxlat) in degrees"
            )
        if t1_us < t0_us:
            raise ValueError(f"time span {t0_us}..{t1_us} ends before it starts")
        t0 = float(t0_us // US - 1)
        t1 = float(-(-t1_us // US) + 1)
        if minlon <= maxlon:
            return [(minlon, minlat, t0, maxlon, maxlat, t1)]
        # across the antimeridian: two boxes
        return [(minlon, minlat, t0, 180.0, maxlat, t1), (-180.0, minlat, t0, maxlon, maxlat, t1)]

    def insert(
        self, key: int, bounds_lonlat: tuple[float, float, float, float], t0_us: int, t1_us: int
    ) -> None:
        """Add a box to ``key``: a lon/lat box (``minlon > maxlon`` crosses 180°) and a UTC span.

        ``t0_us``/``t1_us`` are as from :meth:`EventWindows.span_us`.
        """
        key = int(key)
        for box in self._boxes_of(bounds_lonlat, t0_us, t1_us):
            self._index.insert(key, box)
            self._boxes.setdefault(key, []).append(box)

    def delete(self, key: int) -> None:
        """Remove every box of ``key``; a ``KeyError`` if it has none."""
        key = int(key)
        for box in self._boxes.pop(key):
            self._index.delete(key, box)

    def __len__(self) -> int:
        return len(self._boxes)

    def __contains__(self, key: object) -> bool:
        return key in self._boxes

    def keys(self) -> list[int]:
        """The keys in the index, in insertion order."""
        return list(self._boxes)

    def query(
        self, lon: np.ndarray, lat: np.ndarray, time_us: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate (read, key) pairs whose box holds the read in space and time.

        Parameters
        ----------
        lon, lat : numpy.ndarray
            Read positions in degrees; rows that are not finite give no pairs.
        time_us : numpy.ndarray
            int64 UTC epoch microseconds. A read with ``NO_TIME`` matches on space only
            (any time), so the engine can tell "near an event but untimed".

        Returns
        -------
        read_index, key : numpy.ndarray
            int64, sorted by read then key, each pair once. One bulk rtree call
            (``Index.intersection_v``, rtree >= 1.1) over all reads.
        """
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        time_us = np.asarray(time_us, dtype=np.int64)
        ok = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat))
        empty = np.empty(0, dtype=np.int64)
        if len(ok) == 0 or not self._boxes:
            return empty, empty.copy()
        t = time_us[ok]
        untimed = t == NO_TIME
        ts = t / US  # float seconds: off by far less than the 1 s the boxes are widened by
        tmin = np.where(untimed, -np.inf, ts)
        tmax = np.where(untimed, np.inf, ts)
        mins = np.column_stack([lon[ok], lat[ok], tmin])
        maxs = np.column_stack([lon[ok], lat[ok], tmax])
        keys, counts = self._index.intersection_v(mins, maxs)
        read = np.repeat(ok, counts.astype(np.int64))
        keys = np.asarray(keys, dtype=np.int64)
        if len(read) == 0:
            return empty, empty.copy()
        order = np.lexsort((keys, read))
        read, keys = read[order], keys[order]
        first = np.ones(len(read), dtype=bool)
        first[1:] = (read[1:] != read[:-1]) | (keys[1:] != keys[:-1])
        return read[first], keys[first]


# --------------------------------------------------------------------------- events files


def read_events_file(path: str | Path, *, missing_ok: bool = False) -> dict:
    """Read an events file (a GeoJSON FeatureCollection).

    Parameters
    ----------
    path : str or pathlib.Path
    missing_ok : bool
        Return an empty collection when the file does not exist.

    Raises
    ------
    LayerError
        If the file is missing (and not ``missing_ok``), not JSON, or not a
        FeatureCollection of features with a ``site_id``.
    """
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return {"type": "FeatureCollection", "features": []}
        raise LayerError(
            f"{path}: no such events file; create it with `geofence events add {path} ...`"
        )
    try:
        doc = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LayerError(f"{path}: not valid JSON ({exc}); fix or remove the file") from None
    if (
        not isinstance(doc, dict)
        or doc.get("type") != "FeatureCollection"
        or not isinstance(doc.get("features"), list)
    ):
        raise LayerError(f"{path}: not a GeoJSON FeatureCollection; an events file holds one")
    for i, f in enumerate(doc["features"]):
        props = f.get("properties") if isinstance(f, dict) else None
        if not isinstance(props, dict) or not _text(props.get("site_id")):
            raise LayerError(
                f"{path}: feature {i}: properties.site_id: missing; every event needs an id"
            )
    return doc


def _write_events_file(path: str | Path, doc: dict) -> None:
    from geofence.atomic import atomic_output

    data = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
    with atomic_output(path) as out:
        out.write(data)


def event_feature(
    *,
    site_id: str,
    name: str,
    category: str,
    geometry,
    start: str | None = None,
    end: str | None = None,
    timezone: str | None = None,
    hours: str | None = None,
    buffer_m: float | None = None,
) -> dict:
    """A validated GeoJSON Feature for an events file.

    The window is checked with :func:`parse_window`, the parser of
    :class:`EventWindows`, so an event that cannot be evaluated is never written.

    Parameters
    ----------
    geometry : shapely geometry
        Point, LineString (e.g. a march route), Polygon or a multi-part of those, in
        lon/lat degrees.
    buffer_m : float, optional
        Stored as the property ``buffer_m``: the event's extent either side of its
        geometry (a march and its street); the category distance applies beyond it.

    Raises
    ------
    LayerError
        If the window or geometry is unusable.
    """
    import shapely
    from shapely.geometry import mapping

    fail = _Fail(site_id, None)
    parse_window(site_id, start=start, end=end, timezone=timezone, hours=hours)
    kinds = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
    if geometry is None or shapely.is_empty(geometry) or geometry.geom_type not in kinds:
        raise fail("geometry", f"must be a non-empty {', '.join(kinds)}")
    xy = shapely.get_coordinates(geometry)
    if not np.isfinite(xy).all() or (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise fail(
            "geometry",
            "coordinates must be longitude, latitude in degrees (lon within ±180, lat within ±90)",
        )
    if not shapely.is_valid(geometry):
        raise fail("geometry", f"invalid ({shapely.is_valid_reason(geometry)}); fix the outline")
    if buffer_m is not None and not (math.isfinite(buffer_m) and buffer_m >= 0):
        raise fail("buffer_m", f"{buffer_m} must be a finite distance >= 0 metres")
    props = {
        "site_id": site_id,
        "name": name,
        "category": category,
        "start": _text(start),
        "end": _text(end),
        "timezone": _text(timezone),
        "hours": _text(hours),
    }
    if buffer_m is not None:
        props["buffer_m"] = float(buffer_m)
    return {
        "type": "Feature",
        "properties": props,
        "geometry": json.loads(json.dumps(mapping(geometry))),
    }


def _next_id(features: list[dict]) -> str:
    taken = {str(f["properties"]["site_id"]) for f in features}
    k = len(features) + 1
    while f"event-{k}" in taken:
        k += 1
    return f"event-{k}"


def add_event(path: str | Path, **fields) -> dict:
    """Add one event to an events file (created when missing), atomically.

    Parameters
    ----------
    path : str or pathlib.Path
    **fields
        As for :func:`event_feature`; ``site_id`` may be None for the next free
        ``event-N``.

    Returns
    -------
    dict
        The feature written.

    Raises
    ------
    UsageError
        If the id is already in the file.
    LayerError
        If the file or the event is unusable.
    """
    doc = read_events_file(path, missing_ok=True)
    site_id = fields.pop("site_id", None) or _next_id(doc["features"])
    if any(str(f["properties"]["site_id"]) == site_id for f in doc["features"]):
        raise UsageError(
            f"{path}: an event with site_id {site_id!r} exists; remove it first or choose another --id"
        )
    feature = event_feature(site_id=site_id, **fields)
    doc["features"].append(feature)
    _write_events_file(path, doc)
    return feature


def remove_event(path: str | Path, site_id: str) -> dict:
    """Remove the event ``site_id`` from an events file, atomically; returns it.

    Raises
    ------
    UsageError
        If no event has that id.
    """
    doc = read_events_file(path)
    keep = [f for f in doc["features"] if str(f["properties"]["site_id"]) != site_id]
    if len(keep) == len(doc["features"]):
        raise UsageError(
            f"{path}: no event with site_id {site_id!r}; `geofence events list {path}` shows the ids"
        )
    removed = next(f for f in doc["features"] if str(f["properties"]["site_id"]) == site_id)
    doc["features"] = keep
    _write_events_file(path, doc)
    return removed
