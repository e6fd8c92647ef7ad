"""``geofence cameras``: which fixed ALPR cameras stand within a fence of a sensitive site (issue #10)."""

from __future__ import annotations

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import (
    _split_pairs,
    deterministic_opt,
    parse_distances,
    policy_options,
    quiet_opt,
    verbose_opt,
)


@cli.command()
@click.argument("cameras", nargs=-1, required=True)
@policy_options
@click.option(
    "--distance-m",
    "distances_m",
    default=None,
    metavar="M[,M...]",
    help="Distances in metres for every category, e.g. 150,300; pairs are reported within the largest. Default: the --tier distance of each category.",
)
@click.option(
    "--link-m",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Cameras this close (chained) are one installation.",
)
@click.option(
    "--half-angle",
    "half_angle",
    type=click.FloatRange(0, 180),
    default=45.0,
    show_default=True,
    help="Degrees either side of a heading counted as view=toward.",
)
@click.option(
    "--columns",
    multiple=True,
    callback=_split_pairs,
    metavar="FIELD=NAME,...",
    help="Name the camera columns/properties: lat, lon, camera_id, operator, manufacturer, camera_type, direction.",
)
@click.option("-o", "--out", default=None, help="Camera-site pairs file, or - for stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("geojson", "geojsonseq", "csv")),
    default="geojson",
    show_default=True,
)
@click.option("--summary", default=None, help="Summary JSON file.")
@click.option(
    "--rejects", default=None, help="Camera records without a valid position, with a reason (CSV)."
)
@click.option(
    "--camera-table",
    default=None,
    help="One row per camera: id, position, nearest site per category (CSV; `scan --cameras` reads it).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Cameras per batch (never changes results).",
)
@deterministic_opt
@verbose_opt
@quiet_opt
def cameras(
    cameras,
    layer_paths,
    crs,
    policy_names,
    tier,
    distance_overrides,
    max_vertices,
    max_features,
    distances_m,
    link_m,
    half_angle,
    columns,
    out,
    fmt,
    summary,
    rejects,
    camera_table,
    batch_size,
    deterministic,
    verbose,
    quiet,
):
    """Measure fixed ALPR cameras against sensitive-site fences: which stand within them.

    CAMERAS are GeoJSON, GeoJSON-seq or Overpass JSON of camera nodes (OSM
    man_made=surveillance + surveillance:type=ALPR), or CSV with a position; plain or
    gzipped. One record per camera-site pair within the largest distance, with the exact
    geodesic distance, installation and view (toward/side/away/unknown: it annotates,
    never filters).

    \b
    Example:
      geofence cameras sample_data/cameras/osm_alpr_nodes_global.geojson.gz \\
        --layers sample_data/cameras/ca_public_schools.toml \\
        --policy sample_data/cameras/schools_footprint0.toml --distance-m 150,300 \\
        --out pairs.geojson --summary summary.json --camera-table cameras.csv
    """
    from geofence.cameras import run_cameras

    setup_logging(verbose, quiet)
    doc = run_cameras(
        list(cameras),
        list(layer_paths),
        policy=list(policy_names) or None,
        tier=tier,
        distances_m=distances_m,
        distance_overrides=parse_distances(distance_overrides),
        link_m=link_m,
        half_angle_deg=half_angle,
        columns=columns,
        crs=crs,
        out=out,
        fmt=fmt,
        summary=summary,
        rejects=rejects,
        camera_table=camera_table,
        batch_size=batch_size,
        deterministic=deterministic,
        limits={"max_vertices_per_site": max_vertices, "max_features": max_features},
    )
    if not quiet:
        parts = []
        for label, v in doc["by_distance"].items():
            within = f"{label} m" if label[:1].isdigit() else f"the {label} tier"
            parts.append(
                f"within {within}: {v['cameras']:,} cameras / {v['installations']:,} installations / {v['sites']:,} sites"
            )
        rej = ", ".join(f"{k} {v:,}" for k, v in doc["rejected_by_reason"].items()) or "none"
        click.echo(
            f"geofence: {doc['cameras_in']:,} cameras: {doc['cameras_near']:,} near a site, {doc['cameras_not_near']:,} not, "
            f"{doc['cameras_rejected']:,} rejected ({rej}); "
            + "; ".join(parts)
            + f"; {doc['sites_fenced']:,} sites fenced",
            err=True,
        )
