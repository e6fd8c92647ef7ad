"""``geofence report html``: the offline single-file HTML report of a scan (issue #9)."""

from __future__ import annotations

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import crs_opt, max_features_opt, max_vertices_opt, quiet_opt, verbose_opt


@cli.group()
def report():
    """Render a scan's report for people: an HTML page that works offline."""


@report.command("html")
@click.argument("report_path", metavar="REPORT")
@click.option(
    "--summary",
    "summary_path",
    required=True,
    metavar="SUMMARY",
    help="The scan's summary JSON (--summary of geofence scan).",
)
# --layers is optional here (the summary names its layers), so the shared required option does not fit
@click.option(
    "--layers",
    "layer_paths",
    multiple=True,
    metavar="PATH",
    help="Site layers the scan used; repeat. Default: the summary's files beside the summary.",
)
@click.option("-o", "--out", required=True, help="HTML file to write, or - for stdout.")
@click.option(
    "--max-points",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="Most flagged reads drawn one by one; above, a density grid and per-site totals.",
)
@click.option(
    "--context",
    "context_path",
    default=None,
    metavar="STREETS",
    help="Street lines for the map: a local OSM extract (.osm.pbf/.osm/.osm.bz2) or GeoJSON.",
)
@click.option(
    "--context-attribution",
    default=None,
    metavar="TEXT",
    help="Attribution of --context (default: OpenStreetMap's for OSM extracts).",
)
@click.option("--title", default=None, help="Page title.")
@crs_opt
@max_vertices_opt
@max_features_opt
@verbose_opt
@quiet_opt
def html(
    report_path,
    summary_path,
    layer_paths,
    out,
    max_points,
    context_path,
    context_attribution,
    title,
    crs,
    max_vertices,
    max_features,
    verbose,
    quiet,
):
    """Write an offline HTML page of a scan: map, charts and table of flagged reads.

    REPORT is the GeoJSON, GeoJSON-seq or CSV report of `geofence scan`.

    \b
    Example:
      geofence report html report.geojson --summary summary.json \\
        --layers sample_data/seattle/schools.toml -o report.html
    """
    from geofence.html import build_html

    setup_logging(verbose, quiet)
    res = build_html(
        report_path,
        summary_path,
        out=out,
        layers=list(layer_paths) or None,
        max_points=max_points,
        context=context_path,
        context_attribution=context_attribution,
        title=title,
        crs=crs,
        limits={"max_vertices_per_site": max_vertices, "max_features": max_features},
    )
    if not quiet and out != "-":
        how = "every read drawn" if res["mode"] == "points" else "density grid and per-site totals"
        click.echo(
            f"geofence: {res['path']}: {res['reads']:,} flagged reads ({how}), {res['sites_drawn']:,} sites, {res['bytes']:,} bytes",
            err=True,
        )


# ------------------------------------------------------------------ geofence scan --html


def _remember_html(ctx, param, value):
    # kept on the context, so that `scan` takes the option without a new parameter
    ctx.meta["geofence.html_out"] = value
    return value


html_option = click.option(
    "--html",
    "html_out",
    default=None,
    metavar="FILE",
    expose_value=False,
    callback=_remember_html,
    help="Also write the offline HTML report (as `geofence report html`) to FILE.",
)


class ScanHTML:
    """The ``--html`` page of a scan: built from the scan's report and summary once written.

    When the scan writes no report file (no ``--out``, or ``--out -``) or no summary, the
    scan writes them to a temporary directory; ``--out -`` is then copied to stdout.
    """

    def __init__(self, out, summary, html_out) -> None:
        self.html_out = html_out
        self._tmp = None
        self.stdout = False
        self.out, self.summary = out, summary
        if html_out is None:
            return
        if out in (None, "-") or summary is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="geofence-html-")
        if out in (None, "-"):
            self.stdout = out == "-"
            self.out = f"{self._tmp.name}/report"
        if summary is None:
            self.summary = f"{self._tmp.name}/summary.json"

    def finish(self, layers, *, crs=None, max_vertices=None, max_features=None) -> None:
        """Copy a temporary ``--out -`` report to stdout and write the page."""
        if self.html_out is None:
            return
        import shutil
        import sys

        from geofence.html import build_html

        try:
            if self.stdout:
                with open(self.out, "rb") as fh:
                    shutil.copyfileobj(fh, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            build_html(
                self.out,
                self.summary,
                out=self.html_out,
                layers=list(layers),
                crs=crs,
                limits={"max_vertices_per_site": max_vertices, "max_features": max_features},
            )
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()


def html_targets(out, summary):
    """``(out, summary, ScanHTML)`` for ``run_scan``: temporary files where ``--html`` needs them."""
    html = ScanHTML(out, summary, click.get_current_context().meta.get("geofence.html_out"))
    return html.out, html.summary, html
