"""``geofence reads``: read-log formats (issue #8): profiles, sniffing, camera tables."""

from __future__ import annotations

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import columns_opt, quiet_opt, verbose_opt


@cli.group("reads")
def reads_group():
    """Read-log formats: format profiles, sniffing a file, camera tables from heartbeats."""


@reads_group.group("profiles")
def profiles_group():
    """The shipped format profiles (layers/profiles/*.toml)."""


@profiles_group.command("list")
def profiles_list():
    """List the shipped profiles: name, container, kind and title."""
    from geofence.profiles import list_profiles

    for p in list_profiles():
        click.echo(f"{p.name:<20} {p.container:<9} {p.kind:<7} {p.title}")


@profiles_group.command("show")
@click.argument("profile", metavar="NAME|FILE")
def profiles_show(profile):
    """Print a profile as written (TOML), after checking that it loads.

    \b
    Example:
      geofence reads profiles show uwchr-spd > my-profile.toml
    """
    from geofence.profiles import load_profile, profile_text

    load_profile(profile)
    click.echo(profile_text(profile), nl=False)


@reads_group.command("sniff")
@click.argument("file")
@click.option(
    "--name", default=None, help="Name of the proposed profile (default: from the file name)."
)
@click.option(
    "-o", "--out", default=None, help="Write the proposed profile here instead of stdout."
)
def sniff_cmd(file, name, out):
    """Look at the start of FILE and propose a profile for it (TOML on stdout).

    Only column names and forms are reported, never values. Check every line marked
    `guessed` before using the profile with --profile.

    \b
    Example:
      geofence reads sniff export.csv.gz -o layers/profiles/my-agency.toml
    """
    from geofence.profiles import write_sniffed

    found = write_sniffed(file, out, name=name)
    if out is not None and found.matches:
        click.echo(
            f"geofence: {file} fits the shipped profile(s): {', '.join(found.matches)}", err=True
        )


@reads_group.command("cameras")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--profile",
    default="openalpr-heartbeat",
    show_default=True,
    metavar="NAME|FILE",
    help="Camera profile of the files.",
)
@columns_opt
@click.option(
    "-o", "--out", required=True, help="Camera table CSV (camera_id,lon,lat,...), or - for stdout."
)
@verbose_opt
@quiet_opt
def cameras_cmd(files, profile, columns, out, verbose, quiet):
    """Build a camera table (latest position per camera) from OpenALPR heartbeats.

    FILES hold heartbeat JSON documents: one per file, JSON lines or arrays, plain or
    compressed. The table (camera_id, lon, lat, camera_name, agent, last_seen,
    heartbeats) positions reads that carry only a camera id (scan --cameras).

    \b
    Example:
      geofence reads cameras heartbeats/*.json -o cameras.csv
    """
    from geofence.profiles import write_camera_table

    setup_logging(verbose, quiet)
    cams = write_camera_table(list(files), out, profile=profile, columns=columns)
    if not quiet:
        for note in cams.notes:
            click.echo(f"geofence: note: {note}", err=True)
        click.echo(
            f"geofence: {cams.heartbeats:,} camera record(s): {cams.table.num_rows:,} camera(s) with a position, "
            f"{len(cams.without_position):,} without",
            err=True,
        )
