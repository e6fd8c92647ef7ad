"""Sharing-network audit (issue #11): who may search an agency's ALPR data, and does state law allow it?

Vendor networks publish lists of "external organizations with access" to an agency's
plate reads (Flock transparency portals). This module reads such a list of directed links
(source agency -> recipient agency), works out each agency's jurisdiction and type, and
decides every link with the *same* recipient rules as the pre-sharing filter
(:func:`geofence.jurisdictions.check_recipient`, ``layers/jurisdictions/<state>.toml``).

Classifier (names only, unless a table says otherwise)
------------------------------------------------------
State, in this order, each recorded in ``state_rule``:

1. a two-letter, upper-case state code standing alone (``El Cajon CA PD``,
   ``Chaffey College PD (CA)``, ``AZ - Department of Public Safety``, ``SO-CA``);
   ``SD`` right after another code is a sheriff's department (``Riverside County CA SD``),
   ``CO`` beside another code is "County" (``Reeves CO TX SO``) and ``UT`` beside ``TX`` is
   the University of Texas; codes that still disagree leave the state unknown;
2. otherwise a full state name, unless it is part of a place name (``Nevada City``,
   ``Kansas City``, ``Colorado Springs``, ``Virginia Beach``) or a city police
   (``Washington PD``);
3. otherwise unknown: never guessed. ``--agencies`` (a reviewed table) resolves the rest.

Type, first match wins: ``vendor`` (Flock, named ALPR vendors, demo/test/example
organisations, whole words so ``Demopolis`` is a city), ``multi-state`` (the RISS
centres), ``federal`` (explicit names; acronyms are case-sensitive whole tokens, so
``Dearborn`` is not the DEA and ``RCATF`` is not the ATF), ``private`` (companies,
railroads, homeowners' associations), ``state`` (state police, highway patrol, bureaus of
investigation, attorneys general, state universities, or a name that begins with the
state's name), ``local`` (PD, SO, sheriff, police, marshal, prosecutor, county, ...),
otherwise ``unknown``.

Decisions
---------
``allowed``
    the source state's rules allow the recipient;
``conflict``
    an ``allow_only_types`` rule refuses it (California SB 34: out-of-state, federal,
    multi-state and out-of-state private recipients);
``needs-declaration``
    a ``require_declaration`` rule applies (Illinois 2-130: an out-of-state agency needs a
    written declaration first); the links list cannot show whether one was signed;
``review``
    a person must look: unknown source or recipient jurisdiction, a recipient whose type
    decides the outcome but is unknown, an in-state private recipient, a vendor
    organisation (SB 34 does not count data hosting as sharing), a federal recipient under
    a declaration rule (whether Illinois 2-130 reaches federal agencies is unclear), or a
    multi-state centre located in the source's own state.

Links whose source is in a state without selected rules are counted as out of scope; every
input row is counted once: ``rows = audited + out_of_scope + duplicates + self_links + blank``.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import datetime as _dt
import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from geofence._version import __version__
from geofence.atomic import atomic_output, sha256_file
from geofence.errors import GeofenceError, UsageError
from geofence.jurisdictions import (
    Recipient,
    Rule,
    RuleSet,
    check_recipient,
    load_rules,
    rules_for_state,
)

AGENCY_TYPES = ("local", "state", "federal", "multi-state", "private", "vendor", "unknown")
"""Kinds of agency; ``unknown`` only comes from inference, never from a table."""

DECISIONS = ("allowed", "conflict", "needs-declaration", "review")

STATE_NAMES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}  # fmt: skip
"""The 50 states and DC by USPS code."""

DECISION_COLUMNS = (
    "source", "source_id", "source_state", "source_type", "recipient", "recipient_id",
    "recipient_state", "recipient_type", "decision", "rule", "citation", "marking",
    "source_url", "reason", "as_of",
)  # fmt: skip
CLASSIFICATION_COLUMNS = (
    "name",
    "id",
    "state",
    "type",
    "state_rule",
    "type_rule",
    "from_table",
    "ori",
    "note",
    "as_of",
)

# Field names of a links file, found case-insensitively; --columns names others.
LINK_FIELDS: dict[str, tuple[str, ...]] = {
    "src": ("src_agency", "source_agency", "source", "src", "agency", "from"),
    "dst": (
        "external_agency",
        "recipient_agency",
        "recipient",
        "external_organization",
        "dst",
        "target",
        "to",
    ),
    "src_id": ("src_agency_id", "source_agency_id", "source_id", "src_id"),
    "dst_id": ("external_agency_id", "recipient_agency_id", "recipient_id", "dst_id", "target_id"),
}

# SB 34 itself says data hosting is not sharing (Civ. Code §1798.90.55(b), second sentence,
# policy.md section 4.1 [Q]); a vendor holding search access may be hosting, or may not.
_HOSTING = (
    "vendor organisation: Civ. Code §1798.90.55(b) does not count data hosting as sharing; "
    "check what access it has"
)

# ---------------------------------------------------------------------------------------
# Classifier patterns. Acronyms are case-sensitive whole tokens (issue #11: `Dearborn` is
# not the DEA); words and phrases are case-insensitive whole words.

_TOKEN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(?![A-Za-z0-9])")
# upper-case English around a code: "NOT IN USE" is not Indiana
_ENGLISH_CAPS = re.compile(r"\b(?:DO\s+)?NOT\s+IN\s+USE\b|\bDO\s+NOT\s+USE\b|\bDON'?T\s+USE\b")
_STATE_NAME = re.compile(
    r"(?<![A-Za-z])("
    + "|".join(sorted((re.escape(n) for n in STATE_NAMES.values()), key=len, reverse=True))
    + r")(?![A-Za-z])"
)
# a state name followed by these is a place, not the state ("Kansas City", "Virginia Beach")
_PLACE_AFTER = re.compile(
    r"\s*(?:City|County|Co\b|Springs|Falls|Beach|Township|Twp|Parish|Village|Heights|Rapids|"
    r"Dunes|Borough|Town\b|Court House)"
)
# ... and at the start of a name these make it a city's own agency ("Washington PD")
_CITY_AGENCY_AFTER = re.compile(r"\s*(?:PD\b|Police|Fire)")


def _words(*phrases: str) -> re.Pattern:
    return re.compile(
        r"(?<![A-Za-z0-9])(?:" + "|".join(phrases) + r")(?![A-Za-z0-9])", re.IGNORECASE
    )


def _acronyms(*tokens: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(tokens) + r")(?![A-Za-z0-9])")


# "Flock" alone is also a place ("Little Flock AR PD"): the vendor begins the name or is "Flock Safety"
_FLOCK = re.compile(r"^Flock\b|(?<![A-Za-z])Flock (?:Safety|Training)\b")
_VENDOR_NAMES = _words(
    "Flock Safety", "Axon", "Genetec", "SkyCop", "Verra Mobility", "Ubicquia", "Ontic",
    "Motorola Solutions", "Vigilant Solutions", "Rekor", "ELSAG", "Leonardo DRS", "Fusus",
)  # fmt: skip
_VENDOR_TEST = _words("Demo", "Test", "Testing", "Example")
# The seven Regional Information Sharing Systems centres (riss.net), by acronym and name.
_RISS_ACRONYMS = _acronyms("RISS", "MOCIC", "RMIN", "ROCIC", "MAGLOCLEN", "NESPIN", "WSIN")
_RISS_NAMES = _words(
    r"Regional Information Sharing Systems?", "Rocky Mountain Information Network",
    "Western States Information Network", r"Mid-States Organized Crime Information Center",
    "Regional Organized Crime Information Center", r"Middle Atlantic-Great Lakes Organized Crime",
    "New England State Police Information Network",
)  # fmt: skip
_FEDERAL_ACRONYMS = _acronyms(
    "FBI", "ATF", "DEA", "USMS", "HSI", "ICE", "CBP", "USPIS", "USPS", "TSA", "USSS", "NCIS",
    "IRS", "GSA", "BLM", "USFS", "USFWS",
)  # fmt: skip
_US = r"(?:U\.?\s?S\.?|United States)"
_FEDERAL_NAMES = _words(
    "Federal Bureau of Investigation", "Drug Enforcement Administration", "Bureau of Alcohol",
    "Marshals Service", _US + r"\s+Marshals?", "Postal Inspection Service", "Postal Service",
    "National Park Service", _US + r"\s+Park Police", "Secret Service",
    "Homeland Security Investigations", _US + r"\s+Department of Homeland Security",
    "Immigration and Customs Enforcement", "Customs and Border Protection", "Border Patrol",
    "Tennessee Valley Authority", _US + r"\s+Army", "Air Force", _US + r"\s+Navy",
    "Naval Criminal Investigative Service", "Marine Corps", "Coast Guard", "Forest Service",
    "Bureau of Land Management", "Fish and Wildlife Service", "Bureau of Prisons",
    "Federal Protective Service", "Pentagon Force Protection", _US + r"\s+Attorney",
)  # fmt: skip
# "Veterans Affairs" is federal unless a state's own department ("Illinois Department of ...")
_VETERANS = _words("Veterans Affairs")
_PRIVATE = _words(
    "Inc", "LLC", "Corp", "Corporation", "Company", "HOA", "Homeowners", "Home Owners",
    "Apartments", "Mall", "Shopping Center", "Railroad", "Railway", "Business League",
    "Chamber of Commerce", "Casino", "Property Management",
)  # fmt: skip
_STATE_LEVEL = _words(
    "State Police", "State Patrol", "Highway Patrol", "Bureau of Investigations?",
    "Bureau of Criminal Investigation", "Attorney General", "Attorney General's Office",
    "Department of Corrections", "Department of Justice", "State University", "State Parks?",
    "State Park Police", "Cal State", "University of California",
    "Law Enforcement Division", "Law Enforcement Agency", "Department of Revenue",
    "Department of Insurance", "Department of Conservation", "Department of Natural Resources",
    "Office of Homeland Security", "Board of Criminal Justice", "Information Analysis Center",
    "Wildlife and Parks", "Parks & Wildlife", "Fish and Wildlife Commission",
)  # fmt: skip
_STATE_ACRONYMS = _acronyms("CSU", "UC")
# the state itself, then an agency noun: "AZ - Department of Public Safety", "Kansas KBI"
_STATE_PREFIX_NOUN = re.compile(
    r"\s*(?:-\s*)?(?:Bureau|Department|Dept|Office|Division|Commission|Board|Agency|Attorney|"
    r"Highway|State|Law Enforcement|DOTD?|KBI|GBI|TBI|HIDTA)\b"
)
_UNIVERSITY_OF_STATE = re.compile(
    r"\bUniv(?:ersity|\.) of (?:(?:North|South|East|West|Central|Northern|Southern|Eastern|Western) )?(?:"
    + "|".join(STATE_NAMES.values())
    + r")\b"
)
# PD, SO ... and acronyms ending in them: LASD, LAPD, NYPD
_LOCAL_ACRONYMS = _acronyms(
    "PD", "SO", "DA", "DAs", "DPS", "ISD", "DTF", "TWP", "[A-Z]{1,5}(?:PD|SD|SO)"
)
_LOCAL_WORDS = _words(
    "Police", "Sheriff", "Sheriff's", "Sheriffs", "Marshal", "Marshal's", "Marshals", "Marshall's",
    "Constable", "Const", "Prosecutor", "Prosecutors", "Prosecutor's", "District Attorney",
    "District Attorney's", "Attorney's Office", "County", "City", "Township", "Village", "Town",
    "Borough", "Parish", "College", "School", "Schools", "Campus", "Task ?Force", "Strike Force",
    "Dispatch", "911", "Communications Center", "Public Safety", "Department of Public Safety",
    "Fire", "Transit", "Airport", "Port", "Rangers", "Park District",
)  # fmt: skip


@dataclass(frozen=True)
class Agency:
    """One agency of a sharing network, with where its jurisdiction and type came from.

    Attributes
    ----------
    name : str
    state : str or None
        USPS code; for federal and multi-state agencies the place named, if any.
    type : str
        One of :data:`AGENCY_TYPES`.
    state_rule, type_rule : str
        The rule that decided ``state`` and ``type`` (``code 'CA'``, ``table``, ...).
    id : str
        The id the links file gives the agency, if any.
    ori : str
        ORI from the agencies table, if any.
    from_table : bool
        Whether an agencies table row decided ``state`` and ``type``.
    note : str
        Set when the table disagrees with inference: what inference said.
    """

    name: str
    state: str | None
    type: str
    state_rule: str
    type_rule: str
    id: str = ""
    ori: str = ""
    from_table: bool = False
    note: str = ""

    def row(self, as_of: str) -> dict:
        """The agency as a row of the classification table."""
        return {
            "name": self.name, "id": self.id, "state": self.state or "", "type": self.type,
            "state_rule": self.state_rule, "type_rule": self.type_rule,
            "from_table": "yes" if self.from_table else "", "ori": self.ori, "note": self.note,
            "as_of": as_of,
        }  # fmt: skip


def infer_state(name: str) -> tuple[str | None, str]:
    """The state an agency name carries, and the rule that found it.

    Parameters
    ----------
    name : str
        Agency name as published, e.g. ``"Riverside County CA SD"``.

    Returns
    -------
    state : str or None
        USPS code, or ``None`` when the name does not say (never guessed).
    rule : str
        How it was decided, for the classification table.

    Examples
    --------
    >>> infer_state("Riverside County CA SD")
    ('CA', "code 'CA' ('SD' after a state code is a sheriff's department)")
    >>> infer_state("Sioux Falls SD PD")
    ('SD', "code 'SD'")
    >>> infer_state("Alabama Drug Enforcement Task Force Region G")
    ('AL', "state name 'Alabama'")
    >>> infer_state("Butte County SO")
    (None, 'no state code or name')
    """
    text = _ENGLISH_CAPS.sub(" ", name)
    found = [
        (m.group(1), m.start(1), m.end(1))
        for m in _TOKEN.finditer(text)
        if m.group(1) in STATE_NAMES
    ]
    codes = [c for c, _, _ in found]
    notes = []
    if len(set(codes)) > 1:
        keep = []
        for i, (code, start, _) in enumerate(found):
            prev = found[i - 1] if i else None
            if code == "SD" and prev and prev[0] != "SD" and not text[prev[2] : start].strip():
                notes.append("'SD' after a state code is a sheriff's department")
            elif code == "CO" and any(c != "CO" for c in codes):
                notes.append("'CO' beside another state code is 'County'")
            elif code == "UT" and "TX" in codes:
                notes.append("'UT' beside 'TX' is the University of Texas")
            else:
                keep.append(code)
        codes = keep
    distinct = sorted(set(codes))
    why = f" ({'; '.join(notes)})" if notes else ""
    if len(distinct) == 1:
        return distinct[0], f"code {distinct[0]!r}{why}"
    if len(distinct) > 1:
        return None, f"conflicting state codes {', '.join(distinct)}{why}"
    names = []
    for m in _STATE_NAME.finditer(text):
        if _PLACE_AFTER.match(text, m.end()):
            continue
        if not text[: m.start()].strip() and _CITY_AGENCY_AFTER.match(text, m.end()):
            continue
        names.append(m.group(1))
    by_name = {code for code, n in STATE_NAMES.items() if n in names}
    if len(by_name) == 1:
        return by_name.pop(), f"state name {names[0]!r}"
    if len(by_name) > 1:
        return None, f"conflicting state names {', '.join(sorted(set(names)))}"
    return None, "no state code or name"


def infer_type(name: str, state: str | None = None) -> tuple[str, str]:
    """The type of agency a name describes, and the rule that decided it.

    Parameters
    ----------
    name : str
    state : str, optional
        The inferred state: a name that begins with that state's name is a state agency.

    Examples
    --------
    >>> infer_type("US Postal Inspection Service")
    ('federal', "federal name 'Postal Inspection Service'")
    >>> infer_type("Dearborn MI PD", "MI")
    ('local', "local marker 'PD'")
    >>> infer_type("MOCIC")
    ('multi-state', "RISS centre 'MOCIC'")
    """
    m = _FLOCK.search(name) or _VENDOR_NAMES.search(name)
    if m:
        return "vendor", f"vendor {m.group(0)!r}"
    m = _VENDOR_TEST.search(name)
    if m:
        return "vendor", f"demo/test organisation {m.group(0)!r}"
    m = _RISS_ACRONYMS.search(name) or _RISS_NAMES.search(name)
    if m:
        return "multi-state", f"RISS centre {m.group(0)!r}"
    m = _FEDERAL_ACRONYMS.search(name)
    if m:
        return "federal", f"federal acronym {m.group(0)!r}"
    m = _FEDERAL_NAMES.search(name)
    if m:
        return "federal", f"federal name {m.group(0)!r}"
    m = _VETERANS.search(name)
    if m and not _STATE_NAME.search(name[: m.start()]):
        return "federal", f"federal name {m.group(0)!r}"
    m = _PRIVATE.search(name)
    if m:
        return "private", f"private marker {m.group(0)!r}"
    m = (
        _STATE_LEVEL.search(name)
        or _STATE_ACRONYMS.search(name)
        or _UNIVERSITY_OF_STATE.search(name)
    )
    if m:
        return "state", f"state agency {m.group(0)!r}"
    for prefix in (STATE_NAMES[state], state) if state else ():
        m = _STATE_PREFIX_NOUN.match(name, len(prefix)) if name.startswith(prefix) else None
        if m:
            return "state", f"the state's own agency {name[: m.end()]!r}"
    m = _LOCAL_ACRONYMS.search(name) or _LOCAL_WORDS.search(name)
    if m:
        return "local", f"local marker {m.group(0)!r}"
    return "unknown", "no type marker"


def classify_agency(name: str, agency_id: str = "") -> Agency:
    """Infer an agency's state and type from its name alone.

    Examples
    --------
    >>> a = classify_agency("El Cajon CA PD")
    >>> a.state, a.type
    ('CA', 'local')
    """
    state, state_rule = infer_state(name)
    typ, type_rule = infer_type(name, state)
    return Agency(
        name=name, state=state, type=typ, state_rule=state_rule, type_rule=type_rule, id=agency_id
    )


# ---------------------------------------------------------------------------------------
# Input


def _norm(name: str) -> str:
    """Key for matching names: whitespace collapsed, case folded."""
    return " ".join(name.split()).casefold()


def _open_text(path: str | Path):
    p = str(path)
    try:
        if p.endswith(".gz"):
            return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", newline="")
        if p.endswith(".bz2"):
            return io.TextIOWrapper(bz2.open(p, "rb"), encoding="utf-8-sig", newline="")
        return open(p, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise GeofenceError(f"{p}: cannot read ({exc.strerror}); check the path") from None


def _read_rows(path: str | Path) -> tuple[list[str], list[list[str]]]:
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise GeofenceError(f"{path}: empty file; expected a CSV header line")
            return [h.strip() for h in header], list(reader)
    except (UnicodeDecodeError, gzip.BadGzipFile, OSError, EOFError) as exc:
        raise GeofenceError(
            f"{path}: not readable as UTF-8 CSV ({exc.__class__.__name__}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise GeofenceError(f"{path}: malformed CSV ({exc}); check quoting") from None


def _find_columns(path, header: list[str], columns: Mapping[str, str] | None) -> dict[str, int]:
    columns = dict(columns or {})
    bad = sorted(set(columns) - set(LINK_FIELDS))
    if bad:
        raise UsageError(f"--columns {bad[0]}=...: unknown field; use {', '.join(LINK_FIELDS)}")
    lower = {h.casefold(): i for i, h in reversed(list(enumerate(header)))}
    found: dict[str, int] = {}
    for fld, candidates in LINK_FIELDS.items():
        if fld in columns:
            i = lower.get(columns[fld].casefold())
            if i is None:
                raise GeofenceError(
                    f"{path}: no column {columns[fld]!r} (--columns {fld}=...); the header has {', '.join(header)}"
                )
            found[fld] = i
            continue
        i = next((lower[c] for c in candidates if c in lower), None)
        if i is not None:
            found[fld] = i
    for fld, what in (("src", "source agency"), ("dst", "recipient agency")):
        if fld not in found:
            raise GeofenceError(
                f"{path}: no {what} column (looked for {', '.join(LINK_FIELDS[fld])}); name it with --columns {fld}=COLUMN"
            )
    return found


@dataclass(frozen=True)
class TableEntry:
    """One row of an agencies table."""

    name: str
    state: str | None
    type: str
    ori: str = ""
    note: str = ""


def load_agency_table(path: str | Path) -> dict[str, TableEntry]:
    """Read an agencies table: CSV with ``name``, ``state``, ``type`` and optional ``ori``, ``note``.

    ``state`` may be blank (federal and multi-state agencies); ``type`` is one of
    :data:`AGENCY_TYPES` except ``unknown``.

    Raises
    ------
    GeofenceError
        Naming the file, row and column of anything missing or invalid.
    """
    header, rows = _read_rows(path)
    col = {h.casefold(): i for i, h in enumerate(header)}
    for need in ("name", "state", "type"):
        if need not in col:
            raise GeofenceError(
                f"{path}: agencies table has no {need!r} column; the header must include name, state, type (ori, note optional)"
            )
    types = [t for t in AGENCY_TYPES if t != "unknown"]
    out: dict[str, TableEntry] = {}

    def cell(r: list[str], key: str) -> str:
        i = col.get(key)
        return r[i].strip() if i is not None and i < len(r) else ""

    for n, r in enumerate(rows, start=2):
        name = cell(r, "name")
        if not name:
            if any(c.strip() for c in r):
                raise GeofenceError(
                    f"{path}: row {n}: empty name; every row needs the agency name as the links file spells it"
                )
            continue
        state = cell(r, "state").upper() or None
        if state is not None and state not in STATE_NAMES:
            raise GeofenceError(
                f"{path}: row {n}: state {state!r} is not a USPS state code; use e.g. CA, or leave it blank"
            )
        typ = cell(r, "type").lower()
        if typ not in types:
            raise GeofenceError(f"{path}: row {n}: type {typ!r}; use one of {', '.join(types)}")
        key = _norm(name)
        if key in out:
            raise GeofenceError(
                f"{path}: row {n}: {name!r} is listed twice; keep one row per agency"
            )
        out[key] = TableEntry(name, state, typ, cell(r, "ori"), cell(r, "note"))
    return out


def _apply_table(inferred: Agency, entry: TableEntry | None) -> Agency:
    if entry is None:
        return inferred
    note = ""
    if (inferred.state, inferred.type) != (entry.state, entry.type):
        note = f"table overrides inference: {inferred.state or 'no state'} / {inferred.type} ({inferred.state_rule}; {inferred.type_rule})"
    table_note = f"table: {entry.note}" if entry.note else "table"
    return Agency(
        name=inferred.name, state=entry.state, type=entry.type, state_rule=table_note, type_rule="table",
        id=inferred.id, ori=entry.ori, from_table=True, note=note,
    )  # fmt: skip


def resolve_rules(names: Iterable[str | Path]) -> dict[str, RuleSet]:
    """Recipient rule sets by state: shipped ones by name (``ca``, ``il``) or ``.toml`` paths.

    Raises
    ------
    UsageError
        For a name with no shipped file, or two rule sets for one state.
    """
    out: dict[str, RuleSet] = {}
    for item in names:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if part.endswith(".toml") or "/" in part or "\\" in part:
                rs = load_rules(part)
            else:
                rs = rules_for_state(part.upper()) if re.fullmatch(r"[A-Za-z]{2}", part) else None
                if rs is None:
                    shipped = sorted(p.stem for p in _shipped_rules())
                    raise UsageError(
                        f"--rules {part}: no shipped recipient rules by that name; use one of {', '.join(shipped)} or a .toml path"
                    )
            if rs.state in out and out[rs.state].path != rs.path:
                raise UsageError(
                    f"--rules: two rule sets for {rs.state} ({out[rs.state].path.name}, {rs.path.name}); give one"
                )
            out[rs.state] = rs
    if not out:
        raise UsageError("--rules: name at least one rule set, e.g. --rules ca")
    return out


def _shipped_rules() -> list[Path]:
    from geofence._resources import layers_dir

    return sorted((layers_dir() / "jurisdictions").glob("*.toml"))


# ---------------------------------------------------------------------------------------
# Decisions


@dataclass(frozen=True)
class LinkDecision:
    """The outcome for one link."""

    decision: str
    reason: str
    rule: Rule | None = None

    def cells(self) -> dict:
        r = self.rule
        return {
            "decision": self.decision, "rule": r.id if r else "", "citation": r.citation if r else "",
            "marking": r.marking if r else "", "source_url": r.source_url if r else "", "reason": self.reason,
        }  # fmt: skip


def _check(rtype: str, recipient: Agency, source_state: str, rules: RuleSet) -> LinkDecision:
    """One recipient type through the filter's own rules, mapped to an audit decision."""
    d = check_recipient(Recipient(recipient.name, rtype, recipient.state), source_state, rules)
    if d.allowed:
        return LinkDecision("allowed", d.reason)
    rule = d.rule
    if rule is not None and rule.kind == "require_declaration":
        if rtype == "federal":
            # Illinois: whether 2-130 reaches federal agencies is unclear (policy.md section F)
            why = f"federal recipient: whether {rule.citation} reaches federal agencies is unclear; {rule.note or 'check'}"
            return LinkDecision("review", why, rule)
        return LinkDecision(
            "needs-declaration",
            f"{rule.citation}: an out-of-state recipient needs a written declaration first; the links list does not show one",
            rule,
        )
    return LinkDecision("conflict", d.reason, rule)


def decide_link(source: Agency, recipient: Agency, rules: Mapping[str, RuleSet]) -> LinkDecision:
    """Decide one link with the recipient rules of the source's state.

    Parameters
    ----------
    source, recipient : Agency
    rules : mapping of state code to RuleSet
        The selected rule sets; the source's state must be among them (or unknown).

    Returns
    -------
    LinkDecision
        ``allowed``, ``conflict``, ``needs-declaration`` or ``review`` with the rule and
        its citation (see the module docstring).
    """
    if source.type == "vendor":
        return LinkDecision(
            "review",
            f"source is a vendor organisation ({source.type_rule}), not an agency: no state's rules decide its grants",
        )
    if source.state is None:
        return LinkDecision(
            "review", f"source jurisdiction unknown ({source.state_rule}); name it in --agencies"
        )
    rs = rules[source.state]
    same_state = recipient.state == source.state
    typ = recipient.type
    if typ == "vendor":
        d = _check("private", recipient, source.state, rs)
        why = _HOSTING if source.state == "CA" else "vendor organisation: check what access it has"
        return LinkDecision("review", why, d.rule)
    if typ == "federal":
        return _check("federal", recipient, source.state, rs)
    if typ == "multi-state":
        # [I] a centre serving agencies of several states is no one state's public agency;
        # one located in the source's own state is left to a person
        d = _check("out-of-state", recipient, source.state, rs)
        if same_state:
            return LinkDecision(
                "review",
                f"multi-state centre located in {source.state}: check who can search through it",
                d.rule,
            )
        return LinkDecision(
            d.decision, f"multi-state centre, taken as out-of-state [I]: {d.reason}", d.rule
        )
    if recipient.state is None:
        return LinkDecision(
            "review",
            f"recipient jurisdiction unknown ({recipient.state_rule}); name it in --agencies",
        )
    public = "state-public" if same_state else "out-of-state"
    if typ in ("local", "state"):
        return _check(public, recipient, source.state, rs)
    if typ == "private":
        d = _check("private", recipient, source.state, rs)
        if same_state:
            return LinkDecision(
                "review",
                f"in-state private recipient: check whether it is a public agency or a data host ({d.reason})",
                d.rule,
            )
        if d.decision == "conflict":
            return d
        return LinkDecision("review", f"out-of-state private recipient: {d.reason}", d.rule)
    # type unknown: decide only when public and private give the same answer
    a, b = (
        _check(public, recipient, source.state, rs),
        _check("private", recipient, source.state, rs),
    )
    if a.decision == b.decision and not same_state:
        return a
    return LinkDecision(
        "review",
        f"recipient type unknown ({recipient.type_rule}): public or private decides; name it in --agencies",
        a.rule or b.rule,
    )


# ---------------------------------------------------------------------------------------
# The audit


@dataclass
class AuditedLink:
    """One link that was decided."""

    source: Agency
    recipient: Agency
    decision: LinkDecision

    def row(self, as_of: str) -> dict:
        s, r = self.source, self.recipient
        return {
            "source": s.name, "source_id": s.id, "source_state": s.state or "", "source_type": s.type,
            "recipient": r.name, "recipient_id": r.id, "recipient_state": r.state or "",
            "recipient_type": r.type, **self.decision.cells(), "as_of": as_of,
        }  # fmt: skip


@dataclass
class SharingAudit:
    """Everything the audit found; outputs are views of this.

    Attributes
    ----------
    as_of : str
        Date of the data (``YYYY-MM-DD``), or ``""`` when not given.
    links : list of AuditedLink
        Decided links in input order (first occurrence).
    agencies : dict
        Every agency of the links file by normalised name.
    counts : dict
        ``rows``, ``audited``, ``out_of_scope``, ``duplicates``, ``self_links``, ``blank``.
    """

    as_of: str
    links_file: str
    links_sha256: str
    rules: dict[str, RuleSet]
    source_states: tuple[str, ...]
    links: list[AuditedLink] = field(default_factory=list)
    agencies: dict[str, Agency] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)
    self_links: list[str] = field(default_factory=list)
    blank_rows: list[int] = field(default_factory=list)
    out_of_scope_by_state: Counter = field(default_factory=Counter)

    @property
    def overrides(self) -> list[Agency]:
        """Agencies whose table entry disagrees with what the name says."""
        return [a for a in self.agencies.values() if a.note]

    def decision_counts(self) -> dict[str, int]:
        c = Counter(lk.decision.decision for lk in self.links)
        return {d: c.get(d, 0) for d in DECISIONS}

    def summary(self) -> dict:
        """Per source state and per source agency: links, out-of-state recipients and their states, federal, multi-state, review."""
        by_source: dict[str, dict] = {}
        for lk in self.links:
            s = lk.source
            if s.name not in by_source:
                by_source[s.name] = {"source": s.name, "state": s.state or "", **_blank_stats()}
            _count(by_source[s.name], s, lk.recipient, lk.decision.decision)
        by_state: dict[str, dict] = {}
        for d in by_source.values():
            t = by_state.setdefault(d["state"] or "unknown", {"sources": 0, **_blank_stats()})
            t["sources"] += 1
            for k, v in d.items():
                if k == "out_of_state_states":
                    for st, n in v.items():
                        t[k][st] = t[k].get(st, 0) + n
                elif k not in ("source", "state"):
                    t[k] += v
        for d in (*by_source.values(), *by_state.values()):
            d["out_of_state_states"] = dict(sorted(d["out_of_state_states"].items()))
            d["n_out_of_state_states"] = len(d["out_of_state_states"])
        c = self.counts
        doc = {
            "tool": {"name": "geofence", "version": __version__},
            "as_of": self.as_of,
            "links_file": {"file": self.links_file, "sha256": self.links_sha256},
            "rules": [
                {"state": st, "title": rs.title, "file": rs.path.name, "sha256": rs.sha256}
                for st, rs in sorted(self.rules.items())
            ],
            "source_states": list(self.source_states),
            "counts": {
                "rows": c["rows"],
                "audited": c["audited"],
                "out_of_scope": c["out_of_scope"],
                "duplicates": c["duplicates"],
                "self_links": c["self_links"],
                "blank": c["blank"],
                "decisions": self.decision_counts(),
                "agencies": len(self.agencies),
                "table_overrides": len(self.overrides),
            },
            "out_of_scope_by_source_state": dict(sorted(self.out_of_scope_by_state.items())),
            "duplicates": [
                {"source": s, "recipient": r, "rows": n + 1}
                for (s, r), n in sorted(self.duplicates.items())
            ],
            "self_links": sorted(set(self.self_links)),
            "blank_rows": self.blank_rows,
            "table_overrides": [
                {"name": a.name, "state": a.state or "", "type": a.type, "note": a.note}
                for a in sorted(self.overrides, key=lambda a: a.name)
            ],
            "by_source_state": dict(sorted(by_state.items())),
            "by_source": [by_source[k] for k in sorted(by_source)],
        }
        return doc


def _blank_stats() -> dict:
    return {
        "links": 0, "in_state": 0, "out_of_state": 0, "out_of_state_states": {}, "federal": 0,
        "multi_state": 0, "vendor": 0, "unknown_jurisdiction": 0,
        **{d.replace("-", "_"): 0 for d in DECISIONS},
    }  # fmt: skip


def _count(d: dict, s: Agency, r: Agency, decision: str) -> None:
    d["links"] += 1
    d[decision.replace("-", "_")] += 1
    if r.type == "federal":
        d["federal"] += 1
    elif r.type == "multi-state":
        d["multi_state"] += 1
    elif r.type == "vendor":
        d["vendor"] += 1
    elif r.state is None:
        d["unknown_jurisdiction"] += 1
    elif s.state is not None and r.state != s.state:
        d["out_of_state"] += 1
        d["out_of_state_states"][r.state] = d["out_of_state_states"].get(r.state, 0) + 1
    elif s.state is not None:
        d["in_state"] += 1


def _as_of(value: str | _dt.date | None) -> str:
    """``YYYY-MM-DD`` of a date, datetime or ISO-8601 text; ``""`` when not given."""
    if value is None or value == "":
        return ""
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return _dt.date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        raise UsageError(
            f"--as-of {value!r}: not a date; use YYYY-MM-DD, e.g. 2024-04-26"
        ) from None


def audit_sharing(
    links: str | Path,
    rules: Sequence[str | Path] | Mapping[str, RuleSet],
    *,
    agencies: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    source_states: Sequence[str] | None = None,
    as_of: str | _dt.date | None = None,
) -> SharingAudit:
    """Classify every agency of a links file and decide every link.

    Parameters
    ----------
    links : path
        CSV (plain, ``.gz`` or ``.bz2``) of source and recipient agency names, optional ids.
    rules : names, paths or a mapping of state code to RuleSet
        Recipient rule sets (``["ca", "il"]``); each audits the sources of its state.
    agencies : path, optional
        Table of ``name, state, type[, ori, note]`` that overrides inference.
    columns : mapping, optional
        ``{"src": ..., "dst": ..., "src_id": ..., "dst_id": ...}`` column names.
    source_states : sequence of str, optional
        Audit only sources of these states (each needs a rule set); sources of unknown
        state are always audited, as ``review``.
    as_of : date or ``YYYY-MM-DD``, optional
        Date of the data; carried onto every output.

    Returns
    -------
    SharingAudit

    Examples
    --------
    >>> audit = audit_sharing("links.csv", ["ca"], as_of="2024-04-26")  # doctest: +SKIP
    >>> audit.summary()["by_source_state"]["CA"]["out_of_state"]  # doctest: +SKIP
    """
    rule_sets = dict(rules) if isinstance(rules, Mapping) else resolve_rules(rules)
    if source_states:
        wanted = tuple(sorted({s.strip().upper() for s in source_states if s.strip()}))
        for st in wanted:
            if st not in rule_sets:
                raise UsageError(
                    f"--source-state {st}: no rules selected for {st}; add --rules {st.lower()} (shipped: {', '.join(p.stem for p in _shipped_rules())})"
                )
    else:
        wanted = tuple(sorted(rule_sets))
    table = load_agency_table(agencies) if agencies else {}
    header, rows = _read_rows(links)
    col = _find_columns(links, header, columns)
    audit = SharingAudit(
        as_of=_as_of(as_of), links_file=Path(str(links)).name, links_sha256=sha256_file(links),
        rules=rule_sets, source_states=wanted,
    )  # fmt: skip
    seen: set[tuple[str, str]] = set()
    by_raw: dict[str, tuple[str, Agency]] = {}  # raw cell -> (match key, agency)
    decided: dict[tuple, LinkDecision] = {}  # a decision depends on the two agencies only

    def agency(raw: str, agency_id: str) -> tuple[str, Agency]:
        hit = by_raw.get(raw)
        if hit is None:
            key = _norm(raw)
            a = audit.agencies.get(key)
            if a is None:
                name = " ".join(raw.split())
                a = audit.agencies[key] = _apply_table(
                    classify_agency(name, agency_id), table.get(key)
                )
            hit = by_raw[raw] = (key, a)
        return hit

    def cell(r: list[str], fld: str) -> str:
        i = col.get(fld)
        return r[i].strip() if i is not None and i < len(r) else ""

    c = audit.counts
    for n, r in enumerate(rows, start=2):
        if not any(x.strip() for x in r):
            continue  # blank line: not a record
        c["rows"] += 1
        src, dst = cell(r, "src"), cell(r, "dst")
        if not src or not dst:
            c["blank"] += 1
            audit.blank_rows.append(n)
            continue
        sid, tid = cell(r, "src_id"), cell(r, "dst_id")
        (skey, s), (tkey, t) = agency(src, sid), agency(dst, tid)
        if skey == tkey or (sid and sid == tid):
            c["self_links"] += 1
            audit.self_links.append(s.name)
            continue
        if (skey, tkey) in seen:
            c["duplicates"] += 1
            audit.duplicates[(s.name, t.name)] += 1
            continue
        seen.add((skey, tkey))
        if s.state is not None and s.state not in wanted:
            c["out_of_scope"] += 1
            audit.out_of_scope_by_state[s.state] += 1
            continue
        c["audited"] += 1
        dkey = (s.state, s.type, s.state_rule, s.type_rule, tkey)
        d = decided.get(dkey)
        if d is None:
            d = decided[dkey] = decide_link(s, t, rule_sets)
        audit.links.append(AuditedLink(s, t, d))
    # the counts add up: every non-blank row of the file is in exactly one bucket
    assert (
        c["rows"]
        == c["audited"] + c["out_of_scope"] + c["duplicates"] + c["self_links"] + c["blank"]
    )
    return audit


# ---------------------------------------------------------------------------------------
# Outputs: deterministic bytes for identical inputs


def _csv_bytes(columns: Sequence[str], rows: Iterable[Mapping]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def decisions_bytes(audit: SharingAudit, fmt: str = "csv") -> bytes:
    """The decisions table as CSV, or as a JSON document with one decision per line."""
    rows = [lk.row(audit.as_of) for lk in audit.links]
    if fmt == "csv":
        return _csv_bytes(DECISION_COLUMNS, rows)
    if fmt == "json":
        # one decision per line, so that the file diffs well and streams through grep
        head = json.dumps(
            {"as_of": audit.as_of, "links_file": audit.links_file}, ensure_ascii=False
        )
        body = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
        return f'{head[:-1]}, "decisions": [\n{body}\n]}}\n'.encode()
    raise UsageError(f"--format {fmt}: use csv or json")


def classification_bytes(audit: SharingAudit) -> bytes:
    """Every agency of the links file with its state, type and the rules that decided them."""
    agencies = sorted(audit.agencies.values(), key=lambda a: (a.name.casefold(), a.name))
    return _csv_bytes(CLASSIFICATION_COLUMNS, (a.row(audit.as_of) for a in agencies))


def summary_bytes(audit: SharingAudit) -> bytes:
    return (json.dumps(audit.summary(), indent=1, ensure_ascii=False) + "\n").encode()


_NODE_ATTRS = (
    "name",
    "agency_id",
    "state",
    "type",
    "state_rule",
    "type_rule",
    "from_table",
    "ori",
    "note",
)
_EDGE_ATTRS = (
    "decision",
    "rule",
    "citation",
    "marking",
    "reason",
    "source_state",
    "recipient_state",
    "recipient_type",
)


def _graph_parts(audit: SharingAudit) -> tuple[list[tuple[str, dict]], list[tuple[str, str, dict]]]:
    used: dict[str, Agency] = {}
    for lk in audit.links:
        used.setdefault(lk.source.name, lk.source)
        used.setdefault(lk.recipient.name, lk.recipient)
    nodes = []
    for name in sorted(used):
        a = used[name]
        nodes.append((name, {
            "name": a.name, "agency_id": a.id, "state": a.state or "", "type": a.type,
            "state_rule": a.state_rule, "type_rule": a.type_rule,
            "from_table": "yes" if a.from_table else "", "ori": a.ori, "note": a.note,
        }))  # fmt: skip
    edges = []
    for lk in audit.links:
        c = lk.decision.cells()
        edges.append((lk.source.name, lk.recipient.name, {
            "decision": c["decision"], "rule": c["rule"], "citation": c["citation"], "marking": c["marking"],
            "reason": c["reason"], "source_state": lk.source.state or "",
            "recipient_state": lk.recipient.state or "", "recipient_type": lk.recipient.type,
        }))  # fmt: skip
    return nodes, edges


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(value: str) -> str:
    return escape(_XML_BAD.sub("\ufffd", value))


def graphml_bytes(audit: SharingAudit) -> bytes:
    """The audited network as GraphML (directed; node ids ``n0, n1, ...`` in name order)."""
    nodes, edges = _graph_parts(audit)
    ids = {name: f"n{i}" for i, (name, _) in enumerate(nodes)}
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
        '  <key id="g_as_of" for="graph" attr.name="as_of" attr.type="string"/>',
        '  <key id="g_links_file" for="graph" attr.name="links_file" attr.type="string"/>',
    ]
    out += [
        f'  <key id="n_{k}" for="node" attr.name="{k}" attr.type="string"/>' for k in _NODE_ATTRS
    ]
    out += [
        f'  <key id="e_{k}" for="edge" attr.name="{k}" attr.type="string"/>' for k in _EDGE_ATTRS
    ]
    out.append('  <graph id="sharing" edgedefault="directed">')
    out.append(f'    <data key="g_as_of">{_x(audit.as_of)}</data>')
    out.append(f'    <data key="g_links_file">{_x(audit.links_file)}</data>')
    for name, attrs in nodes:
        out.append(f'    <node id="{ids[name]}">')
        out += [f'      <data key="n_{k}">{_x(v)}</data>' for k, v in attrs.items() if v != ""]
        out.append("    </node>")
    for i, (s, t, attrs) in enumerate(edges):
        out.append(f'    <edge id="e{i}" source="{ids[s]}" target="{ids[t]}">')
        out += [f'      <data key="e_{k}">{_x(v)}</data>' for k, v in attrs.items() if v != ""]
        out.append("    </edge>")
    out += ["  </graph>", "</graphml>", ""]
    return "\n".join(out).encode("utf-8")


def node_link_bytes(audit: SharingAudit) -> bytes:
    """The audited network as node-link JSON (D3's form; ``networkx.node_link_graph(d, edges="links")``)."""
    nodes, edges = _graph_parts(audit)
    doc = {
        "directed": True,
        "multigraph": False,
        "graph": {"as_of": audit.as_of, "links_file": audit.links_file},
        "nodes": [
            {"id": name, **{k: v for k, v in attrs.items() if k != "name"}} for name, attrs in nodes
        ],
        "links": [{"source": s, "target": t, **attrs} for s, t, attrs in edges],
    }
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()


def _graph_writer(path: str | Path):
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".graphml":
        return graphml_bytes
    if suffix == ".json":
        return node_link_bytes
    raise UsageError(f"--graph {path}: name the file .graphml (GraphML) or .json (node-link JSON)")


def run_sharing(
    links: str | Path,
    rules: Sequence[str | Path],
    *,
    out: str | Path,
    fmt: str | None = None,
    agencies: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    source_states: Sequence[str] | None = None,
    as_of: str | _dt.date | None = None,
    graph: Sequence[str | Path] = (),
    classification: str | Path | None = None,
    summary: str | Path | None = None,
) -> dict:
    """Run the audit and write its outputs; what ``geofence sharing`` does.

    Parameters
    ----------
    links, rules, agencies, columns, source_states, as_of
        As for :func:`audit_sharing`.
    out : path or ``"-"``
        Decisions table.
    fmt : ``"csv"`` or ``"json"``, optional
        Format of ``out``; default from its suffix (``.json`` -> JSON, else CSV).
    graph : paths
        ``.graphml`` and/or ``.json`` (node-link) files of the audited network.
    classification : path, optional
        Every agency with state, type and rules, for review.
    summary : path, optional
        JSON summary per source state and source agency; written last.

    Returns
    -------
    dict
        The summary document.
    """
    if fmt is None:
        fmt = "json" if str(out).lower().endswith(".json") else "csv"
    if fmt not in ("csv", "json"):
        raise UsageError(f"--format {fmt}: use csv or json")
    writers = [(p, _graph_writer(p)) for p in graph]  # bad suffixes fail before any work
    audit = audit_sharing(
        links, rules, agencies=agencies, columns=columns, source_states=source_states, as_of=as_of
    )
    with contextlib.ExitStack() as stack:
        # all outputs are renamed into place together, when the last one is complete
        parts = [(out, decisions_bytes(audit, fmt))]
        parts += [(p, w(audit)) for p, w in writers]
        if classification is not None:
            parts.append((classification, classification_bytes(audit)))
        for path, data in parts:
            stack.enter_context(atomic_output(path)).write(data)
    doc = audit.summary()
    if summary is not None:
        with atomic_output(summary) as fh:
            fh.write(summary_bytes(audit))
    return doc
