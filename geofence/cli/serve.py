"""``geofence serve``: the live relay (run), and ``status``, ``withheld``, ``requeue`` on its store."""

from __future__ import annotations

import json
import re
import signal
import sys

import click

from geofence.cli import cli, setup_logging
from geofence.cli.options import (
    parse_distances,
    policy_options,
    quiet_opt,
    recipient_options,
    verbose_opt,
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)


def _size(ctx, param, value):
    """``4MiB`` (binary), ``10GB`` (decimal), ``512k``, or bytes."""
    m = _SIZE.match(str(value))
    if not m:
        raise click.BadParameter(f"{value!r} is not a size such as 4MiB, 10GiB or 500000")
    num, unit, binary = m.groups()
    power = "kmgt".find(unit.lower()) + 1 if unit else 0
    return int(float(num) * (1024 if binary else 1000) ** power)


def _duration(ctx, param, value):
    """``300s``, ``5m``, ``1h``, ``250ms`` or seconds."""
    m = _DURATION.match(str(value))
    if not m:
        raise click.BadParameter(f"{value!r} is not a duration such as 300s, 5m or 1h")
    num, unit = m.groups()
    return float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[(unit or "s").lower()]


class _ServeGroup(click.Group):
    """``geofence serve OPTIONS`` runs the relay; ``geofence serve status|withheld|requeue`` inspect its store."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@cli.group("serve", cls=_ServeGroup)
def serve_group():
    """Live pre-sharing relay: forward only shareable reads to a recipient, losing none.

    `geofence serve OPTIONS` (or `geofence serve run OPTIONS`) runs it; see
    `geofence serve run --help`. The other commands read its --state-dir.
    """


@serve_group.command("run")
@policy_options
@recipient_options
@click.option(
    "--user",
    default="geofence-serve",
    show_default=True,
    help="Account the relay shares as (audit log).",
)
@click.option(
    "--forward-to",
    required=True,
    metavar="URL",
    help="Where shareable reads are POSTed, one per request.",
)
@click.option(
    "--state-dir",
    required=True,
    metavar="DIR",
    help="Store of posts, reads and decisions (SQLite); created if missing.",
)
@click.option(
    "--listen",
    default="127.0.0.1:8787",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on (TLS belongs to a reverse proxy); port 0 picks a free one.",
)
@click.option(
    "--token-file", default=None, metavar="FILE", help="Bearer tokens accepted, one per line."
)
@click.option(
    "--hmac-secret-file",
    default=None,
    metavar="FILE",
    help="Secret for X-Geofence-Signature (HMAC-SHA256 of timestamp.body).",
)
@click.option(
    "--allow-path-token",
    is_flag=True,
    help="Also accept a token as the last path segment (/v1/openalpr/TOKEN), for agents that cannot set headers.",
)
@click.option(
    "--sign-secret-file",
    default=None,
    metavar="FILE",
    help="Sign forwarded reads with this secret (X-Geofence-Signature).",
)
@click.option(
    "--cameras",
    "camera_table",
    default=None,
    metavar="FILE",
    help="Camera table positioning alpr_results reads (heartbeats add to it).",
)
@click.option(
    "--audit-log",
    default=None,
    metavar="FILE",
    help="Audit log (JSON lines) [default: DIR/audit.jsonl].",
)
@click.option(
    "--max-body",
    default="4MiB",
    show_default=True,
    callback=_size,
    help="Largest body accepted (413 above).",
)
@click.option(
    "--max-pending",
    default="10GiB",
    show_default=True,
    callback=_size,
    help="Stop acknowledging when this many bytes wait to be forwarded.",
)
@click.option(
    "--when-full",
    type=click.Choice(["close", "503"]),
    default="close",
    show_default=True,
    help="When full or the store is unwritable: close the listener, or answer 503 + Retry-After.",
)
@click.option(
    "--retry-cap",
    default="300s",
    show_default=True,
    callback=_duration,
    help="Longest wait between forwarding attempts (retries never stop).",
)
@click.option(
    "--forward-timeout",
    default="30s",
    show_default=True,
    callback=_duration,
    help="Timeout of one forwarding request.",
)
@click.option(
    "--commit-mode",
    type=click.Choice(["group", "request", "transaction"]),
    default="group",
    hidden=True,
    help="Benchmark baselines: request = each post alone, transaction = one transaction per post.",
)
@verbose_opt
@quiet_opt
def run(
    layer_paths,
    crs,
    policy_names,
    tier,
    distance_overrides,
    max_vertices,
    max_features,
    recipient,
    recipient_type,
    recipient_state,
    purpose,
    user,
    sender,
    sender_state,
    declaration,
    forward_to,
    state_dir,
    listen,
    token_file,
    hmac_secret_file,
    allow_path_token,
    sign_secret_file,
    camera_table,
    audit_log,
    max_body,
    max_pending,
    when_full,
    retry_cap,
    forward_timeout,
    commit_mode,
    verbose,
    quiet,
):
    """Run the relay: POST /v1/openalpr (agent JSON), POST /v1/reads?profile=NAME (CSV).

    A post is answered 202 {"id"} once its body and decisions are on disk. Each read goes
    through the same engine and recipient rules as `geofence filter`; only shareable reads
    are forwarded, in order, with Idempotency-Key = read id, retried without end on
    timeouts, 408, 429 and 5xx. SIGHUP reloads layers, policy, rules and credentials
    (keeping the old set on failure); SIGTERM drains and exits 0.

    \b
    Example:
      geofence serve --layers sample_data/seattle/schools.toml --sender-state WA \\
        --recipient "King County SO" --recipient-type state-public --purpose "burglary 21-555" \\
        --forward-to https://partner.example/reads --state-dir relay --token-file tokens
    """
    from geofence.jurisdictions import Recipient
    from geofence.serve import ServeConfig, run_server

    setup_logging(verbose, quiet)
    config = ServeConfig(
        layers=list(layer_paths), recipient=Recipient(recipient, recipient_type, recipient_state, purpose, declaration),
        forward_to=forward_to, state_dir=state_dir, token_file=token_file, hmac_secret_file=hmac_secret_file,
        allow_path_token=allow_path_token, sign_secret_file=sign_secret_file, policy=list(policy_names) or None,
        tier=tier, distances=parse_distances(distance_overrides), crs=crs,
        limits={"max_vertices_per_site": max_vertices, "max_features": max_features}, sender=sender,
        sender_state=sender_state, user=user, cameras=camera_table, audit_log=audit_log, listen=listen,
        max_body_bytes=max_body, max_pending_bytes=max_pending, when_full=when_full, retry_cap_s=retry_cap,
        forward_timeout_s=forward_timeout, commit_mode=commit_mode,
    )  # fmt: skip

    def listening(host, port):
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"geofence: serve: listening on http://{shown}:{port}", err=True)

    sig = run_server(config, on_listening=listening)
    if sig == signal.SIGINT:
        sys.exit(130)


@serve_group.command("status")
@click.argument("state_dir", metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_cmd(state_dir, as_json):
    """Counts, pending reads, and whether forwarding is stalled (works while serving).

    \b
    Example:
      geofence serve status relay
    """
    from geofence.store import status

    doc = status(state_dir)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    c = doc["counts"]
    out = [
        f"store {doc['store']['id']} in {state_dir}",
        f"received {c['received']:,} = forwarded {c['forwarded']:,} + withheld {c['withheld']:,} + rejected {c['rejected']:,} + pending {c['pending']:,} + refused {c['refused']:,}",
        f"posts: {c['posts_accepted']:,} stored, {c['posts_repeated']:,} repeats; {c['heartbeats']:,} heartbeats, {doc['cameras']:,} cameras positioned",
    ]
    if doc["withheld_by_reason"]:
        out.append(
            "withheld: " + ", ".join(f"{k} {v:,}" for k, v in doc["withheld_by_reason"].items())
        )
    if doc["rejected_by_reason"]:
        out.append(
            "rejected: " + ", ".join(f"{k} {v:,}" for k, v in doc["rejected_by_reason"].items())
        )
    old = doc["oldest_pending"]
    if old:
        out.append(
            f"pending: {c['pending']:,} reads, {doc['pending_bytes']:,} bytes; oldest received {old['received_at']} ({old['age_s']:.1f} s ago)"
        )
        h = doc["head"]
        if h["attempts"]:
            out.append(
                f"STALLED: read {h['read_id']} failed {h['attempts']} times for {h['stalled_s']:.1f} s (last: {h['last_error']}); next attempt {h['next_attempt_at']}"
            )
    else:
        out.append("pending: none")
    for r in doc["refused"]:
        out.append(
            f"refused: {r['read_id']} ({r['error']}) at {r['refused_at']}: `geofence serve requeue {state_dir} {r['read_id']}` sends it again"
        )
    out.append(f"last forwarded: {doc['last_forwarded_at'] or 'never'}")
    click.echo("\n".join(out))


@serve_group.command("withheld")
@click.argument("state_dir", metavar="DIR")
@click.option(
    "-o", "--out", required=True, help="CSV of withheld reads (no plates), or - for stdout."
)
@quiet_opt
def withheld_cmd(state_dir, out, quiet):
    """Write every withheld read with its reason, category, site and distance.

    \b
    Example:
      geofence serve withheld relay -o withheld.csv
    """
    from geofence.store import export_withheld

    n = export_withheld(state_dir, out)
    if not quiet:
        click.echo(f"geofence: serve: {n:,} withheld reads written", err=True)


@serve_group.command("requeue")
@click.argument("state_dir", metavar="DIR")
@click.argument("ident", metavar="ID")
def requeue_cmd(state_dir, ident):
    """Send reads the recipient refused (4xx) again: a read id or a post id.

    \b
    Example:
      geofence serve requeue relay 7f3a9c2e-12-1
    """
    from geofence.store import requeue

    ids = requeue(state_dir, ident)
    click.echo(f"geofence: serve: {len(ids)} read(s) pending again: {', '.join(ids)}", err=True)
