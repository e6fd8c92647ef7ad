"""Policy packs: the sensitive-location policies as reviewable data (issue #2).

A pack is a TOML file in ``layers/policies/`` (schema in ``layers/README.md``). Each
category of a pack names the clause it rests on (quoted, with source URL and the
[Q]/[Q2]/[P] marking of the project's policy reference), its status and dates, its
distance tiers, the footprint radius of point-only sites and whether it is permanent or
an event. The distances are the project's choice, not policy (policy.md section B).

:func:`load_policy` turns one or more packs into the :class:`~geofence.model.Policy` a
scan applies; :func:`load_pack` reads and validates one pack; :func:`list_packs` lists
the shipped ones.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from geofence._resources import layers_dir
from geofence.errors import PolicyError
from geofence.model import CATEGORIES, TIERS, CategoryRule, Clause, PackInfo, Policy

__all__ = [
    "DEFAULT_PACKS",
    "MARKINGS",
    "STATUSES",
    "Pack",
    "PackCategory",
    "list_packs",
    "load_pack",
    "load_policy",
]

DEFAULT_PACKS = ("ice-2011", "cbp-2013", "dhs-2021")
"""Packs applied without ``--policy``: the federal texts (issue #2, policy.md section A)."""

STATUSES = ("in_force", "rescinded", "superseded", "historical")
"""Allowed ``status`` values of packs, categories and clauses."""

MARKINGS = ("[Q]", "[Q2]", "[P]", "[I]", "[U]")
"""Source-quality markings of the project's policy reference (its legend)."""

TEMPORAL = ("permanent", "event")

_PACK_KEYS = {
    "name",
    "title",
    "status",
    "effective_from",
    "effective_to",
    "superseded_by",
    "source_url",
    "notes",
    "extends",
    "scope",
    "categories",
}
_SCOPE_KEYS = {"text", "source_url", "marking"}
_CATEGORY_KEYS = {
    "name",
    "status",
    "effective_from",
    "effective_to",
    "temporal",
    "footprint_m",
    "tiers_m",
    "pad_before_min",
    "pad_after_min",
    "note",
    "clauses",
}
_CLAUSE_KEYS = {"id", "text", "source_url", "marking", "status", "effective_from", "effective_to"}
_REQUIRED_CATEGORY_KEYS = ("name", "temporal", "footprint_m", "tiers_m", "clauses")
_REQUIRED_CLAUSE_KEYS = ("id", "text", "source_url", "marking")

# Event categories get a default pad of 60 minutes before and after (policy.md B [I]).
DEFAULT_PAD_MIN = 60.0


@dataclasses.dataclass(frozen=True)
class PackCategory:
    """One category of one pack, as written in the pack (after ``extends``).

    Attributes
    ----------
    id : str
        Category id, one of :data:`geofence.model.CATEGORIES`.
    name : str
        Human name as the pack words it.
    status : str
        One of :data:`STATUSES`; defaults to the pack's.
    effective_from, effective_to : str or None
        ISO dates; default to the pack's.
    temporal : str
        ``"permanent"`` or ``"event"``.
    footprint_m : float
        Radius a point-only site is grown by, in metres.
    tiers_m : dict of str to float
        Distance of each tier of :data:`geofence.model.TIERS`, in metres.
    pad_before_s, pad_after_s : float
        Event pads in seconds (0 for permanent categories).
    clauses : tuple of Clause
        The policy text(s) the category rests on.
    clause_dates : tuple of (str or None, str or None)
        Effective dates of each clause, parallel to ``clauses``.
    note : str or None
        Reviewer's note (partial coverage, caveats).
    """

    id: str
    name: str
    status: str
    effective_from: str | None
    effective_to: str | None
    temporal: str
    footprint_m: float
    tiers_m: dict[str, float]
    pad_before_s: float
    pad_after_s: float
    clauses: tuple[Clause, ...]
    clause_dates: tuple[tuple[str | None, str | None], ...]
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class Pack:
    """A loaded and validated policy pack.

    Attributes
    ----------
    info : PackInfo
        Name, title, file, SHA-256, status and dates.
    categories : dict of str to PackCategory
        The pack's categories (its own and those inherited through ``extends``).
    source_url : str or None
        Where the pack's text was read.
    superseded_by : str or None
        Name of the pack that replaced this one, if any.
    notes : str or None
        Reviewer's notes.
    scope : Clause or None
        The clause saying which actions the policy covers (surveillance, etc.).
    parents : tuple of PackInfo
        Packs this one extends, nearest first.
    """

    info: PackInfo
    categories: dict[str, PackCategory]
    source_url: str | None = None
    superseded_by: str | None = None
    notes: str | None = None
    scope: Clause | None = None
    parents: tuple[PackInfo, ...] = ()

    @property
    def name(self) -> str:
        """The pack's name (``ice-2011``)."""
        return self.info.name


# --------------------------------------------------------------------------------------
# Finding packs


def _policies_dir() -> Path:
    return layers_dir() / "policies"


def _resolve(name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    """Return the file of a pack given by name (``dhs-2021``) or by path."""
    text = str(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text
    )
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_absolute() and relative_to is not None:
            candidate = relative_to / path
            if candidate.exists():
                return candidate
        if path.exists():
            return path
        # `extends = "dhs-2021.toml"` or a shipped pack named by file name.
        shipped = _policies_dir() / path.name
        if not path.is_absolute() and path.parent == Path(".") and shipped.exists():
            return shipped
        raise PolicyError(
            f"policy pack file {text} not found; give a path to a .toml file or one of: {', '.join(_shipped_names())}"
        )
    shipped = _policies_dir() / f"{text}.toml"
    if shipped.exists():
        return shipped
    raise PolicyError(
        f"unknown policy pack {text!r}; choose one of: {', '.join(_shipped_names())} (or give a path to a .toml pack)"
    )


def _shipped_names() -> list[str]:
    return sorted(p.stem for p in _policies_dir().glob("*.toml"))


# --------------------------------------------------------------------------------------
# Validation helpers: every failure is one PolicyError naming the file and the key.


def _fail(path: Path, key: str, problem: str) -> PolicyError:
    return PolicyError(f"policy pack {path.name}: {key}: {problem}")


def _check_keys(path: Path, where: str, table: Mapping, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise _fail(
            path,
            f"{prefix}{unknown[0]}",
            f"unknown key; allowed keys here are {', '.join(sorted(allowed))}",
        )


def _str(path: Path, key: str, value: object, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise _fail(path, key, "missing; add it")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(path, key, f"must be a non-empty string, not {value!r}")
    return value


def _date(path: Path, key: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise _fail(path, key, f"{value!r} is not a date; write YYYY-MM-DD")


def _status(path: Path, key: str, value: object) -> str | None:
    if value is None:
        return None
    if value not in STATUSES:
        raise _fail(path, key, f"{value!r} is not a status; use one of {', '.join(STATUSES)}")
    return str(value)


def _metres(path: Path, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, key, f"{value!r} is not a number of metres")
    if not math.isfinite(value) or value < 0:
        raise _fail(path, key, f"{value!r} must be a finite distance >= 0 metres")
    return float(value)


def _minutes(path: Path, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, key, f"{value!r} is not a number of minutes")
    if not math.isfinite(value) or value < 0:
        raise _fail(path, key, f"{value!r} must be a finite duration >= 0 minutes")
    return float(value)


def _read_toml(path: Path) -> tuple[dict, str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy pack {path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"policy pack {path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line N, column M)".
        raise PolicyError(f"policy pack {path.name}: not valid TOML: {exc}") from exc
    return data, hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------------------
# Loading one pack


def load_pack(name_or_path: str | Path) -> Pack:
    """Load and validate one policy pack.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A shipped pack's name (``"dhs-2021"``) or the path of a ``.toml`` pack.

    Returns
    -------
    Pack
        The validated pack; categories inherited through ``extends`` are included.

    Raises
    ------
    PolicyError
        If the file is missing or not TOML, has unknown keys, negative or missing
        distances, unknown category ids, a bad status, marking or date, or an
        ``extends`` cycle. The message names the file and the key.

    Examples
    --------
    >>> pack = load_pack("dhs-2021")
    >>> pack.info.status, pack.categories["school"].tiers_m["near"]
    ('rescinded', 150.0)
    """
    return _load_pack(_resolve(name_or_path), chain=())


def _load_pack(path: Path, *, chain: tuple[Path, ...]) -> Pack:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(p.name for p in (*chain, resolved))
        raise _fail(path, "extends", f"cycle {cycle}; a pack cannot extend itself")
    data, sha256 = _read_toml(path)
    _check_keys(path, "", data, _PACK_KEYS)

    parent: Pack | None = None
    extends = _str(path, "extends", data.get("extends"))
    if extends is not None:
        try:
            parent_path = _resolve(extends, relative_to=path.parent)
        except PolicyError as exc:
            raise _fail(path, "extends", str(exc)) from None
        parent = _load_pack(parent_path, chain=(*chain, resolved))

    name = _str(path, "name", data.get("name")) or (None if parent is None else path.stem)
    if name is None:
        raise _fail(path, "name", 'missing; add name = "my-pack"')
    title = _str(path, "title", data.get("title"))
    if title is None:
        if parent is None:
            raise _fail(path, "title", "missing; add a one-line title")
        title = f"{name} (extends {parent.name})"
    status = _status(path, "status", data.get("status"))
    if status is None:
        if parent is None:
            raise _fail(path, "status", f"missing; use one of {', '.join(STATUSES)}")
        status = parent.info.status
    eff_from = _date(path, "effective_from", data.get("effective_from"))
    eff_to = _date(path, "effective_to", data.get("effective_to"))
    if parent is not None:
        eff_from = eff_from if "effective_from" in data else parent.info.effective_from
        eff_to = eff_to if "effective_to" in data else parent.info.effective_to
    if eff_from and eff_to and eff_to < eff_from:
        raise _fail(path, "effective_to", f"{eff_to} is before effective_from {eff_from}")

    info = PackInfo(
        name=name,
        title=title,
        path=path,
        sha256=sha256,
        status=status,
        effective_from=eff_from,
        effective_to=eff_to,
    )

    scope = None
    if "scope" in data:
        scope_t = data["scope"]
        if not isinstance(scope_t, dict):
            raise _fail(path, "scope", "must be a table with text, source_url, marking")
        _check_keys(path, "scope", scope_t, _SCOPE_KEYS)
        scope = Clause(
            pack=name,
            clause_id="scope",
            text=_str(path, "scope.text", scope_t.get("text"), required=True),
            source_url=_str(path, "scope.source_url", scope_t.get("source_url"), required=True),
            marking=_marking(path, "scope.marking", scope_t.get("marking")),
            status=status,
        )
    elif parent is not None:
        scope = parent.scope

    categories_t = data.get("categories", {})
    if not isinstance(categories_t, dict):
        raise _fail(path, "categories", "must be a table of [categories.<id>] tables")
    categories: dict[str, PackCategory] = dict(parent.categories) if parent else {}
    for cat_id, table in categories_t.items():
        inherited = categories.get(cat_id)
        categories[cat_id] = _category(path, info, cat_id, table, inherited)
    if not categories:
        raise _fail(
            path, "categories", "the pack lists no categories; add [categories.<id>] tables"
        )

    # Keep category order stable and meaningful: the order of policy.md section A.
    ordered = {c: categories[c] for c in CATEGORIES if c in categories}
    return Pack(
        info=info,
        categories=ordered,
        source_url=_str(path, "source_url", data.get("source_url"))
        or (parent.source_url if parent else None),
        superseded_by=_str(path, "superseded_by", data.get("superseded_by")),
        notes=_str(path, "notes", data.get("notes")),
        scope=scope,
        parents=() if parent is None else (parent.info, *parent.parents),
    )


def _marking(path: Path, key: str, value: object) -> str:
    if value is None:
        raise _fail(path, key, f"missing; use one of {' '.join(MARKINGS)}")
    if value not in MARKINGS:
        raise _fail(path, key, f"{value!r} is not a marking; use one of {' '.join(MARKINGS)}")
    return str(value)


def _category(
    path: Path, info: PackInfo, cat_id: str, table: object, inherited: PackCategory | None
) -> PackCategory:
    where = f"categories.{cat_id}"
    if cat_id not in CATEGORIES:
        raise _fail(
            path, where, f"unknown category id {cat_id!r}; use one of {', '.join(CATEGORIES)}"
        )
    if not isinstance(table, dict):
        raise _fail(path, where, "must be a table")
    _check_keys(path, where, table, _CATEGORY_KEYS)
    if inherited is None:
        for key in _REQUIRED_CATEGORY_KEYS:
            if key not in table:
                raise _fail(
                    path,
                    f"{where}.{key}",
                    "missing; every new category needs name, temporal, footprint_m, tiers_m and clauses",
                )

    def pick(key, default):
        return table[key] if key in table else default

    name = _str(
        path, f"{where}.name", pick("name", inherited.name if inherited else None), required=True
    )
    status = _status(path, f"{where}.status", table.get("status"))
    status = status or (inherited.status if inherited and "status" not in table else info.status)
    eff_from = _date(path, f"{where}.effective_from", table.get("effective_from"))
    eff_to = _date(path, f"{where}.effective_to", table.get("effective_to"))
    if inherited is not None:
        eff_from = eff_from if "effective_from" in table else inherited.effective_from
        eff_to = eff_to if "effective_to" in table else inherited.effective_to
    eff_from = eff_from or info.effective_from
    eff_to = eff_to or info.effective_to

    temporal = pick("temporal", inherited.temporal if inherited else None)
    if temporal not in TEMPORAL:
        raise _fail(
            path, f"{where}.temporal", f'{temporal!r} is not allowed; use "permanent" or "event"'
        )

    footprint_m = (
        _metres(path, f"{where}.footprint_m", table["footprint_m"])
        if "footprint_m" in table
        else inherited.footprint_m
    )

    tiers_m = dict(inherited.tiers_m) if inherited else {}
    if "tiers_m" in table:
        tiers_t = table["tiers_m"]
        if not isinstance(tiers_t, dict):
            raise _fail(
                path,
                f"{where}.tiers_m",
                "must be a table like { at = 30, near = 150, vicinity = 400 }",
            )
        _check_keys(path, f"{where}.tiers_m", tiers_t, set(TIERS))
        for tier, value in tiers_t.items():
            tiers_m[tier] = _metres(path, f"{where}.tiers_m.{tier}", value)
    for tier in TIERS:
        if tier not in tiers_m:
            raise _fail(
                path,
                f"{where}.tiers_m.{tier}",
                "missing; give a distance in metres for every tier (at, near, vicinity)",
            )
    # Tiers are nearest first (model.TIERS); a pack that says otherwise is a typo.
    if not tiers_m["at"] <= tiers_m["near"] <= tiers_m["vicinity"]:
        raise _fail(path, f"{where}.tiers_m", f"{tiers_m} must satisfy at <= near <= vicinity")

    pads = {}
    for key in ("pad_before_min", "pad_after_min"):
        if key in table:
            if temporal != "event":
                raise _fail(
                    path, f"{where}.{key}", 'pads only apply to temporal = "event"; remove it'
                )
            pads[key] = _minutes(path, f"{where}.{key}", table[key]) * 60.0
        elif inherited is not None and inherited.temporal == temporal:
            pads[key] = inherited.pad_before_s if key == "pad_before_min" else inherited.pad_after_s
        else:
            pads[key] = DEFAULT_PAD_MIN * 60.0 if temporal == "event" else 0.0

    if "clauses" in table:
        clauses, clause_dates = _clauses(
            path, info, where, table["clauses"], status, eff_from, eff_to
        )
    else:
        clauses, clause_dates = inherited.clauses, inherited.clause_dates

    note = (
        _str(path, f"{where}.note", table["note"])
        if "note" in table
        else (inherited.note if inherited else None)
    )

    return PackCategory(
        id=cat_id,
        name=name,
        status=status,
        effective_from=eff_from,
        effective_to=eff_to,
        temporal=temporal,
        footprint_m=footprint_m,
        tiers_m={t: tiers_m[t] for t in TIERS},
        pad_before_s=pads["pad_before_min"],
        pad_after_s=pads["pad_after_min"],
        clauses=clauses,
        clause_dates=clause_dates,
        note=note,
    )


def _clauses(path, info, where, value, status, eff_from, eff_to):
    key = f"{where}.clauses"
    if not isinstance(value, list) or not value:
        raise _fail(path, key, "must be a non-empty array of [[...clauses]] tables")
    clauses, dates = [], []
    for i, item in enumerate(value):
        ckey = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise _fail(path, ckey, "must be a table with id, text, source_url, marking")
        _check_keys(path, ckey, item, _CLAUSE_KEYS)
        for req in _REQUIRED_CLAUSE_KEYS:
            if req not in item:
                raise _fail(
                    path,
                    f"{ckey}.{req}",
                    "missing; every clause needs id, text, source_url and marking",
                )
        clauses.append(
            Clause(
                pack=info.name,
                clause_id=_str(path, f"{ckey}.id", item["id"], required=True),
                text=_str(path, f"{ckey}.text", item["text"], required=True),
                source_url=_str(path, f"{ckey}.source_url", item["source_url"], required=True),
                marking=_marking(path, f"{ckey}.marking", item["marking"]),
                status=_status(path, f"{ckey}.status", item.get("status")) or status,
            )
        )
        dates.append(
            (
                _date(path, f"{ckey}.effective_from", item.get("effective_from")) or eff_from,
                _date(path, f"{ckey}.effective_to", item.get("effective_to")) or eff_to,
            )
        )
    return tuple(clauses), tuple(dates)


# --------------------------------------------------------------------------------------
# Listing and combining packs


def list_packs() -> list[PackInfo]:
    """List the policy packs shipped in ``layers/policies/``, by name.

    Returns
    -------
    list of PackInfo
        One entry per shipped pack, each validated.

    Raises
    ------
    PolicyError
        If a shipped pack is invalid (a packaging bug).
    """
    return sorted((load_pack(p).info for p in _policies_dir().glob("*.toml")), key=lambda i: i.name)


def load_policy(
    names: Iterable[str | Path] | None = None,
    *,
    tier: str = "near",
    overrides: Mapping[str, float] | None = None,
) -> Policy:
    """Combine policy packs into the rules of a scan.

    Parameters
    ----------
    names : iterable of str or pathlib.Path, optional
        Pack names (``"dhs-2021"``) or paths of ``.toml`` packs. ``None`` (or empty)
        means the union of the federal packs :data:`DEFAULT_PACKS` (issue #2).
    tier : {"at", "near", "vicinity"}
        Which tier distance becomes each category's ``buffer_m``. Default ``"near"``.
    overrides : mapping of str to float, optional
        Category id -> distance in metres, replacing the tier distance of that category
        (e.g. ``{"medical": 250}``, policy.md B).

    Returns
    -------
    Policy
        One :class:`~geofence.model.CategoryRule` per category listed by any chosen pack,
        in the order of policy.md section A. Each rule's ``clauses`` holds every clause
        of every chosen pack that lists the category, in pack order, so a flag can name
        every pack it conflicts with (``rule.packs``). ``Policy.packs`` holds the chosen
        packs followed by the packs they extend.

    Raises
    ------
    PolicyError
        If a pack is invalid, the tier is unknown, or an override names an unknown
        category, a category no chosen pack lists, or a negative distance.

    Notes
    -----
    When two chosen packs give the same category different numbers, the **largest**
    wins, separately for every tier distance, the footprint radius and the event pads:
    the union of packs is meant to be the most protective reading. If packs disagree on
    whether a category is an event, ``"permanent"`` wins (always fenced). The distances
    are the project's choice [I], not policy (policy.md section B).

    Examples
    --------
    >>> policy = load_policy()
    >>> policy.categories["worship"].packs
    ('ice-2011', 'cbp-2013', 'dhs-2021')
    >>> load_policy(["dhs-2021"], tier="at", overrides={"medical": 250}).categories["medical"].buffer_m
    250.0
    """
    if tier not in TIERS:
        raise PolicyError(f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
    names = list(names or ()) or list(DEFAULT_PACKS)
    packs: list[Pack] = []
    seen: set[Path] = set()
    for name in names:
        pack = load_pack(name)
        if pack.info.path.resolve() in seen:
            continue  # the same pack given twice counts once
        seen.add(pack.info.path.resolve())
        packs.append(pack)

    rules: dict[str, CategoryRule] = {}
    for cat_id in CATEGORIES:
        entries = [p.categories[cat_id] for p in packs if cat_id in p.categories]
        if not entries:
            continue
        tiers_m = {t: max(e.tiers_m[t] for e in entries) for t in TIERS}
        temporal = "permanent" if any(e.temporal == "permanent" for e in entries) else "event"
        events = [e for e in entries if e.temporal == "event"]
        rules[cat_id] = CategoryRule(
            id=cat_id,
            name=entries[0].name,
            buffer_m=tiers_m[tier],
            tiers_m=tiers_m,
            footprint_m=max(e.footprint_m for e in entries),
            temporal=temporal,
            pad_before_s=max((e.pad_before_s for e in events), default=0.0)
            if temporal == "event"
            else 0.0,
            pad_after_s=max((e.pad_after_s for e in events), default=0.0)
            if temporal == "event"
            else 0.0,
            clauses=tuple(c for e in entries for c in e.clauses),
        )

    infos: list[PackInfo] = []
    for pack in packs:
        for info in (pack.info, *pack.parents):
            if info not in infos:
                infos.append(info)
    return with_distances(Policy(tier=tier, categories=rules, packs=tuple(infos)), overrides)


def with_distances(policy: Policy, overrides: Mapping[str, float] | None) -> Policy:
    """The policy with some categories' distances replaced.

    Parameters
    ----------
    policy : Policy
    overrides : mapping of str to float, optional
        Category id -> distance in metres (``buffer_m``); tiers, footprints and clauses
        are kept.

    Returns
    -------
    Policy
        A new policy (the same object when there is nothing to override).

    Raises
    ------
    PolicyError
        If an override names an unknown category, one the policy does not list, or a
        distance that is not a finite number of metres >= 0.

    Examples
    --------
    >>> with_distances(load_policy(), {"school": 300}).categories["school"].buffer_m
    300.0
    """
    if not overrides:
        return policy
    rules = dict(policy.categories)
    for cat_id, metres in (overrides or {}).items():
        if cat_id not in CATEGORIES:
            raise PolicyError(
                f"distance override {cat_id}={metres}: unknown category; use one of {', '.join(CATEGORIES)}"
            )
        if cat_id not in rules:
            chosen = ", ".join(p.name for p in policy.packs)
            raise PolicyError(
                f"distance override {cat_id}={metres}: no chosen pack ({chosen}) lists {cat_id}; choose a pack that does"
            )
        try:
            value = float(metres)
        except (TypeError, ValueError):
            raise PolicyError(
                f"distance override {cat_id}={metres!r}: not a number of metres"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise PolicyError(
                f"distance override {cat_id}={metres}: must be a finite distance >= 0 metres"
            )
        rules[cat_id] = dataclasses.replace(rules[cat_id], buffer_m=value)

    return dataclasses.replace(policy, categories=rules)
