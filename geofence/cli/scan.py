"""``geofence scan``: audit read logs against site layers."""

from __future__ import annotations

import sys
import time

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import (
    parse_distances,
    policy_options,
    quiet_opt,
    reading_options,
    verbose_opt,
)
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


def read_key(path: str | None) -> bytes | None:
    """The key bytes of ``--pseudonymize-plates KEYFILE`` (stripped of a final newline)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            key = fh.read().rstrip(b"\r\n")
    except OSError as exc:
        raise UsageError(f"--pseudonymize-plates {path}: cannot read the key file ({exc.strerror.lower()}); create one with `head -c 32 /dev/urandom > {path}`") from None
    if len(key) < 16:
        raise UsageError(f"--pseudonymize-plates {path}: a key of at least 16 bytes is needed (e.g. `head -c 32 /dev/urandom > {path}`)")
    return key


@cli.command()
@click.argument("reads", nargs=-1, required=True)
@policy_options
@reading_options
@click.option("-o", "--out", default=None, help="Report file, or - for stdout.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="geojson", show_default=True)
@click.option("--summary", default=None, help="Summary JSON file.")
@click.option("--rejects", default=None, help="Write rejected rows, as they were, with a reason column.")
@click.option("--pseudonymize-plates", "key_file", default=None, metavar="KEYFILE", help="HMAC-SHA256 plates in the report with this key.")
@click.option("--deterministic", is_flag=True, help="Fix the run-time field so reruns are byte-identical.")
@click.option("--fail-on-flag", is_flag=True, help="Exit 3 when any read is flagged.")
@verbose_opt
@quiet_opt
def scan(reads, layer_paths, crs, policy_names, tier, distance_overrides, max_vertices, max_features, columns, timezone, batch_size, max_line_bytes, out, fmt, summary, rejects, key_file, deterministic, fail_on_flag, verbose, quiet):
    """Flag every read within a sensitive site's fence, with the exact distance.

    READS are read logs (CSV/TSV/pipe-delimited, plain, .gz, .bz2 or .zst), or - for
    stdin.

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
        limits={"max_line_bytes": max_line_bytes, "max_vertices_per_site": max_vertices, "max_features": max_features},
    )
    progress.close()
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
