"""``geofence layers``: inspect site layers before a scan (issue #2)."""

from __future__ import annotations

import json

import click

from geofence.cli import cli
from geofence.cli.options import _split_pairs, crs_opt, quiet_opt, verbose_opt
from geofence.layers import DEFAULT_MAX_FEATURES, DEFAULT_MAX_VERTICES_PER_SITE, load_layers
from geofence.model import CATEGORIES


@cli.group()
def layers():
    """Inspect sensitive-site layers."""


@layers.command("check")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@crs_opt
@click.option(
    "--category",
    type=click.Choice(CATEGORIES),
    default=None,
    help="Category of every site of files that do not say (no category column or map).",
)
@click.option(
    "--columns",
    multiple=True,
    callback=_split_pairs,
    metavar="FIELD=COLUMN,...",
    help="Name the layer's columns: lat, lon, name, site_id, category.",
)
@click.option(
    "--max-features",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_FEATURES,
    show_default=True,
    help="Most features read from all files together.",
)
@click.option(
    "--max-vertices",
    "max_vertices_per_site",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_VERTICES_PER_SITE,
    show_default=True,
    help="Most vertices in one site's geometry.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def check(paths, crs, category, columns, max_features, max_vertices_per_site, as_json):
    """Load site layers and report what was found.

    Prints, per file, its format, CRS and SHA-256, the features read and loaded, every
    repaired and rejected feature with the reason; then the sites per category and the
    extent. Exits 1 when a layer cannot be loaded (rejected features are not errors).
    """
    layer = load_layers(
        paths,
        crs=crs,
        category=category,
        columns=columns or None,
        max_features=max_features,
        max_vertices_per_site=max_vertices_per_site,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "sites": len(layer),
                    "categories": layer.category_counts(),
                    "extent": layer.bounds,
                    "sources": [
                        {
                            "file": s.path.name,
                            "format": s.format,
                            "crs": s.crs,
                            "sha256": s.sha256,
                            "features_in": s.features_in,
                            "sites_loaded": s.sites_loaded,
                            "repaired": [list(r) for r in s.repaired],
                            "rejected": [list(r) for r in s.rejected],
                            "license": s.license,
                            "attribution": s.attribution,
                        }
                        for s in layer.sources
                    ],
                },
                indent=2,
            )
        )
        return
    for s in layer.sources:
        click.echo(f"{s.path.name}: {s.format}, CRS {s.crs}, sha256 {s.sha256[:12]}")
        click.echo(
            f"  features {s.features_in}, sites {s.sites_loaded}, "
            f"repaired {len(s.repaired)}, rejected {len(s.rejected)}"
        )
        for feature, what in s.repaired:
            click.echo(f"  repaired {feature}: {what}")
        for feature, why in s.rejected:
            click.echo(f"  rejected {feature}: {why}")
        if s.license or s.attribution:
            click.echo(
                f"  licence {s.license or 'not given'}, attribution {s.attribution or 'not given'}"
            )
        if s.license and "odbl" in s.license.lower():
            # ODbL 1.0 sections 4.4 and 4.6: a published derivative database stays under the ODbL.
            click.echo(
                "  note: this layer is an ODbL derivative database of OpenStreetMap; publish it under "
                'the ODbL 1.0 and credit "© OpenStreetMap contributors"'
            )
    click.echo(f"sites: {len(layer)}")
    for cat, n in layer.category_counts().items():
        click.echo(f"  {cat:<17} {n}")
    if layer.bounds is not None:
        west, south, east, north = layer.bounds
        click.echo(f"extent (EPSG:4326 lon/lat): {west:.6f} {south:.6f} {east:.6f} {north:.6f}")
    else:
        click.echo("extent: none (no sites)")


@layers.command("import-osm")
@click.argument(
    "inputs", nargs=-1, required=True, metavar="INPUT...", type=click.Path(dir_okay=False)
)
@click.option(
    "-o",
    "--out",
    required=True,
    metavar="OUT",
    help="Layer file to write: .geojson, .gpkg, .fgb or .parquet.",
)
@click.option(
    "--tags",
    "tag_table",
    default=None,
    metavar="TOML",
    help="Tag table (default: the shipped layers/osm_tags.toml).",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    type=click.Choice(CATEGORIES),
    metavar="ID",
    help="Keep only this category; repeat for several.",
)
@click.option(
    "--bbox",
    default=None,
    metavar="W,S,E,N",
    help="Keep only sites that intersect this box (lon/lat degrees).",
)
@click.option(
    "--incomplete",
    type=click.Choice(["lines", "skip", "error"]),
    default="lines",
    show_default=True,
    help="Relations with members missing from the input: keep their member lines, skip them, or stop.",
)
@click.option(
    "--building-hints",
    is_flag=True,
    help="Also use building=church/school/... (what a building was built as).",
)
@verbose_opt
@quiet_opt
def import_osm_command(
    inputs, out, tag_table, categories, bbox, incomplete, building_hints, verbose, quiet
):
    """Make a site layer from OpenStreetMap data (issue #8).

    INPUT: .osm.pbf, OSM XML (.osm, .osm.bz2, .osm.gz) or Overpass JSON ([out:json],
    out body or out geom). Areas are assembled by libosmium; invalid rings are repaired
    keeping every lobe; open ways and relations with missing members are listed. Prints
    one summary line. The layer records "© OpenStreetMap contributors" (ODbL 1.0).

    \b
    Example:
      geofence layers import-osm sample_data/osm/West-Oakland.osm.bz2 -o osm_sites.gpkg
    """
    from geofence.cli import setup_logging
    from geofence.osm import import_osm, parse_bbox

    setup_logging(verbose, quiet)
    result = import_osm(
        list(inputs),
        out,
        tags=tag_table,
        categories=list(categories) or None,
        bbox=parse_bbox(bbox) if bbox is not None else None,
        incomplete=incomplete,
        building_hints=building_hints,
    )
    if not quiet:
        click.echo(f"geofence: {result.summary_line()}", err=True)
