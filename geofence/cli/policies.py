"""``geofence policies``: list and show the policy packs with their citations (issue #2)."""

from __future__ import annotations

import json

import click

from geofence.cli import cli
from geofence.policy import list_packs as _list_packs
from geofence.policy import load_pack


@cli.group()
def policies():
    """List and show policy packs and the clauses they rest on."""


@policies.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def list_cmd(as_json):
    """List the shipped policy packs with status, dates and categories."""
    infos = _list_packs()
    packs = [load_pack(i.path) for i in infos]
    if as_json:
        click.echo(json.dumps([_pack_summary(p) for p in packs], indent=2))
        return
    for p in packs:
        i = p.info
        dates = f"{i.effective_from or '?'} .. {i.effective_to or 'now'}"
        click.echo(f"{i.name:<10} {i.status:<10} {dates:<24} {i.title}")
        click.echo(f"{'':<10} categories: {', '.join(p.categories)}")
    click.echo("Distances are the project's choice [I], not policy (policy.md section B).")


@policies.command("show")
@click.argument("name", metavar="NAME|PATH")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(name, as_json):
    """Show one pack: every category with its tiers, footprint and quoted clauses."""
    pack = load_pack(name)
    if as_json:
        click.echo(json.dumps(_pack_detail(pack), indent=2, ensure_ascii=False))
        return
    i = pack.info
    click.echo(f"{i.name}: {i.title}")
    click.echo(
        f"  status {i.status}, effective {i.effective_from or '?'} .. {i.effective_to or 'now'}"
    )
    if pack.superseded_by:
        click.echo(f"  superseded by {pack.superseded_by}")
    if pack.parents:
        click.echo(f"  extends {' -> '.join(p.name for p in pack.parents)}")
    click.echo(f"  file {i.path.name}, sha256 {i.sha256}")
    if pack.source_url:
        click.echo(f"  source {pack.source_url}")
    if pack.notes:
        click.echo(f"  notes: {pack.notes}")
    if pack.scope:
        click.echo(f'  scope {pack.scope.marking}: "{pack.scope.text}"')
    click.echo("  distances (tiers_m, footprint_m) are the project's choice [I], not policy")
    for cat in pack.categories.values():
        tiers = ", ".join(f"{t} {m:g} m" for t, m in cat.tiers_m.items())
        click.echo(f"\n  {cat.id}: {cat.name}")
        click.echo(
            f"    {cat.temporal}, status {cat.status}, {cat.effective_from or '?'} .. {cat.effective_to or 'now'}"
        )
        click.echo(f"    tiers {tiers}; point footprint {cat.footprint_m:g} m")
        if cat.temporal == "event":
            click.echo(
                f"    pads {cat.pad_before_s / 60:g} min before, {cat.pad_after_s / 60:g} min after"
            )
        if cat.note:
            click.echo(f"    note: {cat.note}")
        for clause in cat.clauses:
            click.echo(f"    {clause.marking} {clause.clause_id} ({clause.pack}, {clause.status})")
            click.echo(f'      "{clause.text}"')
            click.echo(f"      {clause.source_url}")


def _pack_summary(pack) -> dict:
    i = pack.info
    return {
        "name": i.name,
        "title": i.title,
        "status": i.status,
        "effective_from": i.effective_from,
        "effective_to": i.effective_to,
        "file": i.path.name,
        "sha256": i.sha256,
        "categories": list(pack.categories),
    }


def _pack_detail(pack) -> dict:
    out = _pack_summary(pack)
    out.update(
        {
            "source_url": pack.source_url,
            "superseded_by": pack.superseded_by,
            "extends": [p.name for p in pack.parents],
            "notes": pack.notes,
            "scope": None
            if pack.scope is None
            else {
                "text": pack.scope.text,
                "source_url": pack.scope.source_url,
                "marking": pack.scope.marking,
            },
            "categories": {
                c.id: {
                    "name": c.name,
                    "status": c.status,
                    "effective_from": c.effective_from,
                    "effective_to": c.effective_to,
                    "temporal": c.temporal,
                    "tiers_m": c.tiers_m,
                    "footprint_m": c.footprint_m,
                    "pad_before_s": c.pad_before_s,
                    "pad_after_s": c.pad_after_s,
                    "note": c.note,
                    "clauses": [
                        {
                            "pack": cl.pack,
                            "id": cl.clause_id,
                            "text": cl.text,
                            "source_url": cl.source_url,
                            "marking": cl.marking,
                            "status": cl.status,
                            "effective_from": d[0],
                            "effective_to": d[1],
                        }
                        for cl, d in zip(c.clauses, c.clause_dates, strict=True)
                    ],
                }
                for c in pack.categories.values()
            },
        }
    )
    return out
