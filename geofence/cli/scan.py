"""``geofence scan``: audit read logs against site layers."""

from __future__ import annotations

import sys
import time

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import (
    deterministic_opt,
    parse_distances,
    policy_options,
    quiet_opt,
    reading_options,
    verbose_opt,
)
from geofence.cli.report import html_option, html_targets
from geofence.errors import UsageError
from geofence.report import FORMATS

EXIT_FLAGGED = 3


class _Progress:
    """Rows and rows/s on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def __call__(self, done: int) -> None:
        if self.enabled:
            rate = done / max(time.perf_counter() - self.t0, 1e-9)
            click.echo(f"\r{done:,} reads  {rate:,.0f} reads/s", err=True, nl=False)

    def close(self) -> None:
        if self.enabled:
            click.echo("", err=True)


def _storage_options(ctx, param, value) -> dict:
    """``--storage-option KEY=VALUE`` (repeatable): values read as JSON where they parse
    (``anon=true``, ``client_kwargs={"region_name": "eu-west-1"}``), else as strings."""
    import json

    out: dict = {}
    for item in value or ():
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE (e.g. endpoint_url=http://127.0.0.1:9000)"
            )
        try:
            out[key.strip()] = json.loads(val)
        except ValueError:
            out[key.strip()] = val
    return out


# Scale-out (issue #13): where the partitions of the plan run; outputs are the same bytes.
_SCALE_OUT = (
    click.option(
        "--engine",
        type=click.Choice(("local", "processes", "dask")),
        default=None,
        help="Where partitions run [default: local, or what --jobs/--workers/--scheduler imply]; outputs are byte-identical.",
    ),
    click.option(
        "--jobs",
        type=click.IntRange(min=1),
        default=None,
        help="Worker processes of --engine processes [default: CPU count].",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Start a local Dask cluster of N single-threaded worker processes.",
    ),
    click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Use a running Dask scheduler (tcp://host:8786); implies --engine dask.",
    ),
    click.option(
        "--staging",
        default=None,
        metavar="DIR|URL",
        help="Where partitions write their fragments; every worker must reach it [default: a hidden folder beside --out].",
    ),
    click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        callback=_storage_options,
        metavar="KEY=VALUE",
        help="fsspec option for s3:// or gs:// READS and --staging (e.g. endpoint_url=..., anon=true); repeat.",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Retries of a partition after an object-store error (bad input is never retried).",
    ),
    click.option(
        "--partition-rows",
        type=click.IntRange(min=1),
        default=None,
        help="Rows per partition of a Parquet input, in whole row groups [default: 2,000,000]; a text file is one partition.",
    ),
)


def scale_out_options(f):
    """The options of ``--engine`` and its cluster (issue #13)."""
    for opt in reversed(_SCALE_OUT):
        f = opt(f)
    return f


def _echo_execution(quiet: bool):
    def echo(ex: dict) -> None:
        if not quiet:
            builds = ", ".join(f"{w} {n}" for w, n in ex.get("engine_builds", {}).items())
            click.echo(
                f"geofence: {ex['engine']}: {ex['partitions']:,} partitions on {ex['workers']} workers "
                f"in {ex['seconds']:.1f} s ({ex['attempts']:,} attempts; engines built: {builds or 'none'})",
                err=True,
            )

    return echo


def read_key(path: str | None) -> bytes | None:
    """The key bytes of ``--pseudonymize-plates KEYFILE`` (stripped of a final newline)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            key = fh.read().rstrip(b"\r\n")
    except OSError as exc:
        raise UsageError(
            f"--pseudonymize-plates {path}: cannot read the key file ({exc.strerror.lower()}); create one with `head -c 32 /dev/urandom > {path}`"
        ) from None
    if len(key) < 16:
        raise UsageError(
            f"--pseudonymize-plates {path}: a key of at least 16 bytes is needed (e.g. `head -c 32 /dev/urandom > {path}`)"
        )
    return key


@cli.command()
@click.argument("reads", nargs=-1, required=True)
@policy_options
@reading_options
@click.option("-o", "--out", default=None, help="Report file, or - for stdout.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="geojson", show_default=True)
@click.option("--summary", default=None, help="Summary JSON file.")
@click.option(
    "--rejects", default=None, help="Write rejected rows, as they were, with a reason column."
)
@click.option(
    "--pseudonymize-plates",
    "key_file",
    default=None,
    metavar="KEYFILE",
    help="HMAC-SHA256 plates in the report with this key.",
)
@deterministic_opt
@click.option("--fail-on-flag", is_flag=True, help="Exit 3 when any read is flagged.")
@html_option
@click.option(
    "--cameras",
    "camera_table",
    default=None,
    metavar="FILE",
    help="Camera table (geofence cameras --camera-table, or CSV of camera_id,lat,lon): positions reads that have a camera id but no coordinates.",
)
@scale_out_options
@verbose_opt
@quiet_opt
def scan(
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
    out,
    fmt,
    summary,
    rejects,
    key_file,
    deterministic,
    fail_on_flag,
    camera_table,
    engine,
    jobs,
    workers,
    scheduler,
    staging,
    storage_options,
    retries,
    partition_rows,
    verbose,
    quiet,
):
    """Flag every read within a sensitive site's fence, with the exact distance.

    READS are read logs (CSV/TSV/pipe-delimited, plain, .gz, .bz2 or .zst; Parquet), - for
    stdin, globs ('logs/*.csv.gz') and s3:// or gs:// URLs (with --storage-option).

    \b
    Example:
      geofence scan sample_data/seattle/spd_alpr_2021-10-01_04.csv.gz \\
        --layers sample_data/seattle/schools.toml --timezone America/Los_Angeles \\
        --out report.geojson --summary summary.json
    """
    from geofence.scan import run_scan

    setup_logging(verbose, quiet)
    distances = parse_distances(distance_overrides)
    progress = _Progress(sys.stderr.isatty() and not quiet)
    # --html (issue #9): the report and summary the page is built from
    out, summary, html = html_targets(out, summary)
    doc = run_scan(
        list(reads),
        list(layer_paths),
        policy=list(policy_names) or None,
        tier=tier,
        distances=distances,
        crs=crs,
        out=out,
        fmt=fmt,
        summary=summary,
        rejects=rejects,
        columns=columns,
        timezone=timezone,
        batch_size=batch_size,
        pseudonymize_key=read_key(key_file),
        deterministic=deterministic,
        progress=progress,
        limits={
            "max_line_bytes": max_line_bytes,
            "max_vertices_per_site": max_vertices,
            "max_features": max_features,
        },
        cameras=camera_table,
        profile=profile,
        engine=engine,
        jobs=jobs,
        workers=workers,
        scheduler=scheduler,
        staging=staging,
        storage_options=storage_options,
        retries=retries,
        partition_rows=partition_rows,
        on_execution=_echo_execution(quiet),
    )
    progress.close()
    html.finish(layer_paths, crs=crs, max_vertices=max_vertices, max_features=max_features)
    if not quiet:
        cats = ", ".join(f"{k} {v:,}" for k, v in doc["flagged_by_category"].items()) or "none"
        rej = ", ".join(f"{k} {v:,}" for k, v in doc["rejected_by_reason"].items()) or "none"
        click.echo(
            f"geofence: {doc['reads_in']:,} reads: {doc['reads_clean']:,} clean, "
            f"{doc['reads_flagged']:,} flagged ({cats}), {doc['reads_rejected']:,} rejected ({rej}); "
            f"{doc['sites_fenced']:,} sites fenced",
            err=True,
        )
    if fail_on_flag and doc["reads_flagged"]:
        sys.exit(EXIT_FLAGGED)
