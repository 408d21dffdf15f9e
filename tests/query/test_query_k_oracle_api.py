"""Attacks on the aggregate tier's k threshold through the partner API.

`card_transactions` (k = 10) is published twice: version 1 as the catalog fixture writes it
(channels pos with 12 buyers, online with 10, mobile with 3) and version 2 identical except for
its groups below k (mobile has one buyer who spends 390, and a channel atm has two buyers). A
partner who can tell the two versions apart by any answer, error or kind of error has learned
something about a group the threshold hides. Every attack below runs against both versions and
must get byte-identical answers; each raising expression is first shown to raise in plain DuckDB,
so no attack is vacuous.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pyarrow as pa
import pytest
from catalog_support import approved, auth, bearer_token, card_transactions_table, publish_table
from django.test import Client

from audit.models import AuditEvent
from datasets.spec import Mode

K = 10
SUB_K_GROUP = "channel = 'mobile'"  # 3 buyers in version 1, 1 in version 2
BELOW_K = "count(DISTINCT buyer) < 10"

# Expressions that raise in DuckDB when {cond} holds and are true otherwise: one per class of failure.
RAISERS = {
    "cast": "CAST(CASE WHEN {cond} THEN 'boom' ELSE '1' END AS INTEGER) = 1",
    "cast_of_values": "CAST(CASE WHEN {cond} THEN concat('v=', {value}) ELSE '1' END AS INTEGER) = 1",
    "overflow": "abs(CAST(CASE WHEN {cond} THEN 2147483647 ELSE 0 END AS INTEGER) + CAST(1 AS INTEGER)) > 0",
    "integer_division": "1 // CASE WHEN {cond} THEN 0 ELSE 1 END = 1",
    "modulo": "5 % CASE WHEN {cond} THEN 0 ELSE 1 END = 0",
    "chr": "chr(CASE WHEN {cond} THEN -1 ELSE 65 END) = 'A'",
    "make_date": "make_date(2024, CASE WHEN {cond} THEN 13 ELSE 1 END, 1) IS NOT NULL",
    "json": "json_extract(CASE WHEN {cond} THEN '{{' ELSE '{{}}' END, '$.a') IS NULL",
    "regexp": "regexp_matches('a', CASE WHEN {cond} THEN '(' ELSE 'a' END)",
    "factorial": "factorial(CASE WHEN {cond} THEN 100 ELSE 1 END) = 1",
    "strptime": "strptime(CASE WHEN {cond} THEN 'x' ELSE '2024' END, '%Y') IS NOT NULL",
    "interval": "date_add(DATE '2024-01-01', to_years(CASE WHEN {cond} THEN 2000000000 ELSE 1 END)) IS NOT NULL",
}
# Expressions whose size or time explodes when {cond} holds.
EXPLOSIVE = {
    "repeat": "length(repeat('x', CASE WHEN {cond} THEN 2000000000 ELSE 1 END)) > 0",
    "lpad": "length(lpad('x', CASE WHEN {cond} THEN 2000000000 ELSE 1 END, 'y')) > 0",
    "list_resize": "len(list_resize([1], CASE WHEN {cond} THEN 2000000000 ELSE 1 END)) > 0",
}


def group_level(template: str) -> str:
    return template.format(cond=BELOW_K, value="sum(amount)")


def row_level(template: str) -> str:
    return template.format(cond=SUB_K_GROUP, value="province || channel")


# Where a partner expression can stand in an aggregate query, and what it is evaluated on there.
GROUP_CLAUSES = {
    "having": "SELECT channel, count(*) AS n FROM card_transactions GROUP BY channel HAVING {x} ORDER BY channel",
    "select": "SELECT channel, {x} AS x FROM card_transactions GROUP BY channel ORDER BY channel",
    "order_by": "SELECT channel, count(*) AS n FROM card_transactions GROUP BY channel ORDER BY {x}, channel",
}
ROW_CLAUSES = {
    "where": "SELECT channel, count(*) AS n FROM card_transactions WHERE {x} GROUP BY channel ORDER BY channel",
    "group_by": "SELECT channel, count(*) AS n FROM card_transactions GROUP BY channel, {x} ORDER BY channel",
}


def second_version_table() -> pa.Table:
    """Version 1 with its groups below k changed: only what the threshold hides differs."""
    table = card_transactions_table()
    keep = [channel != "mobile" for channel in table.column("channel").to_pylist()]
    kept = table.filter(pa.array(keep)).to_pylist()
    extra = [("mobile", "lonely-buyer", 390.0), ("atm", "atm-buyer-1", 10.0), ("atm", "atm-buyer-2", 20.0)]
    template = kept[0]
    for channel, buyer, amount in extra:
        kept.append({**template, "channel": channel, "buyer": buyer, "amount": amount, "month": dt.date(2025, 1, 1)})
    return pa.Table.from_pylist(kept, schema=table.schema)


@pytest.fixture
def versions(catalog, settings):
    publish_table(catalog.cards, second_version_table(), settings.STORE_URL)
    return (1, 2)


@pytest.fixture
def token(fund, catalog, plan, versions):
    plan.queries_per_day = plan.rows_returned_per_day = 10**6
    plan.save()
    approved(fund, catalog.cards, plan, [Mode.QUERY])
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    return bearer_token(fund)


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def answer(client, token, sql: str, version: int) -> tuple[int, object]:
    """What the partner learns from one query: the status and the body (rows, or the error's code and message)."""
    response = client.post(
        "/api/v1/query",
        {"sql": sql, "versions": {"card_transactions": version}},
        content_type="application/json",
        **auth(token),
    )
    body = json.loads(b"".join(response.streaming_content) if response.streaming else response.content)
    if response.status_code == 200:
        return 200, (body["columns"], body["rows"])
    return response.status_code, (body["error"]["code"], body["error"]["message"])


def answers_for_both_versions(client, token, sql: str) -> tuple[int, object]:
    first, second = (answer(client, token, sql, version) for version in (1, 2))
    assert first == second, f"the answer depends on a group below k:\n{sql}\nv1: {first}\nv2: {second}"
    return first


def raw(sql: str):
    """Plain DuckDB on a table like card_transactions, to show an expression really raises."""
    connection = duckdb.connect()
    connection.register("card_transactions", card_transactions_table())
    return connection.sql(sql).fetchall()


@pytest.mark.parametrize("name", sorted(RAISERS))
def test_each_raiser_really_raises_in_plain_duckdb(name):
    with pytest.raises(duckdb.Error):
        raw(f"SELECT channel FROM card_transactions GROUP BY channel HAVING {group_level(RAISERS[name])}")
    with pytest.raises(duckdb.Error):
        raw(f"SELECT count(*) FROM card_transactions WHERE {row_level(RAISERS[name])}")
    assert raw(f"SELECT count(*) FROM card_transactions WHERE {row_level(RAISERS[name])} OR true")


# -- three concrete oracles: a HAVING cast, a yes/no binary search, a WHERE echo -----------------


def test_a_having_cast_does_not_reveal_a_one_buyer_group(client, token):
    sql = (
        "SELECT channel, count(*) AS n FROM card_transactions "
        "GROUP BY month, province, age_band, gender, category, csi_industry, channel "
        "HAVING CAST(CASE WHEN count(DISTINCT buyer) = 1 THEN concat_ws('|', month, province, age_band, gender, "
        "category, csi_industry, channel, sum(amount), count(*)) ELSE '1' END AS INTEGER) = 1"
    )
    status, (columns, rows) = answers_for_both_versions(client, token, sql)
    assert status == 200, rows
    assert sorted(row[0] for row in rows) == ["online", "online", "pos", "pos"]  # two months each
    assert "390" not in str(rows) and "mobile" not in str(rows)


def test_a_yes_no_oracle_answers_the_same_whether_or_not_a_small_group_exists(client, token):
    probe = (
        "SELECT count(*) AS n FROM card_transactions GROUP BY channel "
        "HAVING CAST(CASE WHEN count(DISTINCT buyer) = 1 AND sum(amount) > {bound} THEN 'x' ELSE '1' END AS INT) = 1"
    )
    # A binary search over one buyer's spending, one bound per query: every step answers alike.
    outcomes = [answers_for_both_versions(client, token, probe.format(bound=bound)) for bound in (0, 100, 389, 391)]
    assert all(outcome == outcomes[0] for outcome in outcomes) and outcomes[0][0] == 200


def test_a_where_echo_shows_no_row_values(client, token):
    sql = (
        "SELECT count(*) AS n FROM card_transactions "
        "WHERE CAST(concat('v=', province, '|', channel, '|', category) AS INT) = 1"
    )
    status, (columns, rows) = answers_for_both_versions(client, token, sql)
    assert status == 200, rows
    assert rows == []  # every row's predicate failed, so no row counted


# -- the general classes ------------------------------------------------------------------------


@pytest.mark.parametrize("clause", sorted(GROUP_CLAUSES))
@pytest.mark.parametrize("name", sorted(RAISERS))
def test_a_raising_expression_over_groups_never_sees_a_group_below_k(client, token, clause, name):
    status, body = answers_for_both_versions(client, token, GROUP_CLAUSES[clause].format(x=group_level(RAISERS[name])))
    assert status == 200, body  # released groups never make it raise
    columns, rows = body
    assert sorted(row[0] for row in rows) == ["online", "pos"]


@pytest.mark.parametrize("clause", sorted(ROW_CLAUSES))
@pytest.mark.parametrize("name", sorted(RAISERS))
def test_a_raising_expression_over_rows_counts_as_null_for_that_row(client, token, clause, name):
    status, body = answers_for_both_versions(client, token, ROW_CLAUSES[clause].format(x=row_level(RAISERS[name])))
    assert status == 200, body
    columns, rows = body
    assert [row[0] for row in rows] == ["online", "pos"]
    assert [row[1] for row in rows] == [20, 24]


@pytest.mark.parametrize("clause", sorted(GROUP_CLAUSES))
@pytest.mark.parametrize("name", sorted(EXPLOSIVE))
def test_a_size_explosive_expression_over_groups_never_runs_on_a_group_below_k(client, token, clause, name):
    status, body = answers_for_both_versions(
        client, token, GROUP_CLAUSES[clause].format(x=group_level(EXPLOSIVE[name]))
    )
    assert status == 200, body


@pytest.mark.parametrize("clause", sorted(ROW_CLAUSES))
@pytest.mark.parametrize("name", sorted(EXPLOSIVE))
def test_a_size_explosive_function_is_refused_where_it_would_run_on_every_row(client, token, clause, name):
    status, (code, message) = answers_for_both_versions(
        client, token, ROW_CLAUSES[clause].format(x=row_level(EXPLOSIVE[name]))
    )
    assert (status, code) == (400, "function_not_allowed")
    assert "WHERE" in message or "GROUP BY" in message


def test_a_group_by_alias_of_an_explosive_select_item_is_refused_too(client, token):
    sql = f"SELECT {row_level(EXPLOSIVE['repeat'])} AS big, count(*) AS n FROM card_transactions GROUP BY big"
    status, (code, _) = answers_for_both_versions(client, token, sql)
    assert (status, code) == (400, "function_not_allowed")


def test_a_join_comparing_different_types_is_refused_before_any_row_is_cast(client, token):
    sql = (
        "SELECT c.channel, count(*) AS n FROM card_transactions AS c "
        "JOIN industry_prosperity_monthly AS i ON c.month = i.csi_industry GROUP BY c.channel"
    )
    status, (code, message) = answers_for_both_versions(client, token, sql)
    assert (status, code) == (400, "join_key_type_mismatch") and "DATE" in message and "VARCHAR" in message


def test_a_join_on_keys_of_one_type_still_answers(client, token):
    sql = (
        "SELECT c.channel, count(*) AS n FROM card_transactions AS c "
        "JOIN industry_prosperity_monthly AS i ON c.month = i.month AND c.csi_industry = i.csi_industry "
        "GROUP BY c.channel ORDER BY c.channel"
    )
    status, (columns, rows) = answers_for_both_versions(client, token, sql)
    assert status == 200 and rows == [["online", 20], ["pos", 24]]


def test_refusals_of_the_aggregate_tier_are_audited(client, token):
    answer(client, token, ROW_CLAUSES["where"].format(x=row_level(EXPLOSIVE["repeat"])), 1)
    refused = AuditEvent.objects.filter(action="query.run").order_by("-seq").first()
    assert refused is not None and refused.outcome == "denied" and refused.details["code"] == "function_not_allowed"
