"""Aggregate-tier rules on `cards` (k = 3): the threshold holds, and every way around it is refused.

The groups of `cards` (see conftest): big (5 buyers), edge (exactly 3), small (2 buyers, one of them
padded with 50 rows), lonely (1 buyer). Only big and edge may ever appear.
"""

from __future__ import annotations

import pytest
from query_support import K

from datasets.query.errors import Code, QueryRejected
from datasets.query.limits import Limits

C = Code


def provinces(rows) -> set[str]:
    return {row[0] for row in rows}


# -- the threshold ------------------------------------------------------------------------------


def test_groups_below_k_distinct_buyers_are_dropped(run):
    columns, rows = run("SELECT province, count(*) AS n, sum(amount) AS total FROM cards GROUP BY province")
    assert columns == ["province", "n", "total"]  # nothing of the gateway's own shows
    assert dict((p, n) for p, n, _ in rows) == {"big": 10, "edge": 3}


def test_padding_a_small_group_with_rows_of_one_buyer_does_not_reach_k(run):
    # 'small' has 51 rows but only 2 buyers: rows are not people.
    _, rows = run("SELECT province, count(*) FROM cards WHERE province = 'small' GROUP BY province")
    assert rows == []


def test_a_join_that_fans_each_buyer_out_does_not_reach_k(run):
    # Every category appears 10 times in `categories`: 'small' becomes 510 rows, still 2 buyers.
    _, rows = run(
        "SELECT c.province, count(*) AS n FROM cards c JOIN categories k ON c.category = k.category GROUP BY c.province"
    )
    assert dict(rows) == {"big": 100, "edge": 30}


def test_a_self_join_on_a_declared_key_counts_buyers_on_both_sides(run):
    _, rows = run(
        "SELECT a.province, count(*) FROM cards a JOIN cards b ON a.category = b.category "
        "WHERE b.province = 'lonely' GROUP BY a.province"
    )
    # Each row of a has >= 3 buyers, but the b side is one buyer: no group passes.
    assert rows == []


def test_an_ungrouped_aggregate_below_k_returns_no_row_at_all(run):
    assert run("SELECT count(*), sum(amount) FROM cards WHERE province = 'lonely'")[1] == []
    assert run("SELECT count(*) FROM cards WHERE province = 'edge'")[1] == [(3,)]


def test_having_cannot_undo_the_threshold(run):
    for having in ("count(*) > 0 OR true", "count(*) < 100", "count(DISTINCT buyer) < 3", "NOT (sum(amount) > 1e9)"):
        _, rows = run(f"SELECT province, count(*) FROM cards GROUP BY province HAVING {having}")
        assert provinces(rows) <= {"big", "edge"}, having
    assert run("SELECT province FROM cards GROUP BY province HAVING count(DISTINCT buyer) < 3")[1] == []


def test_a_fully_suppressed_result_says_nothing_about_what_was_dropped(gateway, bindings):
    from query_support import FUND

    from datasets.query import formats

    result = gateway.run(
        "SELECT province, count(*) FROM cards WHERE province IN ('small', 'lonely') GROUP BY 1",
        bindings,
        FUND.key,
        Limits(),
    )
    body = b"".join(formats.stream(result, "json"))
    assert (
        body
        == b'{"columns":[{"name":"province","type":"VARCHAR"},{"name":"count_star()","type":"BIGINT"}],"rows":[\n\n],"truncated":false}\n'
    )


def test_the_plan_counts_entities_before_the_partner_expressions_run(gateway, bindings):
    checked = gateway.check(
        "SELECT province, sum(amount) FROM cards AS c GROUP BY province HAVING sum(amount) > 1", bindings
    )
    assert checked.aggregate
    prepare = [statement.replace('"', "") for statement in checked.prepare]
    assert "sum(amount) > 1" not in " ".join(prepare)  # the partner's HAVING is not evaluated on unreleased groups
    assert any(f"count(DISTINCT c.buyer) >= {K}" in statement for statement in prepare)
    assert "__vitamin_released" in checked.sql and "(__vitamin_a0 > 1)" in checked.sql


# -- what partners may write ----------------------------------------------------------------------

ALLOWED = [
    ("SELECT province, count(DISTINCT buyer) AS buyers FROM cards GROUP BY province", {("big", 5), ("edge", 3)}),
    ("SELECT province AS p, round(avg(amount), 1) FROM cards GROUP BY p ORDER BY p", {("big", 10.0), ("edge", 20.0)}),
    ("SELECT province, count(*) FROM cards GROUP BY 1 ORDER BY 2 DESC LIMIT 1", {("big", 10)}),
    ("SELECT province, month, count(amount) FROM cards GROUP BY ALL", {("big", "2024-01", 10), ("edge", "2024-01", 3)}),
    ("SELECT upper(province) AS p FROM cards WHERE month LIKE '2024%' GROUP BY upper(province)", {("BIG",), ("EDGE",)}),
    (
        "SELECT k.sector, sum(c.amount) FROM cards c JOIN categories k USING (category) GROUP BY k.sector",
        {("consumer", 12100.0)},
    ),  # fanned out 10x: a sum is the partner's to interpret
]


@pytest.mark.parametrize(("sql", "expected"), ALLOWED)
def test_ordinary_aggregate_queries_are_answered(run, sql, expected):
    assert set(run(sql)[1]) == expected


# -- ways around the rules, each refused with the rule's code -------------------------------------

CIRCUMVENTIONS = [
    # Filters smuggled into aggregates.
    (
        "SELECT province, sum(CASE WHEN buyer = 'b-pad' THEN amount END) FROM cards GROUP BY 1",
        C.AGGREGATE_ARGUMENT_NOT_ALLOWED,
    ),
    (
        "SELECT province, count(*) FILTER (WHERE buyer = 'b-pad') FROM cards GROUP BY 1",
        C.AGGREGATE_ARGUMENT_NOT_ALLOWED,
    ),
    ("SELECT province, sum(amount * (buyer = 'b-pad')::INT) FROM cards GROUP BY 1", C.AGGREGATE_ARGUMENT_NOT_ALLOWED),
    ("SELECT province, count(1) FROM cards GROUP BY 1", C.AGGREGATE_ARGUMENT_NOT_ALLOWED),
    ("SELECT province, sum(DISTINCT amount) FROM cards GROUP BY 1", C.AGGREGATE_ARGUMENT_NOT_ALLOWED),
    ("SELECT province, sum(province) FROM cards GROUP BY 1", C.AGGREGATE_ARGUMENT_NOT_ALLOWED),
    (
        "SELECT province, string_agg(amount::VARCHAR, ',' ORDER BY amount) FROM cards GROUP BY 1",
        C.AGGREGATE_FUNCTION_NOT_ALLOWED,
    ),
    ("SELECT province, max(amount) FROM cards GROUP BY 1", C.AGGREGATE_FUNCTION_NOT_ALLOWED),
    ("SELECT province, list(amount) FROM cards GROUP BY 1", C.AGGREGATE_FUNCTION_NOT_ALLOWED),
    ("SELECT province, json_group_array(buyer) FROM cards GROUP BY 1", C.AGGREGATE_FUNCTION_NOT_ALLOWED),
    ("SELECT province, count(c.*) FROM cards c GROUP BY 1", C.AGGREGATE_ARGUMENT_NOT_ALLOWED),
    ("SELECT province, count(DISTINCT buyer, month) FROM cards GROUP BY 1", C.AGGREGATE_ARGUMENT_NOT_ALLOWED),
    # The entity column disguised by an alias, an expression, a qualifier, a case change or a rename.
    ("SELECT buyer, count(*) FROM cards GROUP BY buyer", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT buyer AS province, count(*) FROM cards GROUP BY 1", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT upper(buyer), count(*) FROM cards GROUP BY 1", C.ENTITY_COLUMN_NOT_ALLOWED),
    ('SELECT c."BUYER", count(*) FROM cards c GROUP BY 1', C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT count(*) FROM cards GROUP BY substr(buyer, 1, 3)", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards WHERE buyer = 'b-pad' GROUP BY 1", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards GROUP BY 1 ORDER BY buyer", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards GROUP BY 1 HAVING buyer = 'b-pad'", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT province, count(DISTINCT phone) FROM cards GROUP BY 1", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT phone, count(*) FROM cards GROUP BY 1", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT province, count(buyer) FROM cards GROUP BY 1", C.ENTITY_COLUMN_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards AS c(buyer, province) GROUP BY province", C.COLUMN_ALIAS_NOT_ALLOWED),
    ("SELECT #4, count(*) FROM cards GROUP BY 1", C.UNSUPPORTED_SYNTAX),
    ("SELECT * FROM cards", C.COLUMN_NOT_A_DIMENSION),
    ("SELECT COLUMNS('b.*') FROM cards", C.COLUMN_NOT_A_DIMENSION),
    ("SELECT cards.buyer.x, count(*) FROM cards GROUP BY 1", C.UNKNOWN_COLUMN),
    ("SELECT nope, count(*) FROM cards GROUP BY 1", C.UNKNOWN_COLUMN),
    # Columns outside aggregates must be dimensions.
    ("SELECT amount, count(*) FROM cards GROUP BY amount", C.COLUMN_NOT_A_DIMENSION),
    ("SELECT province, count(*) FROM cards WHERE amount > 500 GROUP BY 1", C.COLUMN_NOT_A_DIMENSION),
    # Row-level reads.
    ("SELECT province FROM cards", C.AGGREGATE_QUERY_REQUIRED),
    ("SELECT DISTINCT province, month FROM cards", C.AGGREGATE_QUERY_REQUIRED),
    ("SELECT province, count(*) FROM cards WHERE count(*) > 1 GROUP BY 1", C.AGGREGATE_FUNCTION_NOT_ALLOWED),
    # Structure that would hide rows from the check.
    ("SELECT count(*) FROM (SELECT * FROM cards) t", C.SUBQUERY_NOT_ALLOWED),
    ("WITH t AS (SELECT * FROM cards) SELECT count(*) FROM t", C.SUBQUERY_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards WHERE province IN (SELECT 'small') GROUP BY 1", C.SUBQUERY_NOT_ALLOWED),
    ("SELECT count(*) FROM cards UNION ALL SELECT count(*) FROM cards", C.SUBQUERY_NOT_ALLOWED),
    ("SELECT city, (SELECT count(*) FROM cards) FROM people", C.SUBQUERY_NOT_ALLOWED),
    ("SELECT province, sum(count(*)) OVER () FROM cards GROUP BY province", C.WINDOW_FUNCTION_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards GROUP BY ROLLUP (province)", C.GROUPING_SETS_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards GROUP BY 1 USING SAMPLE 50%", C.SAMPLE_NOT_ALLOWED),
    ("SELECT province, count(*) FROM cards TABLESAMPLE 50% GROUP BY 1", C.SAMPLE_NOT_ALLOWED),
    # Joins only on declared keys (category).
    (
        "SELECT c.province, count(*) FROM cards c JOIN categories k ON c.province = k.category GROUP BY 1",
        C.JOIN_NOT_ON_DECLARED_KEYS,
    ),
    ("SELECT c.province, count(*) FROM cards c, categories k GROUP BY 1", C.JOIN_NOT_ON_DECLARED_KEYS),
    ("SELECT c.province, count(*) FROM cards c NATURAL JOIN categories GROUP BY 1", C.JOIN_NOT_ON_DECLARED_KEYS),
    (
        "SELECT c.province, count(*) FROM cards c JOIN categories k ON c.category = k.category AND c.province = 'small' GROUP BY 1",
        C.JOIN_NOT_ON_DECLARED_KEYS,
    ),
    (
        "SELECT a.province, count(*) FROM cards a JOIN cards b ON a.buyer = b.buyer GROUP BY 1",
        C.JOIN_NOT_ON_DECLARED_KEYS,
    ),
]


@pytest.mark.parametrize(("sql", "code"), CIRCUMVENTIONS)
def test_circumvention_is_refused_naming_the_rule(gateway, bindings, sql, code):
    with pytest.raises(QueryRejected) as refused:
        gateway.check(sql, bindings)
    assert refused.value.code == code, refused.value.message
