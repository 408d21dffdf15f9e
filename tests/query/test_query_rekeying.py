"""Identifying columns reach each partner re-keyed: two institutions' values never join, one's own always do."""

from __future__ import annotations

import duckdb
import pytest
from query_support import BANK, FUND, MASTER_KEY

from datasets.query.limits import Limits
from datasets.query.rekey import derive_partner_key, rekey, rekey_sql

PUBLISHED_CUSTOMERS = {f"cust-{i}" for i in range(20)}
PUBLISHED_PHONES = {f"1380000{i:04d}" for i in range(20)}


def values(run, sql, partner):
    return [row[0] for row in run(sql, partner)[1]]


def test_partners_see_disjoint_values_that_do_not_join(run):
    fund = values(run, "SELECT customer FROM people", FUND)
    bank = values(run, "SELECT customer FROM people", BANK)
    assert len(set(fund)) == len(set(bank)) == 20
    assert not set(fund) & set(bank)
    assert not (set(fund) | set(bank)) & PUBLISHED_CUSTOMERS


def test_a_partner_gets_the_same_values_in_every_query_and_dataset(run):
    first = values(run, "SELECT customer FROM people ORDER BY balance", FUND)
    values(run, "SELECT customer FROM people", BANK)  # another partner in between, on the same pool
    again = values(run, "SELECT customer FROM people ORDER BY balance", FUND)
    assert first == again
    accounts = values(run, "SELECT customer FROM accounts", FUND)
    assert set(accounts) < set(first)  # the fund can join its results from two datasets
    _, joined = run("SELECT p.city, a.bank FROM people p JOIN accounts a USING (customer)", FUND)
    assert len(joined) == 10


def test_the_value_is_the_hmac_of_the_published_pseudonym_under_the_partner_key(run):
    _, rows = run("SELECT customer, phone, balance FROM people WHERE balance = 300", FUND)
    assert rows == [(rekey(FUND.key, "cust-3"), rekey(FUND.key, "13800000003"), 300.0)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT upper(customer) FROM people",
        "SELECT substr(phone, 1, 4) FROM people",
        "SELECT customer || '' FROM people",
        "SELECT CAST(phone AS VARCHAR) FROM people",
        "SELECT string_agg(customer, ',') FROM people",
        "SELECT min(phone) FROM people",
    ],
)
def test_no_expression_can_reach_the_published_value(run, sql):
    for value in values(run, sql, FUND):
        text = str(value)
        assert "cust-" not in text.lower() and "1380" not in text


def test_filters_on_published_values_match_nothing(run):
    assert run("SELECT count(*) FROM people WHERE customer = 'cust-3'")[1] == [(0,)]
    assert run("SELECT count(*) FROM people WHERE phone LIKE '1380%'")[1] == [(0,)]
    assert run("SELECT count(*) FROM people WHERE city = 'Hangzhou'")[1] == [(10,)]  # other columns are untouched


def test_aggregate_datasets_never_output_the_entity_even_re_keyed(run):
    columns, rows = run("SELECT province, count(DISTINCT buyer) FROM cards GROUP BY province", FUND)
    assert columns == ["province", "count(DISTINCT buyer)"]
    assert all(isinstance(count, int) for _, count in rows)


def test_partner_keys_differ_per_institution_and_are_stable():
    assert derive_partner_key(MASTER_KEY, "fund") == FUND.key
    assert derive_partner_key(MASTER_KEY, "fund") != derive_partner_key(MASTER_KEY, "bank")
    assert derive_partner_key(MASTER_KEY + b"!", "fund") != FUND.key
    with pytest.raises(ValueError):
        derive_partner_key(b"short", "fund")


def test_sql_and_python_re_keying_agree_on_awkward_values():
    texts = ["plain", "北京-110101", "back\\slash \\x41", "quote ' \"", "", "  spaces  "]
    connection = duckdb.connect()
    connection.execute("CREATE TABLE v (t VARCHAR, i BIGINT)")
    connection.executemany("INSERT INTO v VALUES (?, ?)", [(t, len(t)) for t in texts] + [(None, None)])
    rows = connection.execute(f"SELECT t, {rekey_sql(BANK.key, 't')}, i, {rekey_sql(BANK.key, 'i')} FROM v").fetchall()
    for text, keyed, number, keyed_number in rows:
        if text is None:
            assert keyed is None and keyed_number is None
        else:
            assert keyed == rekey(BANK.key, text)
            assert keyed_number == rekey(BANK.key, str(number))


def test_a_partner_key_must_be_a_real_key(gateway, bindings):

    for key in (b"", b"short", "text-not-bytes", b"x" * 65):
        with pytest.raises(ValueError):
            gateway.run("SELECT 1", bindings, key, Limits())
