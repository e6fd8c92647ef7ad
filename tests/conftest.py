"""Shared fixtures: policies and sites made in code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/oracle.py

from geofence.model import CategoryRule, Clause, Policy


def make_policy(
    buffer_m: float = 150.0, footprints: dict | None = None, events: tuple = ()
) -> Policy:
    """A policy made in code: every category of ``footprints`` fenced at ``buffer_m``."""
    footprints = footprints or {"school": 100.0, "worship": 30.0, "medical": 100.0}
    cats = {}
    for c, fp in footprints.items():
        cats[c] = CategoryRule(
            id=c,
            name=c.title(),
            buffer_m=buffer_m,
            tiers_m={"at": 30.0, "near": buffer_m, "vicinity": 400.0},
            footprint_m=fp,
            temporal="event" if c in events else "permanent",
            pad_before_s=3600.0 if c in events else 0.0,
            pad_after_s=3600.0 if c in events else 0.0,
            clauses=(
                Clause("test-pack", f"{c}-1", "text", "https://example.org", "[I]", "in_force"),
            ),
        )
    return Policy(tier="near", categories=cats, packs=())


@pytest.fixture
def policy() -> Policy:
    return make_policy()
