"""Sharing-network audit: classifier, decisions, bad input, outputs, real Flock data (issue #11)."""

from __future__ import annotations

import csv
import doctest
import io
import json
from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

import geofence.sharing
from geofence.cli import cli
from geofence.errors import GeofenceError, UsageError
from geofence.sharing import audit_sharing, classify_agency

FLOCK = Path(__file__).resolve().parents[1] / "sample_data" / "flock"
FLOCK_LINKS = FLOCK / "agency_access20240426.csv.gz"
FLOCK_TABLE = FLOCK / "agencies_reviewed.csv"


# --------------------------------------------------------------------------- classifier


@pytest.mark.parametrize(
    ("name", "state", "type_"),
    [
        # the pitfalls the issue lists
        ("Riverside County CA SD", "CA", "local"),  # SD after a state code: sheriff's department
        ("Sioux Falls SD PD", "SD", "local"),  # SD alone: South Dakota
        ("Dearborn MI PD", "MI", "local"),  # not the DEA
        ("Foothill-DeAnza CA PD", "CA", "local"),
        ("Demopolis AL PD", "AL", "local"),  # not a demo organisation
        ("Alabama Drug Enforcement Task Force Region G", "AL", "local"),  # not the DEA
        ("US Postal Inspection Service", None, "federal"),
        ("MOCIC", None, "multi-state"),
        # the forms the issue names, and more of the same kind
        ("El Cajon CA PD", "CA", "local"),
        ("Chaffey College PD (CA)", "CA", "local"),
        ("AZ - Department of Public Safety", "AZ", "state"),
        ("Mendocino County SO-CA", "CA", "local"),
        ("Hermosa Beach PD CA", "CA", "local"),
        ("California Highway Patrol", "CA", "state"),
        ("Oklahoma State Bureau of Investigations", "OK", "state"),
        ("Washington State Patrol", "WA", "state"),
        # state names inside place names are not the state
        ("Nevada City CA PD", "CA", "local"),
        ("Kansas City MO PD", "MO", "local"),
        ("Wyoming OH PD", "OH", "local"),
        ("Colorado Springs Airport (COS)", None, "local"),
        ("Washington PD", None, "local"),
        # CO beside a code is "County"; UT beside TX is the University of Texas
        ("Reeves CO TX SO", "TX", "local"),
        ("Wagoner CO SO OK", "OK", "local"),
        ("UT Southwestern Medical Center TX", "TX", "unknown"),
        ("Moffat County SO CO", "CO", "local"),
        # upper-case English is not a state code
        ("Georgia Department of Natural Resources - NOT IN USE", "GA", "state"),
        # case-sensitive whole-token acronyms
        ("RCATF CA PD", "CA", "local"),  # Riverside County Auto Theft Task Force, not the ATF
        ("ATF Louisville KY", "KY", "federal"),
        ("FBI", None, "federal"),
        ("MS Office of Homeland Security", "MS", "state"),  # a state office, not DHS
        ("Fort Eustis VA US Army", "VA", "federal"),
        # RISS centres, also when the name carries a state
        ("Rocky Mountain Information Network (RMIN/RISS) AZ", "AZ", "multi-state"),
        ("Western States Information Network (CA)", "CA", "multi-state"),
        # vendors and test organisations; a town called Little Flock is not the vendor
        ("Flock Safety - Sales", None, "vendor"),
        ("Test Demo 1234", None, "vendor"),
        ("Axon", None, "vendor"),
        ("Little Flock AR PD", "AR", "local"),
        ("Union Pacific Railroad PD", None, "private"),
        # nothing to go on: unknown, never guessed
        ("Butte County SO", None, "local"),
        ("NCRIC", None, "unknown"),
        ("Crestview Fl PD", None, "local"),
    ],
)
def test_classifier(name, state, type_):
    a = classify_agency(name)
    assert (a.state, a.type) == (state, type_), (a.state_rule, a.type_rule)
    assert a.state_rule and a.type_rule


def test_conflicting_state_codes_stay_unknown():
    a = classify_agency("Springfield IL MO PD")
    assert a.state is None
    assert "IL, MO" in a.state_rule


def test_docstring_examples():
    assert doctest.testmod(geofence.sharing, raise_on_error=False).failed == 0


# --------------------------------------------------------------------------- decisions

# (source, recipient, expected decision, expected rule id); expectations from the issue
# and the rule files, written by hand
CASES = [
    ("El Cajon CA PD", "La Mesa CA PD", "allowed", ""),
    ("El Cajon CA PD", "Casa Grande AZ PD", "conflict", "ca-sb34-public-agency"),
    ("El Cajon CA PD", "FBI", "conflict", "ca-sb34-public-agency"),
    ("El Cajon CA PD", "MOCIC", "conflict", "ca-sb34-public-agency"),
    ("El Cajon CA PD", "Butte County SO", "review", ""),  # unknown jurisdiction
    (
        "El Cajon CA PD",
        "Fashion Valley Mall CA",
        "review",
        "ca-sb34-public-agency",
    ),  # in-state private
    (
        "El Cajon CA PD",
        "Flock Safety - Sales",
        "review",
        "ca-sb34-public-agency",
    ),  # vendor: hosting
    # in-state, public or private unknown: the rule that refuses it if private is named
    ("El Cajon CA PD", "Hamilton CA", "review", "ca-sb34-public-agency"),
    ("Naperville IL PD", "Kenosha WI PD", "needs-declaration", "il-2-130-declaration"),
    (
        "Naperville IL PD",
        "US Postal Inspection Service",
        "review",
        "il-2-130-declaration",
    ),  # federal under IL
    ("Naperville IL PD", "Aurora IL PD", "allowed", ""),
]


def _write_links(path: Path, rows, header=("src_agency", "external_agency")) -> Path:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


@pytest.fixture
def links(tmp_path):
    rows = [(s, r) for s, r, _, _ in CASES]
    rows += [
        ("Columbus OH PD", "El Cajon CA PD"),  # Ohio: no rules selected, out of scope
        ("El Cajon CA PD", "Casa Grande AZ PD"),  # duplicate
        ("El Cajon CA PD", " Casa  Grande AZ PD "),  # duplicate once spaces are tidied
        ("Naperville IL PD", "Naperville IL PD"),  # self-link
        ("", "Aurora IL PD"),  # no source
    ]
    return _write_links(tmp_path / "links.csv", rows)


def test_each_decision_type(links):
    audit = audit_sharing(links, ["ca", "il"], as_of="2024-04-26")
    got = {(lk.source.name, lk.recipient.name): lk for lk in audit.links}
    assert len(got) == len(CASES)
    for s, r, decision, rule in CASES:
        lk = got[(s, r)]
        assert (lk.decision.decision, lk.decision.rule.id if lk.decision.rule else "") == (
            decision,
            rule,
        ), (s, r, lk.decision.reason)
    conflict = got[("El Cajon CA PD", "Casa Grande AZ PD")].row(audit.as_of)
    assert conflict["citation"] == "Cal. Civ. Code §1798.90.55(b) (SB 34, 2015)"
    assert conflict["marking"] == "[Q]" and conflict["source_url"].startswith("https://")
    assert conflict["recipient_state"] == "AZ" and conflict["as_of"] == "2024-04-26"
    assert set(audit.decision_counts()) == {"allowed", "conflict", "needs-declaration", "review"}


def test_every_row_is_counted_once(links):
    c = audit_sharing(links, ["ca", "il"]).counts
    assert (
        c["rows"],
        c["audited"],
        c["out_of_scope"],
        c["duplicates"],
        c["self_links"],
        c["blank"],
    ) == (len(CASES) + 5, len(CASES), 1, 2, 1, 1)


def test_source_state_limits_the_audit(links):
    audit = audit_sharing(links, ["ca", "il"], source_states=["il"])
    assert {lk.source.state for lk in audit.links} == {"IL"}
    assert audit.counts["out_of_scope"] == 1 + sum(1 for s, *_ in CASES if " CA " in s)


def test_source_of_unknown_state_is_reviewed(tmp_path):
    p = _write_links(tmp_path / "l.csv", [("Yuba County Sheriffs Office", "Sutter County CA SO")])
    (lk,) = audit_sharing(p, ["ca"]).links
    assert lk.decision.decision == "review" and "source jurisdiction unknown" in lk.decision.reason


def test_filter_rules_are_used_unchanged(tmp_path):
    """A rule file of our own, with a different id, decides the audit: nothing is hard-wired."""
    rules = tmp_path / "xx.toml"
    rules.write_text(
        'state = "CA"\ntitle = "Test"\n[[rule]]\nid = "only-public"\nkind = "allow_only_types"\n'
        'types = ["ca-public", "federal"]\ncitation = "Test Code 1"\n',
        encoding="utf-8",
    )
    p = _write_links(
        tmp_path / "l.csv", [("El Cajon CA PD", "FBI"), ("El Cajon CA PD", "Casa Grande AZ PD")]
    )
    d = {lk.recipient.name: lk.decision for lk in audit_sharing(p, [str(rules)]).links}
    assert d["FBI"].decision == "allowed"
    assert (d["Casa Grande AZ PD"].decision, d["Casa Grande AZ PD"].rule.id) == (
        "conflict",
        "only-public",
    )


# --------------------------------------------------------------------------- bad input


def _run(*args):
    return CliRunner().invoke(cli, ["sharing", *map(str, args)])


def test_missing_column_is_one_line_exit_1(tmp_path):
    p = _write_links(
        tmp_path / "l.csv", [("El Cajon CA PD", "La Mesa CA PD")], header=("agency_name", "partner")
    )
    res = _run(p, "--rules", "ca", "--out", tmp_path / "d.csv")
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("geofence: error:")
        and "--columns src=COLUMN" in lines[0]
    )
    assert not (tmp_path / "d.csv").exists()
    # naming the columns fixes it
    res = _run(
        p, "--rules", "ca", "--columns", "src=agency_name,dst=partner", "--out", tmp_path / "d.csv"
    )
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rules", "zz"], "--rules zz"),
        (["--rules", "ca", "--source-state", "OH"], "--source-state OH"),
        (["--rules", "ca", "--as-of", "last tuesday"], "--as-of"),
        (["--rules", "ca", "--graph", "net.gexf"], "--graph"),
        (["--rules", "ca", "--columns", "lat=Y"], "--columns lat"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, links, args, needle):
    res = _run(links, *args, "--out", tmp_path / "d.csv")
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and needle in res.output


def test_duplicates_counted_once_and_reported(tmp_path, links):
    out, summary = tmp_path / "d.csv", tmp_path / "s.json"
    res = _run(links, "--rules", "ca,il", "--out", out, "--summary", summary)
    assert res.exit_code == 0 and "2 duplicate" in res.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sum(1 for r in rows if r["recipient"] == "Casa Grande AZ PD") == 1
    doc = json.loads(summary.read_text(encoding="utf-8"))
    assert doc["duplicates"] == [
        {"source": "El Cajon CA PD", "recipient": "Casa Grande AZ PD", "rows": 3}
    ]


def test_self_links_skipped_and_reported(tmp_path, links):
    summary = tmp_path / "s.json"
    res = _run(
        links, "--rules", "ca", "--rules", "il", "--out", tmp_path / "d.csv", "--summary", summary
    )
    assert "1 self-links" in res.output
    doc = json.loads(summary.read_text(encoding="utf-8"))
    assert doc["self_links"] == ["Naperville IL PD"]
    rows = list(csv.DictReader((tmp_path / "d.csv").open(encoding="utf-8")))
    assert not [r for r in rows if r["source"] == r["recipient"]]


def test_table_entry_overrides_inference_and_is_noted(tmp_path, links):
    table = tmp_path / "agencies.csv"
    table.write_text(
        "name,state,type,ori\nButte County SO,CA,local,CA0040000\nLa Mesa CA PD,AZ,local,\n",
        encoding="utf-8",
    )
    audit = audit_sharing(links, ["ca", "il"], agencies=table)
    d = {lk.recipient.name: lk for lk in audit.links if lk.source.name == "El Cajon CA PD"}
    assert d["Butte County SO"].decision.decision == "allowed"
    assert d["Butte County SO"].recipient.ori == "CA0040000"
    # the table wins even against a state code in the name, and says what inference said
    assert d["La Mesa CA PD"].decision.decision == "conflict"
    assert "table overrides inference: CA / local" in d["La Mesa CA PD"].recipient.note
    assert {a.name for a in audit.overrides} == {"Butte County SO", "La Mesa CA PD"}
    out, cls = tmp_path / "d.csv", tmp_path / "c.csv"
    res = _run(
        links, "--rules", "ca,il", "--agencies", table, "--out", out, "--classification", cls
    )
    assert res.exit_code == 0 and "2 agencies table entries override" in res.output
    row = next(
        r for r in csv.DictReader(cls.open(encoding="utf-8")) if r["name"] == "La Mesa CA PD"
    )
    assert (row["state"], row["from_table"]) == ("AZ", "yes") and "inference" in row["note"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name,state\nX,CA\n", "no 'type' column"),
        ("name,state,type\nX,CA,sheriff\n", "row 2: type 'sheriff'"),
        ("name,state,type\nX,Cal,local\n", "row 2: state 'CAL'"),
        ("name,state,type\nX,CA,local\nx ,CA,local\n", "row 3: 'x' is listed twice"),
    ],
)
def test_bad_agencies_table(tmp_path, links, text, needle):
    table = tmp_path / "agencies.csv"
    table.write_text(text, encoding="utf-8")
    with pytest.raises(GeofenceError, match=needle):
        audit_sharing(links, ["ca"], agencies=table)


def test_unknown_rules_name_is_a_usage_error(links):
    with pytest.raises(UsageError, match="ca, il"):
        audit_sharing(links, ["wa"])


# --------------------------------------------------------------------------- outputs


def _all_outputs(tmp_path, links, tag, fmt="csv"):
    d = tmp_path / tag
    d.mkdir()
    paths = {"out": d / f"decisions.{fmt}", "summary": d / "s.json", "classification": d / "c.csv",
             "graphml": d / "g.graphml", "nodelink": d / "g.json"}  # fmt: skip
    res = _run(links, "--rules", "ca", "--rules", "il", "--as-of", "2024-04-26", "--out", paths["out"],
               "--summary", paths["summary"], "--classification", paths["classification"],
               "--graph", paths["graphml"], "--graph", paths["nodelink"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return paths


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_outputs_are_deterministic_and_carry_the_date(tmp_path, links, fmt):
    a, b = _all_outputs(tmp_path, links, "a", fmt), _all_outputs(tmp_path, links, "b", fmt)
    for key in a:
        data = a[key].read_bytes()
        assert data == b[key].read_bytes(), key
        assert b"2024-04-26" in data, key
    if fmt == "json":
        doc = json.loads(a["out"].read_text(encoding="utf-8"))
        assert doc["as_of"] == "2024-04-26" and len(doc["decisions"]) == len(CASES)
        assert all(r["as_of"] == "2024-04-26" for r in doc["decisions"])


def test_graph_files_read_back_with_networkx(tmp_path, links):
    p = _all_outputs(tmp_path, links, "g")
    decisions = {
        (r["source"], r["recipient"]): r for r in csv.DictReader(p["out"].open(encoding="utf-8"))
    }
    g = nx.read_graphml(p["graphml"])
    assert g.is_directed() and g.graph["as_of"] == "2024-04-26"
    names = {n: g.nodes[n]["name"] for n in g.nodes}
    got = {(names[s], names[t]): attrs for s, t, attrs in g.edges(data=True)}
    assert set(got) == set(decisions)
    for key, attrs in got.items():
        assert attrs["decision"] == decisions[key]["decision"]
    node = next(n for n in g.nodes if names[n] == "Kenosha WI PD")
    assert (g.nodes[node]["state"], g.nodes[node]["type"]) == ("WI", "local")
    h = nx.node_link_graph(json.loads(p["nodelink"].read_text(encoding="utf-8")), edges="links")
    assert h.is_directed() and set(h.edges) == set(decisions)
    assert h.edges["Naperville IL PD", "Kenosha WI PD"]["rule"] == "il-2-130-declaration"
    assert h.nodes["MOCIC"]["type"] == "multi-state"


def test_graphml_escapes_markup(tmp_path):
    p = _write_links(tmp_path / "l.csv", [("El Cajon CA PD", 'Tom & "Jerry" <CA> PD')])
    out, g = tmp_path / "d.csv", tmp_path / "g.graphml"
    assert _run(p, "--rules", "ca", "--out", out, "--graph", g).exit_code == 0
    assert {d["name"] for _, d in nx.read_graphml(g).nodes(data=True)} == {
        "El Cajon CA PD",
        'Tom & "Jerry" <CA> PD',
    }


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def flock_reviewed():
    return audit_sharing(FLOCK_LINKS, ["ca", "il"], agencies=FLOCK_TABLE, as_of="2024-04-26")


def test_flock_file_is_the_shared_snapshot(flock_reviewed):
    # SOURCE.md: 37,099 links from 224 portals, 73 California sources with 10,950 links
    c = flock_reviewed.counts
    assert c["rows"] == 37_099
    assert len({lk.source.name for lk in flock_reviewed.links if lk.source.state == "CA"}) == 73
    assert flock_reviewed.summary()["by_source_state"]["CA"]["links"] == 10_950


def test_el_cajon_figure(flock_reviewed):
    """Issue #11: 95 out-of-state agencies in 32 states and one multi-state centre."""
    (ec,) = [d for d in flock_reviewed.summary()["by_source"] if d["source"] == "El Cajon CA PD"]
    assert ec["out_of_state"] == 95
    assert ec["n_out_of_state_states"] == 32 and sum(ec["out_of_state_states"].values()) == 95
    assert ec["multi_state"] == 1 and ec["federal"] == 0 and ec["unknown_jurisdiction"] == 0
    # every one of them conflicts with SB 34
    assert ec["conflict"] == 96
    assert ec["links"] == ec["allowed"] + ec["conflict"] + ec["review"]


def test_el_cajon_from_names_alone():
    """Without the reviewed table, the four recipients whose names carry no state stay unknown.

    Niagara Frontier Transit Authority (Buffalo, NY) is the one of them the issue's 95
    counts; the other three are Californian.
    """
    audit = audit_sharing(FLOCK_LINKS, ["ca"], source_states=["CA"], as_of="2024-04-26")
    ec = [lk for lk in audit.links if lk.source.name == "El Cajon CA PD"]
    unknown = {lk.recipient.name for lk in ec if lk.recipient.state is None}
    assert unknown == {
        "Butte County SO",
        "NCRIC",
        "Niagara Frontier Transit Authority (NFTA) PD",
        "Yuba County Sheriffs Office",
    }
    assert all(lk.decision.decision == "review" for lk in ec if lk.recipient.name in unknown)
    out_of_state = [
        lk
        for lk in ec
        if lk.recipient.state not in (None, "CA") and lk.recipient.type != "multi-state"
    ]
    assert len(out_of_state) + 1 == 95
