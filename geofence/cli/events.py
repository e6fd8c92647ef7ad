"""``geofence events add|list|remove``: manage a GeoJSON file of time-bound fences (issue #7)."""

from __future__ import annotations

import json

import click
import shapely

from geofence.cli import cli
from geofence.model import CATEGORIES


def _geometry(ctx, param, value):
    """--geometry: GeoJSON (starts with ``{``) or WKT."""
    if value is None:
        return None
    try:
        return (
            shapely.from_geojson(value)
            if value.lstrip().startswith("{")
            else shapely.from_wkt(value)
        )
    except shapely.errors.GEOSException as exc:
        raise click.BadParameter(f"not GeoJSON or WKT ({exc})") from None


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not {what}") from None


def _point(ctx, param, value):
    """--point LON,LAT."""
    if value is None:
        return None
    xy = _numbers(value, "LON,LAT")
    if len(xy) != 2:
        raise click.BadParameter(f"{value!r} is not LON,LAT (e.g. -122.335,47.608)")
    return shapely.Point(xy)


def _line(ctx, param, value):
    """--line "LON LAT,LON LAT,..."."""
    if value is None:
        return None
    pairs = [p for p in value.split(",") if p.strip()]
    pts = [_numbers(p, "LON LAT") for p in pairs]
    if len(pts) < 2 or any(len(p) != 2 for p in pts):
        raise click.BadParameter(
            f"{value!r} is not two or more 'LON LAT' points separated by commas"
        )
    return shapely.LineString(pts)


@cli.group()
def events():
    """Manage an events file: time-bound fences (ceremonies, demonstrations, relief sites).

    An events file is a GeoJSON FeatureCollection; give it to scan and filter with
    --layers like any site layer.
    """


@events.command("add")
@click.argument("events_file", metavar="EVENTS_FILE")
@click.option("--name", required=True, help="What the event is (shown in reports).")
@click.option(
    "--category",
    required=True,
    type=click.Choice(CATEGORIES),
    help="Policy category, e.g. demonstration.",
)
@click.option(
    "--geometry", callback=_geometry, metavar="GEOJSON|WKT", help="Geometry in lon/lat degrees."
)
@click.option("--point", callback=_point, metavar="LON,LAT", help="A point site.")
@click.option(
    "--line", callback=_line, metavar='"LON LAT,LON LAT,..."', help="A route, e.g. a march."
)
@click.option(
    "--buffer-m",
    type=click.FloatRange(min=0),
    default=None,
    help="The event's extent in metres either side of its geometry (a march route's half-width; stored as buffer_m). The category's distance applies beyond it.",
)
@click.option(
    "--start",
    default=None,
    metavar="ISO",
    help="Start: ISO-8601 with offset, or naive with --timezone (a date with --hours).",
)
@click.option("--end", default=None, metavar="ISO", help="End, as --start.")
@click.option(
    "--timezone", default=None, metavar="TZ", help="IANA time zone, e.g. America/Los_Angeles."
)
@click.option(
    "--hours",
    default=None,
    help="Weekly hours, e.g. 'Mo-Fr 07:00-09:00,14:00-17:30' (needs --timezone).",
)
@click.option("--id", "site_id", default=None, help="Event id (default: the next free event-N).")
def add(
    events_file,
    name,
    category,
    geometry,
    point,
    line,
    buffer_m,
    start,
    end,
    timezone,
    hours,
    site_id,
):
    """Add an event to EVENTS_FILE (created when missing).

    \b
    Example: a march route with a two-hour window
      geofence events add events.geojson --name "May Day march" --category demonstration \\
        --line "-122.336 47.608,-122.330 47.612,-122.321 47.615" --buffer-m 50 \\
        --start 2025-05-01T14:00 --end 2025-05-01T16:00 --timezone America/Los_Angeles
    """
    from geofence.events import add_event

    given = [g for g in (geometry, point, line) if g is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --geometry, --point or --line")
    feature = add_event(
        events_file,
        site_id=site_id,
        name=name,
        category=category,
        geometry=given[0],
        start=start,
        end=end,
        timezone=timezone,
        hours=hours,
        buffer_m=buffer_m,
    )
    click.echo(feature["properties"]["site_id"])
    _note_permanent(category)


def _note_permanent(category: str) -> None:
    """Say so when the default packs fence the category always, so the window is moot."""
    from geofence.errors import GeofenceError
    from geofence.policy import load_policy

    try:
        rule = load_policy().categories.get(category)
    except GeofenceError:  # the packs are checked by `scan`; this is only a hint
        return
    if rule is not None and rule.temporal != "event":
        click.echo(
            f"geofence: note: {category} is permanent under the default packs: always fenced, its window is not used",
            err=True,
        )


def _window(props: dict) -> str:
    if props.get("hours"):
        dates = (
            f" ({props.get('start') or '...'}/{props.get('end') or '...'})"
            if props.get("start") or props.get("end")
            else ""
        )
        return f"{props['hours']}{dates}"
    return f"{props.get('start')}/{props.get('end')}"


@events.command("list")
@click.argument("events_file", metavar="EVENTS_FILE")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON array of the events' properties and geometry type.",
)
def list_(events_file, as_json):
    """List the events of EVENTS_FILE."""
    from geofence.events import read_events_file

    features = read_events_file(events_file)["features"]
    rows = [
        {**f["properties"], "geometry_type": (f.get("geometry") or {}).get("type")}
        for f in features
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = [("SITE_ID", "CATEGORY", "GEOMETRY", "WINDOW", "TIMEZONE", "NAME")]
    table += [
        (
            str(r["site_id"]),
            str(r.get("category")),
            str(r["geometry_type"]),
            _window(r),
            r.get("timezone") or "-",
            str(r.get("name")),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        click.echo(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )


@events.command("remove")
@click.argument("events_file", metavar="EVENTS_FILE")
@click.argument("site_id", metavar="ID")
def remove(events_file, site_id):
    """Remove the event ID from EVENTS_FILE."""
    from geofence.events import remove_event

    remove_event(events_file, site_id)
    click.echo(f"removed {site_id}", err=True)
