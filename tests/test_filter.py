"""The pre-sharing filter, recipient rules, manifest and verify (issue #4)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.cli import cli
from geofence.errors import RuleError, SharingRefused
from geofence.hook import SharingFilter
from geofence.jurisdictions import Recipient, check_recipient, load_rules

LAT0, LON0 = 37.80, -122.27


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    d = tmp_path_factory.mktemp("sites")
    p = d / "sites.geojson"
    sq = shapely.box(LON0 - 0.0005, LAT0 - 0.0005, LON0 + 0.0005, LAT0 + 0.0005)
    p.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"site_id": "sch", "name": "School", "category": "school"},
                        "geometry": shapely.geometry.mapping(sq),
                    }
                ],
            }
        )
    )
    return p


def _log(tmp_path, n=400, delim=",", crlf=False, seed=1):
    """A log with quoted fields holding delimiters, quotes and newlines, and bad rows."""
    rng = np.random.default_rng(seed)
    term = "\r\n" if crlf else "\n"
    rows = [delim.join(["id", "plate", "timestamp", "lat", "lon", "note"])]
    for i in range(n):
        lat = LAT0 + rng.uniform(-0.006, 0.006)
        lon = LON0 + rng.uniform(-0.006, 0.006)
        note = ["plain", f'"has {delim} delim"', '"say ""hi"""', '"two\nlines"'][i % 4]
        lat_s = "NA" if i % 50 == 7 else f"{lat:.6f}"
        rows.append(
            delim.join(
                [f"{i}", f"P{i % 13}", f"2025-02-0{1 + i % 9}T10:00:00Z", lat_s, f"{lon:.6f}", note]
            )
        )
    p = tmp_path / "log.csv"
    p.write_bytes((term.join(rows) + term).encode())
    return p


def _filter(log, sites, out, *extra, **kw):
    args = [
        "filter",
        str(log),
        "--layers",
        str(sites),
        "--recipient",
        "Berkeley PD",
        "--recipient-type",
        "ca-public",
        "--purpose",
        "robbery 25-1",
        "--user",
        "jdoe",
        "--sender",
        "Oakland PD",
        "--sender-state",
        "CA",
        "-o",
        str(out),
        "--withheld",
        str(out) + ".withheld",
        "--manifest",
        str(out) + ".manifest.json",
        *extra,
    ]
    return CliRunner().invoke(cli, args, **kw)


def _records(path_bytes: bytes) -> list[bytes]:
    """Split CSV bytes into records, respecting quotes (independent of geofence)."""
    out, cur, q = [], bytearray(), False
    for b in path_bytes:
        cur.append(b)
        if b == 0x22:
            q = not q
        elif b == 0x0A and not q:
            out.append(bytes(cur))
            cur = bytearray()
    if cur:
        out.append(bytes(cur))
    return out


@pytest.mark.parametrize("delim,crlf", [(",", False), ("|", True), (";", False), ("\t", True)])
def test_shared_rows_are_input_bytes_and_nothing_is_lost(tmp_path, sites, delim, crlf):
    log = _log(tmp_path, delim=delim, crlf=crlf)
    out = tmp_path / "shared.csv"
    res = _filter(log, sites, out)
    assert res.exit_code == 0, res.output
    src = _records(log.read_bytes())
    shared = _records(out.read_bytes())
    withheld = _records((tmp_path / "shared.csv.withheld").read_bytes())
    assert shared[0] == src[0]  # the header
    body = src[1:]
    # shared rows are input rows, verbatim and in order
    it = iter(body)
    assert all(any(r == s for s in it) for r in shared[1:])
    man = json.loads((tmp_path / "shared.csv.manifest.json").read_text())
    c = man["counts"]
    assert c["reads_in"] == len(body) == c["reads_shared"] + c["reads_withheld"]
    assert len(shared) - 1 == c["reads_shared"] and len(withheld) - 1 == c["reads_withheld"]
    assert c["withheld_by_reason"]["unevaluable:missing_position"] == 8
    assert c["withheld_by_reason"]["near_sensitive_site"] > 0
    assert man["decision"]["decision"] == "allow"
    assert "P1" not in json.dumps(man)  # no plates in the manifest


def test_verify_accepts_then_catches_tampering(tmp_path, sites):
    log = _log(tmp_path)
    out = tmp_path / "shared.csv"
    assert _filter(log, sites, out).exit_code == 0
    manifest = str(out) + ".manifest.json"
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", str(out), "--manifest", manifest, "--layers", str(sites)])
    assert ok.exit_code == 0, ok.output
    # put a withheld (flagged) row back in
    withheld = _records((tmp_path / "shared.csv.withheld").read_bytes())
    near = next(r for r in withheld if b"near_sensitive_site" in r)
    row = near.rsplit(b",", 4)[0] + b"\n"
    out.write_bytes(out.read_bytes() + row)
    bad = runner.invoke(cli, ["verify", str(out), "--manifest", manifest, "--layers", str(sites)])
    assert bad.exit_code == 5
    assert "SHA-256" in bad.stderr and "lies" in bad.stderr and "rows" in bad.stderr


@pytest.mark.parametrize(
    "rtype,state,purpose,allowed",
    [
        ("ca-public", "CA", "robbery", True),
        ("state-public", "CA", "robbery", True),
        ("federal", None, "robbery", False),
        ("out-of-state", "AZ", "robbery", False),
        ("private", "CA", "robbery", False),
        ("ca-public", "NV", "robbery", False),  # claims ca-public, lives in Nevada
        ("ca-public", "CA", "assist immigration enforcement", False),
        ("ca-public", "CA", "ICE detainer", False),
    ],
)
def test_california_rules(rtype, state, purpose, allowed):
    d = check_recipient(Recipient("x", rtype, state, purpose), "CA")
    assert d.allowed is allowed
    if not allowed:
        assert d.rule.citation.startswith(
            ("Cal. Civ. Code §1798.90.55(b)", "Cal. Gov. Code §7284.6")
        )


def test_illinois_needs_a_declaration_and_refuses_health_purposes():
    assert not check_recipient(Recipient("x", "out-of-state", "WI", "burglary"), "IL").allowed
    assert check_recipient(
        Recipient("x", "out-of-state", "WI", "burglary", declaration="DECL-7"), "IL"
    ).allowed
    assert not check_recipient(
        Recipient("x", "state-public", "IL", "abortion investigation"), "IL"
    ).allowed


def test_refused_share_writes_header_only_manifest_and_exit_4(tmp_path, sites):
    log = _log(tmp_path)
    out = tmp_path / "shared.csv"
    args = [
        "filter",
        str(log),
        "--layers",
        str(sites),
        "--recipient",
        "ICE ERO",
        "--recipient-type",
        "federal",
        "--purpose",
        "x",
        "--user",
        "jdoe",
        "--sender-state",
        "CA",
        "-o",
        str(out),
        "--withheld",
        str(tmp_path / "w.csv"),
        "--manifest",
        str(tmp_path / "m.json"),
        "--audit-log",
        str(tmp_path / "audit.jsonl"),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 4
    assert "1798.90.55(b)" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == _records(log.read_bytes())[0]
    man = json.loads((tmp_path / "m.json").read_text())
    assert man["decision"]["decision"] == "refuse" and man["counts"]["reads_shared"] == 0
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["decision"] == "refuse"
    assert {"accessed_at", "query_elements", "username", "user_org", "purpose"} <= set(audit[-1])


def test_pipe_mode(tmp_path, sites):
    log = _log(tmp_path)
    res = CliRunner().invoke(
        cli,
        [
            "filter",
            "-",
            "--layers",
            str(sites),
            "--recipient",
            "B",
            "--recipient-type",
            "ca-public",
            "--purpose",
            "p",
            "--user",
            "u",
            "--sender-state",
            "CA",
            "-o",
            "-",
            "--withheld",
            str(tmp_path / "w.csv"),
            "--manifest",
            str(tmp_path / "m.json"),
        ],
        input=log.read_bytes(),
    )
    assert res.exit_code == 0, res.output
    ref = tmp_path / "ref.csv"
    assert _filter(log, sites, ref).exit_code == 0
    assert res.stdout_bytes == ref.read_bytes()


def test_max_age_withholds_old_and_untimed(tmp_path, sites):
    log = _log(tmp_path)
    out = tmp_path / "s.csv"
    res = _filter(log, sites, out, "--max-age-days", "3", "--as-of", "2025-02-08T00:00:00Z")
    assert res.exit_code == 0
    man = json.loads((tmp_path / "s.csv.manifest.json").read_text())
    assert man["counts"]["withheld_by_reason"]["older_than_max_age"] > 0
    for rec in _records(out.read_bytes())[1:]:
        day = int(rec.split(b",")[2][9:10])
        assert day >= 5


@settings(max_examples=8, deadline=None)
@given(batch=st.integers(min_value=1, max_value=120), seed=st.integers(0, 1000))
def test_python_hook_partitions_input(sites, batch, seed):
    rng = np.random.default_rng(seed)
    n = 150
    df = pd.DataFrame(
        {
            "lat": LAT0 + rng.uniform(-0.004, 0.004, n),
            "lon": LON0 + rng.uniform(-0.004, 0.004, n),
            "plate": [f"P{i}" for i in range(n)],
        }
    )
    df.loc[rng.integers(0, n, 5), "lat"] = np.nan
    f = SharingFilter([str(sites)])
    shared, withheld = f.filter(df)
    assert len(shared) + len(withheld) == n
    assert set(shared.index).isdisjoint(withheld.index) and set(shared.index) | set(
        withheld.index
    ) == set(df.index)
    assert (
        withheld["lat"].isna().sum() == df["lat"].isna().sum()
    )  # fail-closed: unevaluable withheld
    # batches of any size give the same split
    parts = [f.filter(df.iloc[i : i + batch]) for i in range(0, n, batch)]
    assert pd.concat([p[0] for p in parts]).index.tolist() == shared.index.tolist()


def test_refused_recipient_raises_in_the_hook(sites):
    f = SharingFilter(
        [str(sites)], recipient=Recipient("ICE", "federal", None, "x"), sender_state="CA"
    )
    with pytest.raises(SharingRefused, match=r"1798\.90\.55"):
        f.filter(pd.DataFrame({"lat": [1.0], "lon": [1.0]}))


def test_rule_file_with_unknown_type_is_an_error(tmp_path):
    p = tmp_path / "xx.toml"
    p.write_text(
        'state = "XX"\n[[rule]]\nid = "r"\nkind = "allow_only_types"\ntypes = ["county"]\ncitation = "c"\n'
    )
    with pytest.raises(RuleError, match="unknown recipient type 'county'"):
        load_rules(p)
