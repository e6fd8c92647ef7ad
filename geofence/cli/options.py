"""Options shared by several commands, defined once (as rasterio's ``rio/options.py``)."""

from __future__ import annotations

import click

from geofence.errors import UsageError
from geofence.model import TIERS


def _split_pairs(ctx, param, value):
    """Parse ``a=b,c=d`` (repeatable) into a dict."""
    out: dict[str, str] = {}
    for item in value or ():
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, val = part.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise click.BadParameter(f"{part!r} is not FIELD=COLUMN (e.g. lat=Y,lon=X)")
            out[key.strip()] = val.strip()
    return out


layers_opt = click.option(
    "--layers",
    "layer_paths",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Site layer file or layer definition (.toml); repeat for several.",
)
crs_opt = click.option(
    "--crs", default=None, help="CRS of layers that carry none (e.g. EPSG:2926)."
)
policy_opt = click.option(
    "--policy",
    "policy_names",
    multiple=True,
    metavar="NAME|PATH",
    help="Policy pack by name or file; repeat. Default: ice-2011 + cbp-2013 + dhs-2021.",
)
tier_opt = click.option(
    "--tier",
    type=click.Choice(TIERS),
    default="near",
    show_default=True,
    help="Distance tier of every category (at 30 m, near 150 m, vicinity 400 m by default).",
)
distance_opt = click.option(
    "--distance",
    "distance_overrides",
    multiple=True,
    callback=_split_pairs,
    metavar="CATEGORY=METRES",
    help="Override a category's distance, e.g. --distance medical=250.",
)
columns_opt = click.option(
    "--columns",
    multiple=True,
    callback=_split_pairs,
    metavar="FIELD=COLUMN,...",
    help="Name the input columns: lat, lon, timestamp, plate, read_id, camera_id, agency "
    "(with --profile also plate_region, agent, direction, confidence...; overrides the profile).",
)
timezone_opt = click.option(
    "--timezone",
    default=None,
    help="IANA time zone of timestamps written without an offset [default: the profile's, else UTC].",
)
# issue #8: vendor formats (layers/profiles/*.toml; `geofence reads profiles list`)
profile_opt = click.option(
    "--profile",
    default=None,
    metavar="NAME|FILE",
    help="Format profile of the read log: a shipped name (uwchr-spd, openalpr-group, ...) or a .toml file.",
)
batch_opt = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Reads per batch (memory vs. speed; never changes results).",
)
verbose_opt = click.option(
    "-v", "--verbose", count=True, help="More detail on stderr; -v shows tracebacks."
)
quiet_opt = click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
deterministic_opt = click.option(
    "--deterministic",
    is_flag=True,
    help="Fix the run-time fields (timestamps) so reruns are byte-identical.",
)


max_line_opt = click.option(
    "--max-line-bytes",
    type=click.IntRange(min=1),
    default=1 << 20,
    show_default=True,
    help="Longest row accepted (resource guard).",
)
max_vertices_opt = click.option(
    "--max-vertices",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Most vertices per site (resource guard).",
)
max_features_opt = click.option(
    "--max-features",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Most features per layer (resource guard).",
)


def reading_options(f):
    """Options every command that reads a read log takes."""
    for opt in reversed((profile_opt, columns_opt, timezone_opt, batch_opt, max_line_opt)):
        f = opt(f)
    return f


def policy_options(f):
    """Options every command that applies fences takes."""
    for opt in reversed(
        (
            layers_opt,
            crs_opt,
            policy_opt,
            tier_opt,
            distance_opt,
            max_vertices_opt,
            max_features_opt,
        )
    ):
        f = opt(f)
    return f


def recipient_options(f):
    """Who receives a share and why: the options of ``filter`` and ``serve`` (issues #4, #12)."""
    from geofence.jurisdictions import RECIPIENT_TYPES

    opts = (
        click.option("--recipient", required=True, help="Receiving agency or organisation."),
        click.option(
            "--recipient-type",
            required=True,
            type=click.Choice(RECIPIENT_TYPES),
            help="Kind of recipient.",
        ),
        click.option("--recipient-state", default=None, help="Two-letter state of the recipient."),
        click.option(
            "--purpose", required=True, help="Purpose of the share (checked against purpose rules)."
        ),
        click.option("--sender", default=None, help="Sending agency (audit log: organisation)."),
        click.option(
            "--sender-state",
            default=None,
            help="Two-letter state of the sender; selects layers/jurisdictions/XX.toml.",
        ),
        click.option(
            "--declaration",
            default=None,
            help="Reference of a recipient's written declaration (Illinois).",
        ),
    )
    for opt in reversed(opts):
        f = opt(f)
    return f


def parse_distances(overrides: dict) -> dict[str, float]:
    """``--distance CATEGORY=METRES`` values as floats, or a one-line error."""
    out = {}
    for k, v in overrides.items():
        try:
            out[k] = float(v)
        except ValueError:
            raise UsageError(
                f"--distance {k}={v}: the distance must be a number of metres, e.g. --distance {k}=250"
            ) from None
    return out
