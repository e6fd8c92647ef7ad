"""Recipient rules: may this sender share ALPR reads with this recipient, for this purpose?

Rules live in ``layers/jurisdictions/<state>.toml`` keyed by the sender's state; each
carries its citation. The check runs before any read is looked at
(policy.md section C, "Filter logic": recipient first, then fences).

Rule kinds
----------
``allow_only_types``
    The recipient's type must be one of ``types``; ``ca-public``-style types name the
    sender's own state, so a recipient of another state is refused whatever it claims.
``refuse_purposes``
    The purpose text must not contain any of ``purposes`` (case-insensitive, whole words).
``require_declaration``
    Recipients of ``types`` need a declaration reference (``--declaration``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from geofence._resources import layers_dir
from geofence.atomic import sha256_file
from geofence.errors import RuleError, UsageError

RECIPIENT_TYPES = ("ca-public", "state-public", "federal", "out-of-state", "private")
"""``ca-public``: a California state or local public agency; ``state-public``: a public
agency of the sender's own state (any state); ``federal``; ``out-of-state``: a public
agency of another state; ``private``: companies, vendors' pools, individuals."""

RULE_KINDS = ("allow_only_types", "refuse_purposes", "require_declaration")
_RULE_KEYS = {
    "id",
    "kind",
    "types",
    "purposes",
    "citation",
    "quote",
    "marking",
    "source_url",
    "note",
}
_FILE_KEYS = {"state", "title", "rule"}


@dataclass(frozen=True)
class Recipient:
    """Who receives a share and why."""

    name: str
    type: str
    state: str | None = None
    purpose: str = ""
    declaration: str | None = None

    def __post_init__(self) -> None:
        if self.type not in RECIPIENT_TYPES:
            raise UsageError(
                f"unknown recipient type {self.type!r}: use one of {', '.join(RECIPIENT_TYPES)}"
            )


@dataclass(frozen=True)
class Rule:
    """One recipient rule with its citation."""

    id: str
    kind: str
    citation: str
    quote: str = ""
    marking: str = ""
    source_url: str = ""
    note: str = ""
    types: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()


@dataclass
class RuleSet:
    """The rules of one sender state, loaded from one file."""

    state: str
    title: str
    path: Path
    sha256: str
    rules: list[Rule] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """The outcome of the recipient check."""

    allowed: bool
    rule: Rule | None
    reason: str
    rules_file: RuleSet | None = None

    def describe(self) -> dict:
        """JSON-able form for manifests and audit logs."""
        d = {"decision": "allow" if self.allowed else "refuse", "reason": self.reason}
        if self.rule is not None:
            d["rule"] = {
                "id": self.rule.id,
                "citation": self.rule.citation,
                "marking": self.rule.marking,
                "source_url": self.rule.source_url,
            }
        if self.rules_file is not None:
            d["rules_file"] = {"file": self.rules_file.path.name, "sha256": self.rules_file.sha256}
        return d


def load_rules(path: str | Path) -> RuleSet:
    """Load and validate one recipient rule file.

    Raises
    ------
    RuleError
        Naming the file and the key when anything is malformed or unknown.
    """
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: malformed TOML: {exc}; fix the syntax at that line") from None
    except OSError as exc:
        raise RuleError(f"{path}: cannot read recipient rules: {exc.strerror}") from None
    extra = set(doc) - _FILE_KEYS
    if extra:
        raise RuleError(
            f"{path}: unknown key {sorted(extra)[0]!r}; allowed: {', '.join(sorted(_FILE_KEYS))}"
        )
    state = doc.get("state")
    if not isinstance(state, str) or not re.fullmatch(r"[A-Z]{2}", state):
        raise RuleError(f"{path}: 'state' must be a two-letter code such as \"CA\"")
    rules = []
    for i, r in enumerate(doc.get("rule", [])):
        where = f"{path}: rule {i + 1}"
        if not isinstance(r, dict):
            raise RuleError(f"{where}: must be a [[rule]] table")
        extra = set(r) - _RULE_KEYS
        if extra:
            raise RuleError(
                f"{where}: unknown key {sorted(extra)[0]!r}; allowed: {', '.join(sorted(_RULE_KEYS))}"
            )
        for key in ("id", "kind", "citation"):
            if not isinstance(r.get(key), str) or not r[key]:
                raise RuleError(f"{where}: missing '{key}'")
        if r["kind"] not in RULE_KINDS:
            raise RuleError(
                f"{where} ({r['id']}): unknown kind {r['kind']!r}; use one of {', '.join(RULE_KINDS)}"
            )
        types = tuple(r.get("types", ()))
        bad = [t for t in types if t not in RECIPIENT_TYPES]
        if bad:
            raise RuleError(
                f"{where} ({r['id']}): unknown recipient type {bad[0]!r} in 'types'; use {', '.join(RECIPIENT_TYPES)}"
            )
        if r["kind"] in ("allow_only_types", "require_declaration") and not types:
            raise RuleError(f"{where} ({r['id']}): kind {r['kind']!r} needs a non-empty 'types'")
        purposes = tuple(r.get("purposes", ()))
        if r["kind"] == "refuse_purposes" and not purposes:
            raise RuleError(
                f"{where} ({r['id']}): kind 'refuse_purposes' needs a non-empty 'purposes'"
            )
        rules.append(
            Rule(
                id=r["id"],
                kind=r["kind"],
                citation=r["citation"],
                quote=r.get("quote", ""),
                marking=r.get("marking", ""),
                source_url=r.get("source_url", ""),
                note=r.get("note", ""),
                types=types,
                purposes=purposes,
            )
        )
    return RuleSet(
        state=state, title=doc.get("title", state), path=path, sha256=sha256_file(path), rules=rules
    )


def rules_for_state(state: str, rules_dir: str | Path | None = None) -> RuleSet | None:
    """The shipped (or ``rules_dir``) rule set of a sender state, or ``None`` if it has none."""
    d = Path(rules_dir) if rules_dir else layers_dir() / "jurisdictions"
    path = d / f"{state.lower()}.toml"
    return load_rules(path) if path.exists() else None


def _purpose_hit(purpose: str, words: tuple[str, ...]) -> str | None:
    for w in words:
        if re.search(r"(?<!\w)" + re.escape(w) + r"(?!\w)", purpose, flags=re.IGNORECASE):
            return w
    return None


def check_recipient(
    recipient: Recipient, sender_state: str | None, rules: RuleSet | None = None
) -> Decision:
    """Decide whether ``recipient`` may receive reads from a sender in ``sender_state``.

    Every rule of the sender's state is applied; the first that refuses decides.

    Parameters
    ----------
    recipient : Recipient
    sender_state : str or None
        Two-letter state of the sending agency; ``None`` applies no state rule.
    rules : RuleSet, optional
        Rules to apply instead of the shipped file of ``sender_state``.
    """
    if sender_state is None:
        return Decision(True, None, "no sender state given: no recipient rule applied")
    sender_state = sender_state.upper()
    if rules is None:
        rules = rules_for_state(sender_state)
    if rules is None:
        return Decision(True, None, f"no recipient rules for sender state {sender_state}")
    rtype = recipient.type
    # ca-public names California; a recipient in another state cannot be one.
    if rtype == "ca-public" and recipient.state and recipient.state.upper() != "CA":
        rtype = "out-of-state"
    if rtype == "state-public":
        rtype = (
            "ca-public"
            if sender_state == "CA" and (recipient.state or "CA").upper() == "CA"
            else rtype
        )
    for rule in rules.rules:
        if rule.kind == "allow_only_types" and rtype not in rule.types:
            return Decision(
                False,
                rule,
                f"{rule.citation}: recipient type {recipient.type!r} may not receive ALPR information from a {rules.title} sender",
                rules,
            )
        if rule.kind == "refuse_purposes":
            hit = _purpose_hit(recipient.purpose, rule.purposes)
            if hit:
                return Decision(False, rule, f"{rule.citation}: purpose mentions {hit!r}", rules)
        if rule.kind == "require_declaration" and rtype in rule.types and not recipient.declaration:
            return Decision(
                False,
                rule,
                f"{rule.citation}: a {recipient.type} recipient needs a written declaration (--declaration REF)",
                rules,
            )
    return Decision(True, None, f"allowed by the {rules.title} rules", rules)
