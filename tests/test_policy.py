"""Policy packs: shipped packs, union of packs, extends, validation and the CLI (issue #2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geofence.cli import cli
from geofence.errors import PolicyError
from geofence.model import CATEGORIES, TIERS
from geofence.policy import MARKINGS, STATUSES, list_packs, load_pack, load_policy

REPO = Path(__file__).resolve().parents[1]
# The project's policy reference lives beside the repository (../shared/reference).
POLICY_MD = REPO.parent / "shared" / "reference" / "policy.md"

SHIPPED = ("ca-7284.8", "cbp-2013", "dhs-2021", "ice-2011")

# policy.md section A, columns I11+F16 (ice-2011), C13 (cbp-2013), D21 (dhs-2021), CA.
# A tick ("✔") or partial ("~") mark means the pack lists the category.
SECTION_A = {
    "school": {"ice-2011", "cbp-2013", "dhs-2021", "ca-7284.8"},
    "childcare": {"ice-2011", "cbp-2013", "dhs-2021"},
    "school_bus_stop": {"ice-2011", "dhs-2021"},
    "medical": {"ice-2011", "cbp-2013", "dhs-2021", "ca-7284.8"},
    "worship": {"ice-2011", "cbp-2013", "dhs-2021"},
    "children_gather": {"dhs-2021"},
    "social_services": {"dhs-2021", "ca-7284.8"},
    "ceremony": {"ice-2011", "cbp-2013", "dhs-2021"},
    "demonstration": {"ice-2011", "dhs-2021"},
    "community_center": {"cbp-2013", "dhs-2021"},
    "courthouse": {"ca-7284.8"},
    "library": {"ca-7284.8"},
    "labor_agency": {"ca-7284.8"},
}
# "disaster_relief": D21 lists it; CA's "~ shelters" is filed under social_services.
SECTION_A["disaster_relief"] = {"dhs-2021"}
EVENTS = {"ceremony", "demonstration", "disaster_relief", "school_bus_stop"}  # policy.md A/B


def test_every_shipped_pack_loads_and_is_listed():
    infos = list_packs()
    assert [i.name for i in infos] == list(SHIPPED)
    for info in infos:
        pack = load_pack(info.name)
        assert pack.info == info
        assert info.status in STATUSES and len(info.sha256) == 64
        for cat in pack.categories.values():
            # policy.md B: at 30, near 150, vicinity 400 are the documented defaults [I].
            assert cat.tiers_m == {"at": 30.0, "near": 150.0, "vicinity": 400.0}
            assert cat.temporal == ("event" if cat.id in EVENTS else "permanent")
            assert (cat.pad_before_s, cat.pad_after_s) == (
                (3600.0, 3600.0) if cat.id in EVENTS else (0.0, 0.0)
            )
            assert cat.footprint_m > 0 and cat.clauses
            assert all(
                c.marking in MARKINGS and c.source_url.startswith("http") for c in cat.clauses
            )


def test_shipped_packs_list_the_categories_of_policy_md_section_a():
    for name in SHIPPED:
        listed = {c for c, packs in SECTION_A.items() if name in packs}
        assert set(load_pack(name).categories) == listed, name


def test_footprints_follow_policy_md_section_b():
    policy = load_policy(["dhs-2021", "ca-7284.8"])
    got = {c: r.footprint_m for c, r in policy.categories.items()}
    # school/hospital 100, worship/social facility 30, playground 20, bus stop 10.
    assert (got["school"], got["medical"], got["worship"], got["social_services"]) == (
        100,
        100,
        30,
        30,
    )
    assert (got["children_gather"], got["school_bus_stop"]) == (20, 10)


def test_pack_status_and_dates():
    dhs = load_pack("dhs-2021").info
    assert (dhs.status, dhs.effective_from, dhs.effective_to) == (
        "rescinded",
        "2021-10-27",
        "2025-01-20",
    )
    ice = load_pack("ice-2011")
    assert (ice.info.effective_from, ice.info.effective_to) == ("2011-10-24", "2021-10-27")
    # The 2016 FAQ additions are clauses of ice-2011 with their own start date.
    bus = ice.categories["school_bus_stop"]
    assert [c.clause_id for c in bus.clauses] == ["2016 FAQ, school bus stops"]
    assert bus.clause_dates == (("2016-07-15", "2021-10-27"),)
    school = ice.categories["school"]
    assert [d[0] for d in school.clause_dates] == ["2011-10-24", "2016-07-15"]


@pytest.mark.skipif(not POLICY_MD.exists(), reason="policy reference not beside the repository")
def test_every_quoted_clause_is_verbatim_in_policy_md():
    reference = POLICY_MD.read_text(encoding="utf-8")
    for name in SHIPPED:
        pack = load_pack(name)
        texts = [c.text for cat in pack.categories.values() for c in cat.clauses]
        texts += [pack.scope.text] if pack.scope else []
        missing = [t for t in texts if t not in reference]
        assert not missing, (name, missing)


# --------------------------------------------------------------------------------------
# Union of packs


def test_default_is_union_of_federal_packs_at_near_labelled_with_every_pack():
    policy = load_policy()
    assert policy.tier == "near"
    assert [p.name for p in policy.packs] == ["ice-2011", "cbp-2013", "dhs-2021"]
    federal = {"ice-2011", "cbp-2013", "dhs-2021"}
    expected = {c: packs & federal for c, packs in SECTION_A.items() if packs & federal}
    assert {c: set(r.packs) for c, r in policy.categories.items()} == expected
    assert policy.categories["worship"].packs == ("ice-2011", "cbp-2013", "dhs-2021")
    assert list(policy.categories) == [c for c in CATEGORIES if c in expected]
    assert all(r.buffer_m == 150.0 for r in policy.categories.values())
    # Every clause of every pack is kept: ice-2011 has the memo and the 2016 FAQ for worship.
    assert len(policy.categories["worship"].clauses) == 2 + 1 + 1


def test_tier_and_overrides():
    policy = load_policy(["dhs-2021", "ca-7284.8"], tier="vicinity", overrides={"medical": 250})
    assert policy.categories["medical"].buffer_m == 250.0
    assert policy.categories["school"].buffer_m == 400.0
    assert policy.categories["courthouse"].packs == ("ca-7284.8",)
    assert load_policy(["ca-7284.8"], tier="at").categories["library"].buffer_m == 30.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tier": "far"}, "unknown tier 'far'"),
        ({"overrides": {"hospital": 100}}, "distance override hospital=100: unknown category"),
        (
            {"overrides": {"courthouse": 100}},
            r"no chosen pack \(ice-2011, cbp-2013, dhs-2021\) lists courthouse",
        ),
        (
            {"overrides": {"medical": -1}},
            "distance override medical=-1: must be a finite distance >= 0",
        ),
        ({"overrides": {"medical": "wide"}}, "not a number of metres"),
    ],
)
def test_policy_argument_errors(kwargs, match):
    with pytest.raises(PolicyError, match=match):
        load_policy(**kwargs)


def test_unknown_pack_name():
    with pytest.raises(
        PolicyError, match=r"unknown policy pack 'dhs-2022'; choose one of: ca-7284\.8, cbp-2013"
    ):
        load_policy(["dhs-2022"])


def _pack(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


MINIMAL = """
name = "{name}"
title = "Test pack {name}"
status = "in_force"
[categories.school]
name = "School"
temporal = "permanent"
footprint_m = {footprint}
tiers_m = {{ at = {at}, near = {near}, vicinity = 500 }}
  [[categories.school.clauses]]
  id = "c1"
  text = "schools"
  source_url = "https://example.org/{name}"
  marking = "[I]"
"""


def test_largest_distance_wins_when_packs_disagree(tmp_path):
    a = _pack(tmp_path / "a.toml", MINIMAL.format(name="a", footprint=50, at=10, near=200))
    b = _pack(tmp_path / "b.toml", MINIMAL.format(name="b", footprint=80, at=40, near=120))
    rule = load_policy([a, b]).categories["school"]
    assert rule.tiers_m == {"at": 40.0, "near": 200.0, "vicinity": 500.0}
    assert (rule.buffer_m, rule.footprint_m, rule.packs) == (200.0, 80.0, ("a", "b"))


def test_pack_that_extends_another(tmp_path):
    path = _pack(
        tmp_path / "city.toml",
        """
name = "city-2025"
extends = "dhs-2021"
title = "Our city's reading of the 2021 list, plus libraries"
status = "in_force"
effective_from = 2025-02-01
effective_to = 2099-12-31

[categories.medical]
tiers_m = { near = 250 }   # hospitals and campuses: a wider near tier (policy.md B)

[categories.library]
name = "Public library"
temporal = "permanent"
footprint_m = 30
tiers_m = { at = 30, near = 150, vicinity = 400 }
  [[categories.library.clauses]]
  id = "council resolution 1"
  text = "public libraries"
  source_url = "https://example.org/resolution"
  marking = "[P]"
""",
    )
    pack = load_pack(path)
    parent = load_pack("dhs-2021")
    assert [p.name for p in pack.parents] == ["dhs-2021"]
    assert set(pack.categories) == set(parent.categories) | {"library"}
    medical = pack.categories["medical"]
    assert medical.tiers_m == {"at": 30.0, "near": 250.0, "vicinity": 400.0}
    assert medical.clauses == parent.categories["medical"].clauses  # still rests on DHS 2021
    assert medical.footprint_m == parent.categories["medical"].footprint_m
    policy = load_policy([path])
    assert [p.name for p in policy.packs] == ["city-2025", "dhs-2021"]
    assert policy.categories["medical"].buffer_m == 250.0
    assert policy.categories["medical"].packs == ("dhs-2021",)
    assert policy.categories["library"].packs == ("city-2025",)


def test_extends_cycle(tmp_path):
    _pack(tmp_path / "x.toml", 'name = "x"\ntitle = "x"\nstatus = "in_force"\nextends = "y.toml"\n')
    _pack(tmp_path / "y.toml", 'name = "y"\ntitle = "y"\nstatus = "in_force"\nextends = "x.toml"\n')
    with pytest.raises(PolicyError, match=r"extends: cycle x\.toml -> y\.toml -> x\.toml"):
        load_pack(tmp_path / "x.toml")


# --------------------------------------------------------------------------------------
# Validation: one error naming file and key, exit code 1 on the command line

GOOD = MINIMAL.format(name="mine", footprint=30, at=30, near=150)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            GOOD.replace('status = "in_force"', 'status = "in_force"\ncolour = "red"'),
            "policy pack mine.toml: colour: unknown key",
        ),
        (
            GOOD.replace("near = 150", "near = -150"),
            "policy pack mine.toml: categories.school.tiers_m.near: -150 must be a finite distance >= 0 metres",
        ),
        (
            GOOD.replace("near = 150, ", ""),
            "policy pack mine.toml: categories.school.tiers_m.near: missing",
        ),
        (
            GOOD.replace("footprint_m = 30\n", ""),
            "policy pack mine.toml: categories.school.footprint_m: missing",
        ),
        (
            GOOD.replace("[categories.school]", "[categories.hospital]").replace(
                "categories.school.clauses", "categories.hospital.clauses"
            ),
            "policy pack mine.toml: categories.hospital: unknown category id 'hospital'",
        ),
        (
            GOOD.replace('status = "in_force"', 'status = "active"'),
            "policy pack mine.toml: status: 'active' is not a status; use one of in_force, rescinded",
        ),
        (
            GOOD.replace('marking = "[I]"', 'marking = "Q"'),
            r"policy pack mine.toml: categories.school.clauses\[0\].marking: 'Q' is not a marking",
        ),
        (
            GOOD.replace('temporal = "permanent"', 'temporal = "sometimes"'),
            "categories.school.temporal: 'sometimes' is not allowed",
        ),
        (
            GOOD.replace("footprint_m = 30", "footprint_m = 30\npad_before_min = 15"),
            'categories.school.pad_before_min: pads only apply to temporal = "event"',
        ),
        (
            GOOD.replace("near = 150", "near = 600"),
            r"categories.school.tiers_m: .* must satisfy at <= near <= vicinity",
        ),
        (
            GOOD.replace('title = "Test pack mine"', 'title = "Test pack mine'),
            r"policy pack mine.toml: not valid TOML: .*\(at line 3, column \d+\)",
        ),
        (GOOD.replace('text = "schools"\n', ""), r"categories.school.clauses\[0\].text: missing"),
    ],
)
def test_pack_validation_errors(tmp_path, body, message):
    path = _pack(tmp_path / "mine.toml", body)
    with pytest.raises(PolicyError, match=message):
        load_pack(path)
    result = CliRunner().invoke(cli, ["policies", "show", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("geofence: error: policy pack mine.toml: ")


def test_good_minimal_pack_is_accepted(tmp_path):
    # The validation table above edits this pack; unedited it must load.
    pack = load_pack(_pack(tmp_path / "mine.toml", GOOD))
    assert pack.categories["school"].tiers_m == dict(zip(TIERS, (30.0, 150.0, 500.0), strict=True))


# --------------------------------------------------------------------------------------
# Command line


def test_policies_list():
    result = CliRunner().invoke(cli, ["policies", "list"])
    assert result.exit_code == 0, result.output
    for name in SHIPPED:
        assert name in result.output
    assert "rescinded  2021-10-27 .. 2025-01-20" in result.output
    result = CliRunner().invoke(cli, ["policies", "list", "--json"])
    assert [p["name"] for p in json.loads(result.output)] == list(SHIPPED)


def test_policies_show_prints_citations():
    result = CliRunner().invoke(cli, ["policies", "show", "ice-2011"])
    assert result.exit_code == 0, result.output
    assert '"School bus stops that are marked and/or known to the officer' in result.output
    assert "[Q2] 2016 FAQ, school bus stops" in result.output
    assert (
        "https://vansd.org/limitations-on-dhs-immigration-enforcement-action-at-sensitive-locations"
        in result.output
    )
    assert "project's choice [I], not policy" in result.output
    result = CliRunner().invoke(cli, ["policies", "show", "dhs-2021", "--json"])
    data = json.loads(result.output)
    assert data["status"] == "rescinded" and data["effective_to"] == "2025-01-20"
    clause = data["categories"]["school"]["clauses"][0]
    assert clause["marking"] == "[Q]" and clause["text"].startswith(
        "A school, such as a pre-school"
    )
    result = CliRunner().invoke(cli, ["policies", "show", "nope"])
    assert result.exit_code == 1 and "unknown policy pack 'nope'" in result.output
