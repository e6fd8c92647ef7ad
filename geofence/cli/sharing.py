"""``geofence sharing``: audit a vendor sharing network against state sharing law (issue #11)."""

from __future__ import annotations

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import _split_pairs, quiet_opt, verbose_opt


@cli.command("sharing")
@click.argument("links")
@click.option(
    "--rules",
    "rule_names",
    multiple=True,
    required=True,
    metavar="NAME|PATH",
    help="Recipient rules by sender state (ca, il) or a .toml file; repeat or comma-separate.",
)
@click.option(
    "--agencies",
    default=None,
    metavar="FILE",
    help="CSV of name, state, type[, ori, note] that overrides inference.",
)
@click.option(
    "--columns",
    multiple=True,
    callback=_split_pairs,
    metavar="FIELD=COLUMN,...",
    help="Name the link columns: src, dst, src_id, dst_id.",
)
@click.option(
    "--source-state",
    "source_states",
    multiple=True,
    metavar="XX",
    help="Audit only sources of this state (default: every state with --rules); repeat.",
)
@click.option(
    "--as-of",
    default=None,
    metavar="DATE",
    help="Date of the data (YYYY-MM-DD), written on every output.",
)
@click.option("-o", "--out", required=True, help="Decisions table, or - for stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="Format of --out (default from its suffix, else csv).",
)
@click.option(
    "--graph",
    "graphs",
    multiple=True,
    metavar="FILE",
    help="The audited network as GraphML (.graphml) or node-link JSON (.json); repeat.",
)
@click.option(
    "--classification",
    default=None,
    metavar="FILE",
    help="Every agency with its state, type and the rule that decided them (CSV).",
)
@click.option(
    "--summary",
    default=None,
    metavar="FILE",
    help="Summary JSON per source state and source agency.",
)
@verbose_opt
@quiet_opt
def sharing_cmd(
    links,
    rule_names,
    agencies,
    columns,
    source_states,
    as_of,
    out,
    fmt,
    graphs,
    classification,
    summary,
    verbose,
    quiet,
):
    """Decide every link of a sharing network (source grants recipient search access).

    Each recipient's state and type are inferred from its name (or taken from
    --agencies) and the link is decided with the recipient rules of the source's state:
    allowed, conflict, needs-declaration or review.

    \b
    Example:
      geofence sharing sample_data/flock/agency_access20240426.csv.gz --rules ca --rules il \\
        --agencies sample_data/flock/agencies_reviewed.csv --as-of 2024-04-26 \\
        --out decisions.csv --summary summary.json --classification agencies.csv --graph network.graphml
    """
    from geofence.sharing import run_sharing

    setup_logging(verbose, quiet)
    doc = run_sharing(
        links, list(rule_names), out=out, fmt=fmt, agencies=agencies, columns=columns,
        source_states=list(source_states) or None, as_of=as_of, graph=list(graphs),
        classification=classification, summary=summary,
    )  # fmt: skip
    if not quiet:
        c = doc["counts"]
        dec = ", ".join(f"{k} {v:,}" for k, v in c["decisions"].items())
        skipped = f"{c['out_of_scope']:,} out of scope, {c['duplicates']:,} duplicate, {c['self_links']:,} self-links, {c['blank']:,} blank"
        when = f"; as of {doc['as_of']}" if doc["as_of"] else "; no --as-of given"
        click.echo(
            f"geofence: sharing: {c['rows']:,} links: {c['audited']:,} audited ({dec}); {skipped}{when}",
            err=True,
        )
        if c["table_overrides"]:
            click.echo(
                f"geofence: sharing: {c['table_overrides']:,} agencies table entries override what the name says (see the summary)",
                err=True,
            )
