"""``geofence filter`` and ``geofence verify``: the pre-sharing hook on files and pipes."""

from __future__ import annotations

import datetime as _dt
import sys

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import (
    deterministic_opt,
    parse_distances,
    policy_options,
    quiet_opt,
    reading_options,
    recipient_options,
    verbose_opt,
)


def _as_of(ctx, param, value):
    if value is None:
        return None
    try:
        t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time such as 2025-03-01T00:00:00Z"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


@cli.command("filter")
@click.argument("reads")
@policy_options
@reading_options
@recipient_options
@click.option("--user", required=True, help="Username of the person sharing (audit log).")
@click.option(
    "-o",
    "--out",
    required=True,
    help="Shared rows (input format, bytes unchanged), or - for stdout.",
)
@click.option(
    "--withheld", required=True, help="Withheld rows with reason, category, site_id, distance_m."
)
@click.option("--manifest", required=True, help="Manifest JSON for the recipient to verify.")
@click.option(
    "--audit-log", default=None, help="Append one JSON line per run (Civ. Code 1798.90.52 fields)."
)
@click.option(
    "--max-age-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Withhold reads older than this.",
)
@click.option(
    "--as-of",
    callback=_as_of,
    default=None,
    help="Reference time for --max-age-days (default now).",
)
@deterministic_opt
@verbose_opt
@quiet_opt
def filter_cmd(
    reads,
    layer_paths,
    crs,
    policy_names,
    tier,
    distance_overrides,
    max_vertices,
    max_features,
    profile,
    columns,
    timezone,
    batch_size,
    max_line_bytes,
    recipient,
    recipient_type,
    recipient_state,
    purpose,
    user,
    sender,
    sender_state,
    declaration,
    out,
    withheld,
    manifest,
    audit_log,
    max_age_days,
    as_of,
    deterministic,
    verbose,
    quiet,
):
    """Withhold reads near sensitive sites, and refuse forbidden recipients, before sharing.

    Exit codes: 0 shared, 4 recipient refused (nothing shared), 1 bad input.

    \b
    Example:
      geofence filter reads.csv --layers schools.geojson --sender-state CA \\
        --recipient "Oakland PD" --recipient-type ca-public --purpose "robbery 24-1234" \\
        --user jdoe -o shared.csv --withheld withheld.csv --manifest manifest.json
    """
    from geofence.hook import run_filter
    from geofence.jurisdictions import Recipient

    setup_logging(verbose, quiet)
    rec = Recipient(recipient, recipient_type, recipient_state, purpose, declaration)
    doc = run_filter(
        reads,
        list(layer_paths),
        recipient=rec,
        user=user,
        out=out,
        withheld=withheld,
        manifest=manifest,
        sender=sender,
        sender_state=sender_state,
        policy=list(policy_names) or None,
        tier=tier,
        distances=parse_distances(distance_overrides),
        crs=crs,
        audit_log=audit_log,
        max_age_days=max_age_days,
        now=as_of,
        columns=columns,
        timezone=timezone,
        batch_size=batch_size,
        profile=profile,
        deterministic=deterministic,
        limits={
            "max_line_bytes": max_line_bytes,
            "max_vertices_per_site": max_vertices,
            "max_features": max_features,
        },
    )
    if not quiet:
        c = doc["counts"]
        why = ", ".join(f"{k} {v:,}" for k, v in c["withheld_by_reason"].items()) or "none"
        click.echo(
            f"geofence: {c['reads_in']:,} reads: {c['reads_shared']:,} shared, {c['reads_withheld']:,} withheld ({why})",
            err=True,
        )


@cli.command()
@click.argument("shared")
@click.option("--manifest", required=True, help="The manifest written by geofence filter.")
@click.option(
    "--layers",
    "layer_paths",
    multiple=True,
    help="Re-check every shared read against these layers.",
)
@click.option("--policy", "policy_names", multiple=True, help="Packs (default: the manifest's).")
@reading_options
@verbose_opt
@quiet_opt
def verify(
    shared,
    manifest,
    layer_paths,
    policy_names,
    profile,
    columns,
    timezone,
    batch_size,
    max_line_bytes,
    verbose,
    quiet,
):
    """Check a shared file against its manifest: hash, row count, and no read within a fence.

    Exits 0 when everything holds, 5 with one line per finding otherwise.

    \b
    Example:
      geofence verify shared.csv --manifest manifest.json --layers schools.geojson
    """
    from geofence.hook import verify as run_verify

    setup_logging(verbose, quiet)
    findings = run_verify(
        shared,
        manifest,
        layers=list(layer_paths) or None,
        policy=list(policy_names) or None,
        columns=columns,
        timezone=timezone,
        profile=profile,
    )
    for f in findings:
        click.echo(f"geofence: verify: {f}", err=True)
    if findings:
        sys.exit(5)
    if not quiet:
        click.echo("geofence: verify: OK", err=True)
