"""Plain data shared by the modules: policy rules, site layers and read batches.

Coordinates are longitude/latitude in degrees on WGS84 (EPSG:4326); distances carry
their unit in the name (``buffer_m``); times are UTC epoch microseconds in ``int64``
arrays, with :data:`NO_TIME` where a read has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

NO_TIME = np.iinfo(np.int64).min
"""Marker in ``time_us`` arrays for a read without a usable timestamp."""

TIERS = ("at", "near", "vicinity")
"""Distance tiers of a category, nearest first (policy.md section B)."""

CATEGORIES = (
    "school",
    "childcare",
    "school_bus_stop",
    "medical",
    "worship",
    "children_gather",
    "social_services",
    "disaster_relief",
    "ceremony",
    "demonstration",
    "community_center",
    "courthouse",
    "library",
    "labor_agency",
)
"""Category ids of policy.md section A."""

# Why a read was rejected. Code 0 means the read is usable. Codes are stable: they are
# written to summaries and rejects files by name, never by number.
REJECT_REASONS = (
    "",
    "malformed_row",  # wrong number of fields, bad quoting, undecodable bytes
    "missing_position",  # lat or lon empty / NA / null
    "bad_position",  # lat or lon not a finite number
    "position_out_of_range",  # |lat| > 90 or |lon| > 180
    "null_island",  # exactly (0, 0): a GPS fix that never happened
    "missing_timestamp",  # a time column exists but the cell is empty
    "bad_timestamp",  # a time that cannot be parsed
    "no_time_for_time_bound_fence",  # near an event fence but the read has no time (#7)
)
REASON_CODE = {name: code for code, name in enumerate(REJECT_REASONS)}


@dataclass(frozen=True)
class Clause:
    """The policy text one category of one pack rests on."""

    pack: str
    clause_id: str
    text: str
    source_url: str
    marking: str  # [Q], [Q2], [P], [I], [U] as in shared policy.md
    status: str  # "in_force" | "rescinded" | "superseded" | "historical"


@dataclass(frozen=True)
class CategoryRule:
    """How one category is fenced under the chosen packs and tier."""

    id: str
    name: str
    buffer_m: float  # the distance of the chosen tier, from the site's edge
    tiers_m: dict[str, float]
    footprint_m: float  # radius a point-only site is grown by
    temporal: Literal["permanent", "event"]
    pad_before_s: float = 0.0
    pad_after_s: float = 0.0
    clauses: tuple[Clause, ...] = ()

    @property
    def packs(self) -> tuple[str, ...]:
        """The packs this category conflicts with, in pack order, each once."""
        return tuple(dict.fromkeys(c.pack for c in self.clauses))


@dataclass(frozen=True)
class PackInfo:
    """One loaded policy pack file."""

    name: str
    title: str
    path: Path
    sha256: str
    status: str
    effective_from: str | None = None
    effective_to: str | None = None


@dataclass(frozen=True)
class Policy:
    """The rules of a scan: which categories are fenced, how far, and why."""

    tier: str
    categories: dict[str, CategoryRule]
    packs: tuple[PackInfo, ...]

    def describe(self) -> dict:
        """Return a JSON-able description for summaries and manifests."""
        return {
            "tier": self.tier,
            "packs": [
                {"name": p.name, "file": p.path.name, "sha256": p.sha256, "status": p.status}
                for p in self.packs
            ],
            "categories": {
                c.id: {
                    "buffer_m": c.buffer_m,
                    "footprint_m": c.footprint_m,
                    "temporal": c.temporal,
                    "packs": list(c.packs),
                }
                for c in self.categories.values()
            },
        }


@dataclass
class LayerSource:
    """What loading one layer file did: the facts ``layers check`` prints."""

    path: Path
    sha256: str
    format: str
    crs: str | None
    features_in: int = 0
    sites_loaded: int = 0
    repaired: list[tuple[str, str]] = field(default_factory=list)  # (feature, what was done)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (feature, reason)
    license: str | None = None  # from a `license` column, e.g. "ODbL-1.0" (issue #8)
    attribution: str | None = None  # from an `attribution` column: must reach reports

    def credits(self) -> dict[str, str]:
        """``license`` and ``attribution`` for summaries and manifests; empty when unknown.

        The ODbL (section 4.3) asks every produced work from OpenStreetMap data to say
        "© OpenStreetMap contributors", so a report using OSM sites carries it.
        """
        pairs = (("license", self.license), ("attribution", self.attribution))
        return {k: v for k, v in pairs if v}

    def describe(self) -> dict:
        """The layer as summaries list it: file, SHA-256, counts and credits."""
        return {
            "file": Path(self.path).name,
            "sha256": self.sha256,
            "sites": self.sites_loaded,
            "rejected": len(self.rejected),
            "repaired": len(self.repaired),
            **self.credits(),
        }


@dataclass
class ReadBatch:
    """A batch of reads as column arrays, with the original bytes of every row.

    ``raw[offsets[i]:offsets[i + 1]]`` is row ``i`` exactly as it was in the input,
    line terminator included, so the sharing filter can pass shared rows on unchanged.
    ``raw`` is ``None`` for reads that did not come from delimited text (DataFrames,
    Arrow tables).
    """

    row: np.ndarray  # int64, 1-based data row of the input
    lon: np.ndarray  # float64, NaN where not usable
    lat: np.ndarray  # float64, NaN where not usable
    time_us: np.ndarray  # int64 UTC epoch microseconds, NO_TIME where missing
    reason: np.ndarray  # int8 codes into REJECT_REASONS, 0 = usable
    columns: object  # pyarrow.Table: normalised columns then the input's own
    raw: bytes | None = None
    offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.row)
