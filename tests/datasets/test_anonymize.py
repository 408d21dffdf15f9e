"""Keyed pseudonyms (SQL HMAC equals Python's hmac), generalization rules, and k-anonymity suppression."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import tempfile

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.anonymize import (
    PSEUDONYM_HEX_CHARS,
    STAGED_FILE,
    PseudonymKey,
    anonymize,
    install_reference_tables,
    pseudonym_sql,
)
from datasets.generalize import RuleError, parse_rule
from datasets.identifiers import digest, normalize
from datasets.regions import PROVINCES, REGIONS, region_names
from datasets.spec import parse_spec

MASTER = b"master-secret-for-anonymize-tests"


def hkdf_sha256(master: bytes, info: bytes) -> bytes:
    """RFC 5869 written out with the hmac module: an independent check of the key derivation."""
    prk = hmac.new(b"\0" * 32, master, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def sql_pseudonyms(key: PseudonymKey, values: list) -> list:
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT {pseudonym_sql('v')} FROM (SELECT unnest($values) AS v, generate_subscripts($values, 1) AS i) ORDER BY i",
        {**key.sql_parameters(), "values": values},
    ).fetchall()
    return [row[0] for row in rows]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\0")), min_size=1, max_size=20
    ),
    master=st.binary(min_size=16, max_size=64),
    release=st.text(min_size=1, max_size=12),
)
def test_the_sql_hmac_equals_pythons_hmac(values, master, release):
    key = PseudonymKey.derive(master, "card_transactions", release)
    derived = hkdf_sha256(master, f"vitamin/pseudonym/card_transactions/{release}".encode())
    assert key.key == derived
    expected = [hmac.new(derived, v.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS] for v in values]
    assert sql_pseudonyms(key, values) == expected
    assert [key.pseudonym(v) for v in values] == expected


def test_pseudonyms_are_128_bit_hex_and_null_stays_null():
    key = PseudonymKey.derive(MASTER, "credit_profiles", "2025")
    [value, null] = sql_pseudonyms(key, ["110105194912310021", None])
    assert len(value) == 32 and int(value, 16) >= 0
    assert null is None


def test_integers_are_hashed_as_their_text():
    key = PseudonymKey.derive(MASTER, "credit_profiles", "2025")
    assert sql_pseudonyms(key, [1234567890123]) == [key.pseudonym("1234567890123")]


def test_pseudonyms_are_stable_within_a_release_and_differ_across_releases_datasets_and_keys():
    value = "110105194912310021"
    base = PseudonymKey.derive(MASTER, "credit_profiles", "2025").pseudonym(value)
    assert PseudonymKey.derive(MASTER, "credit_profiles", "2025").pseudonym(value) == base
    others = {
        PseudonymKey.derive(MASTER, "credit_profiles", "2026").pseudonym(value),
        PseudonymKey.derive(MASTER, "card_transactions", "2025").pseudonym(value),
        PseudonymKey.derive(b"another-master-secret-entirely", "credit_profiles", "2025").pseudonym(value),
    }
    assert base not in others and len(others) == 3


def test_a_weak_master_key_or_an_empty_release_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PseudonymKey.derive(b"short", "x", "2025")
    with pytest.raises(ValueError, match="release"):
        PseudonymKey.derive(MASTER, "x", "")


def test_the_key_never_appears_in_the_sql_text():
    key = PseudonymKey.derive(MASTER, "x", "2025")
    sql = pseudonym_sql("v")
    assert key.key.hex() not in sql and "$pseudonym_ipad" in sql and "$pseudonym_opad" in sql
    assert "key=" not in repr(key).replace("PseudonymKey()", "")


# --- generalization rules ---------------------------------------------------------


def generalize(
    rule: dict, values: list, arrow_type: pa.DataType, *, extra: dict | None = None, time_zone="Asia/Shanghai"
):
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{time_zone}'")
    install_reference_tables(con)
    table = pa.table({"v": pa.array(values, arrow_type), **(extra or {})})
    con.register("t", table)
    parsed = parse_rule(rule)
    sql = f"SELECT {parsed.sql('p')} FROM (SELECT {parsed.prepare('v')} AS p FROM t)"
    return [row[0] for row in con.execute(sql).fetchall()]


def test_bucket_by_edges_labels_half_open_ranges():
    rule = {"rule": "bucket", "edges": [0, 100, 500]}
    got = generalize(rule, [-5, 0, 99.9, 100, 499, 500, 10_000, None], pa.float64())
    assert got == ["<0", "[0,100)", "[0,100)", "[100,500)", "[100,500)", ">=500", ">=500", None]


def test_bucket_by_width():
    assert generalize({"rule": "bucket", "width": 50}, [0, 49, 50, 149, -1], pa.int64()) == [
        "[0,50)",
        "[0,50)",
        "[50,100)",
        "[100,150)",
        "[-50,0)",
    ]
    assert generalize({"rule": "bucket", "width": 0.5}, [0.2, 1.7], pa.float64()) == ["[0.0,0.5)", "[1.5,2.0)"]


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("year", dt.date(2024, 1, 1)),
        ("quarter", dt.date(2024, 4, 1)),
        ("month", dt.date(2024, 5, 1)),
        ("week", dt.date(2024, 5, 27)),  # ISO weeks start on Monday
        ("day", dt.date(2024, 5, 31)),
    ],
)
def test_truncate_dates(unit, expected):
    assert generalize({"rule": "truncate", "unit": unit}, [dt.date(2024, 5, 31)], pa.date32()) == [expected]


def test_truncate_a_timestamp_in_the_spec_time_zone():
    # 17:30 UTC on 31 January is 01:30 on 1 February in Shanghai.
    instant = dt.datetime(2024, 1, 31, 17, 30, tzinfo=dt.UTC)
    ts_type = pa.timestamp("ms", tz="Asia/Shanghai")
    rule = {"rule": "truncate", "unit": "month"}
    assert generalize(rule, [instant], ts_type) == [dt.date(2024, 2, 1)]
    assert generalize(rule, [instant], ts_type, time_zone="UTC") == [dt.date(2024, 1, 1)]


def test_age_band_counts_whole_years_at_the_reference_date():
    births = [dt.date(1990, 6, 15), dt.date(1990, 6, 16), dt.date(2010, 1, 1), dt.date(2030, 1, 1), None]
    rule = {"rule": "age_band", "width": 10, "reference_date": "2020-06-15"}
    # Born 1990-06-15: 30 on the reference date; born a day later: still 29.
    assert generalize(rule, births, pa.date32()) == ["30-39", "20-29", "10-19", None, None]
    edges = {"rule": "age_band", "edges": [18, 25, 65], "reference_date": dt.date(2020, 6, 15)}
    assert generalize(edges, births[:3], pa.date32()) == ["25-64", "25-64", "<18"]
    assert generalize(edges, [dt.date(1950, 1, 1), dt.date(2001, 6, 15)], pa.date32()) == ["65+", "18-24"]


def test_age_band_at_a_reference_column():
    at = pa.array([dt.date(2020, 6, 14), dt.date(2020, 6, 15)], pa.date32())
    rule = {"rule": "age_band", "width": 5, "reference_column": "at"}
    got = generalize(rule, [dt.date(1990, 6, 15)] * 2, pa.date32(), extra={"at": at})
    assert got == ["25-29", "30-34"]


def test_region_coarsens_cities_and_provinces():
    places = ["杭州市", "杭州", "广东省", "广东", "内蒙古", "北京市", "吉林", "Atlantis", None]
    assert generalize({"rule": "region", "level": "province"}, places, pa.string()) == [
        "浙江省",
        "浙江省",
        "广东省",
        "广东省",
        "内蒙古自治区",
        "北京市",
        "吉林省",
        None,
        None,
    ]
    assert generalize({"rule": "region", "level": "region"}, places, pa.string()) == [
        "华东",
        "华东",
        "华南",
        "华南",
        "华北",
        "华北",
        "东北",
        None,
        None,
    ]


def test_the_region_rule_joins_rows_without_buffering_the_input():
    # Correlated on an expression of the row, DuckDB would first buffer every input row to join back (a delim
    # join, memory growing with the rows of a build); correlated on the prepared column it joins row by row.
    rule = parse_rule({"rule": "region", "level": "province"})
    con = duckdb.connect()
    install_reference_tables(con)
    con.register("t", pa.table({"v": [" 杭州 ", "广东"]}))
    sql = f"SELECT {rule.sql('p')} FROM (SELECT {rule.prepare('v')} AS p FROM t)"
    plan = con.execute(f"EXPLAIN {sql}").fetchall()[0][1]
    assert "CTE" not in plan and "DELIM" not in plan.upper()
    assert [row[0] for row in con.execute(sql).fetchall()] == ["浙江省", "广东省"]


def test_the_31_provinces_map_onto_the_7_regions():
    assert len(PROVINCES) == 31
    assert {region for _, _, region, _ in PROVINCES} == set(REGIONS) and len(REGIONS) == 7
    table = region_names()
    names = table["name"].to_pylist()
    assert len(names) == len(set(names))  # unique: the region rule's scalar subquery needs that
    by_name = dict(zip(names, table["region"].to_pylist(), strict=True))
    assert by_name["新疆维吾尔自治区"] == "西北" and by_name["重庆"] == "西南" and by_name["黑龙江省"] == "东北"
    assert by_name["武汉市"] == "华中" and by_name["深圳"] == "华南"


def test_top_bottom_coding_and_rounding():
    values = [-20.0, 5.26, 12_345.0]
    assert generalize({"rule": "top_bottom", "bottom": 0, "top": 10_000}, values, pa.float64()) == [0, 5.26, 10_000]
    assert generalize({"rule": "top_bottom", "top": 100}, values, pa.float64()) == [-20.0, 5.26, 100]
    assert generalize({"rule": "round", "digits": 1}, values, pa.float64()) == [-20.0, 5.3, 12_345.0]
    assert generalize({"rule": "round", "digits": -2}, values, pa.float64()) == [0.0, 0.0, 12_300.0]
    assert generalize({"rule": "round", "step": 10}, [4.0, 5.0, 1234.0, None], pa.float64()) == [
        0.0,
        10.0,
        1230.0,
        None,
    ]
    assert generalize({"rule": "keep"}, ["F", "M"], pa.string()) == ["F", "M"]


def test_rule_parameters_are_all_reported():
    with pytest.raises(RuleError) as caught:
        parse_rule({"rule": "age_band", "edges": [30, 20], "width": 0, "colour": "red"})
    fields = {field for field, _ in caught.value.problems}
    assert {"edges", "width", "colour", "reference_date"} <= fields


# --- k-anonymity ---------------------------------------------------------------------


def k_spec(k: int, *, entity: bool = True):
    columns = [
        {"name": "zone", "type": "string", "role": "quasi", "description": "z", "generalize": {"rule": "keep"}},
        {"name": "amount", "type": "float64", "role": "measure", "description": "a"},
    ]
    data = {
        "slug": "k_test",
        "title": "k",
        "description": "k",
        "publisher": "p",
        "contact": "c",
        "license": "l",
        "theme": "t",
        "tier": "aggregate" if entity else "lookup",
        "update_frequency": "daily",
        "schedule": "0 3 * * *",
        "source": {"kind": "arrow_test"},
        "columns": columns,
        "privacy": {"k": k, "quasi_identifiers": ["zone"]},
    }
    if entity:
        columns.insert(0, {"name": "person", "role": "entity", "action": "pseudonymize", "description": "p"})
        data["privacy"]["entity"] = "person"
    else:
        columns.insert(
            0,
            {
                "name": "person",
                "role": "identifier",
                "action": "pseudonymize",
                "identifier": "mobile",
                "description": "p",
            },
        )
        data["lookup"] = {"keys": ["person"], "consent_scope": "test"}
        data["sort_by"] = ["person"]
    return parse_spec(data)


def run_anonymize(spec, rows: dict) -> tuple[list[tuple], int]:
    con = duckdb.connect()
    install_reference_tables(con)
    con.register("source", pa.table(rows))
    with tempfile.TemporaryDirectory() as scratch:
        key = PseudonymKey.derive(MASTER, spec.slug, "r1")
        result = anonymize(con, spec, key, "SELECT * FROM source", scratch_dir=scratch)
        return con.execute(f"SELECT * FROM {result.view} ORDER BY ALL").fetchall(), result.rows_in


def test_groups_with_fewer_than_k_distinct_entities_are_suppressed():
    rows = {
        # zone A: 3 people; zone B: one person with 5 transactions; zone NULL: 3 people.
        "person": ["p1", "p2", "p3", "p4", "p4", "p4", "p4", "p4", "p5", "p6", "p7"],
        "zone": ["A", "A", "A", "B", "B", "B", "B", "B", None, None, None],
        "amount": [1.0] * 11,
    }
    published, rows_in = run_anonymize(k_spec(3), rows)
    assert rows_in == 11
    zones = [row[1] for row in published]
    assert zones.count("A") == 3 and zones.count(None) == 3  # NULL is a group of its own, kept when large enough
    assert "B" not in zones  # five rows, but one person: not 3-anonymous


def test_the_rows_wait_for_the_k_decision_in_a_file_not_in_the_database(tmp_path):
    # A table of every row would sit in DuckDB's memory up to its limit; only per-person and per-group tables may.
    people = [f"p{i % 50}" for i in range(5000)]
    con = duckdb.connect()
    install_reference_tables(con)
    con.register("source", pa.table({"person": people, "zone": ["A"] * 5000, "amount": [1.0] * 5000}))
    spec = k_spec(3)
    result = anonymize(
        con, spec, PseudonymKey.derive(MASTER, spec.slug, "r1"), "SELECT * FROM source", scratch_dir=tmp_path
    )
    assert result.rows_in == 5000 and (tmp_path / STAGED_FILE).is_file()
    assert con.execute(f"SELECT count(*) FROM {result.view}").fetchall()[0][0] == 5000
    sizes = con.execute(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE table_name <> 'vitamin_region_names'"
    )
    assert all(rows <= 50 for _, rows in sizes.fetchall())


def test_without_an_entity_k_counts_rows():
    rows = {"person": ["p1", "p1", "p1", "p2"], "zone": ["A", "A", "A", "B"], "amount": [1.0] * 4}
    published, _ = run_anonymize(k_spec(3, entity=False), rows)
    assert [row[1] for row in published] == ["A", "A", "A"]


def test_the_published_view_holds_pseudonyms_not_identifiers():
    ids = ["110105194912310021", "11010519491231002X", "110105194912310021"]
    spec = k_spec(2)
    published, _ = run_anonymize(spec, {"person": ids, "zone": ["A"] * 3, "amount": [1.0, 2.0, 3.0]})
    key = PseudonymKey.derive(MASTER, spec.slug, "r1")
    assert sorted(row[0] for row in published) == sorted(key.pseudonym(value) for value in ids)


def test_a_lookup_key_is_hashed_in_its_row_not_joined_back(tmp_path):
    # A lookup key is unique per row: a table of its pseudonyms would have a row per row, and joining it back
    # would hold a hash table of every row in the COPY that also sorts by the key (at 10M customers and 1 GB the
    # build ran out of memory there). The view hashes each row's key, with the pads read from a one-row table.
    mobiles = [f"13{i:09d}" for i in range(2000)]
    con = duckdb.connect()
    install_reference_tables(con)
    con.register("source", pa.table({"person": mobiles, "zone": ["A", "B"] * 1000, "amount": [1.0] * 2000}))
    spec = k_spec(3, entity=False)
    key = PseudonymKey.derive(MASTER, spec.slug, "r1")
    result = anonymize(con, spec, key, "SELECT * FROM source", scratch_dir=tmp_path)
    sizes = con.execute(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE table_name <> 'vitamin_region_names'"
    )
    assert all(rows <= 2 for _, rows in sizes.fetchall())  # the kept zones and the pads: nothing per key
    plan = con.execute(f"EXPLAIN SELECT * FROM {result.view} ORDER BY person").fetchall()[0][1]
    assert "LEFT" not in plan  # no join back to pseudonyms
    published = [row[0] for row in con.execute(f"SELECT person FROM {result.view}").fetchall()]
    assert sorted(published) == sorted(key.pseudonym(digest(normalize("mobile", m))) for m in mobiles)
    view_sql = con.execute(f"SELECT sql FROM duckdb_views() WHERE view_name = '{result.view}'").fetchone()[0]
    pads = key.sql_parameters().values()
    assert not any(pad.hex() in view_sql.lower() or pad.hex().upper() in view_sql for pad in pads)
    result.drop(con)
    assert con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name <> 'vitamin_region_names'"
    ).fetchone() == (0,)
