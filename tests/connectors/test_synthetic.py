"""The synthetic connector: shape, determinism, realism of IDs/phones/scores, cross-table consistency, seasonality."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import OptionsError, get_connector
from connectors.synthetic import (
    TABLES,
    is_valid_resident_id,
    resident_id_check_char,
    resident_id_check_chars,
    valid_resident_id_mask,
)
from connectors.synthetic.commerce import MERCHANT_ID_BASE
from connectors.synthetic.reference import CITIES, PHONE_PREFIXES
from testenv import REPO_DIR

SMALL_ROWS = {
    "companies": 120,
    "stock_attention": 3_000,
    "repayments": 3_000,
    "listed_brands": 1_000,
    "market_daily": 3_000,
}


def read(options: dict, batch_rows: int = 65_536) -> pa.Table:
    connector = get_connector("synthetic", options, batch_rows=batch_rows)
    return pa.Table.from_batches(list(connector.batches()), schema=connector.schema())


@cache
def table(name: str, rows: int, **options) -> pa.Table:
    return read({"table": name, "rows": rows, **options})


def ipc_bytes(data: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue().to_pybytes()


# The reference check character, written independently of the code under test: ISO 7064 MOD 11-2
# gives the digit at distance k from the check position the weight 2**k mod 11, and the check value
# c makes the whole weighted sum (with c's weight 1) congruent to 1 mod 11.
def reference_check_char(first17: str) -> str:
    total = sum(int(digit) * pow(2, 17 - position, 11) for position, digit in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


digits17 = st.text(alphabet="0123456789", min_size=17, max_size=17)


@given(digits17)
def test_check_char_matches_the_reference_implementation(first17):
    assert resident_id_check_char(first17) == reference_check_char(first17)


@given(st.lists(digits17, min_size=1, max_size=40))
def test_vectorized_check_chars_match_the_scalar_function(prefixes):
    assert resident_id_check_chars(prefixes).to_pylist() == [resident_id_check_char(p) for p in prefixes]


@given(digits17, st.integers(0, 16), st.integers(1, 9))
def test_any_single_digit_change_invalidates_an_id(first17, position, shift):
    valid = "11010519491231" + first17[14:] + reference_check_char("11010519491231" + first17[14:])
    assert is_valid_resident_id(valid)
    changed_digit = str((int(valid[position]) + shift) % 10)
    corrupted = valid[:position] + changed_digit + valid[position + 1 :]
    assert not is_valid_resident_id(corrupted)
    assert not valid_resident_id_mask(pa.array([corrupted]))[0]


def test_known_id_number_and_malformed_ones():
    assert resident_id_check_char("11010519491231002") == "X"  # the example printed in GB 11643-1999
    assert is_valid_resident_id("11010519491231002X")
    assert is_valid_resident_id("11010519491231002x")
    values = ["11010519491231002X", "11010519491231002", "11010519490231002X", "1101051949123100AX", None, 7]
    assert [is_valid_resident_id(value) for value in values] == [True, False, False, False, False, False]
    mask = valid_resident_id_mask(pa.array(values[:5]))
    assert mask.tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError):
        resident_id_check_char("123")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_streams_batches_matching_its_schema(name):
    rows = SMALL_ROWS.get(name, 5_000)
    batch_rows = rows // 4
    connector = get_connector("synthetic", {"table": name, "rows": rows}, batch_rows=batch_rows)
    batches = list(connector.batches())
    assert len(batches) >= 4
    assert all(0 < batch.num_rows <= batch_rows for batch in batches)
    assert all(batch.schema == connector.schema() for batch in batches)
    assert sum(batch.num_rows for batch in batches) == rows
    assert connector.reader().read_all().num_rows == rows


@pytest.mark.parametrize("name", sorted(TABLES))
def test_same_seed_same_bytes_and_another_seed_other_bytes(name):
    rows = SMALL_ROWS.get(name, 3_000)
    first = ipc_bytes(read({"table": name, "rows": rows, "seed": 7}))
    again = ipc_bytes(read({"table": name, "rows": rows, "seed": 7}))
    other = ipc_bytes(read({"table": name, "rows": rows, "seed": 8}))
    assert first == again
    assert first != other


def test_another_process_makes_the_same_bytes():
    script = (
        "import hashlib, sys, pyarrow as pa\n"
        "from connectors import get_connector\n"
        "data = get_connector('synthetic', {'table': 'transactions', 'rows': 5000, 'seed': 11}).reader().read_all()\n"
        "sink = pa.BufferOutputStream()\n"
        "with pa.ipc.new_stream(sink, data.schema) as writer:\n"
        "    writer.write_table(data)\n"
        "print(hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert result.returncode == 0, result.stderr
    here = hashlib.sha256(ipc_bytes(read({"table": "transactions", "rows": 5000, "seed": 11}))).hexdigest()
    assert result.stdout.strip() == here


def test_content_does_not_depend_on_the_batch_size():
    options = {"table": "transactions", "rows": 70_000, "seed": 3}
    assert read(options, batch_rows=999).equals(read(options, batch_rows=65_536))
    loans = {"table": "repayments", "loans": 5_000, "seed": 3}
    assert read(loans, batch_rows=777).equals(read(loans, batch_rows=100_000))


def test_a_huge_table_streams_its_first_batch_without_generating_the_rest():
    connector = get_connector("synthetic", {"table": "transactions", "rows": 10**12}, batch_rows=10_000)
    first = next(iter(connector.batches()))
    assert first.num_rows == 10_000
    assert first.column("txn_id").to_pylist()[:3] == [1, 2, 3]


def check_consumer_columns(data: pa.Table) -> None:
    ids = data.column("id_number").combine_chunks()
    assert valid_resident_id_mask(ids).all()
    birth = pc.strftime(pc.cast(data.column("birth_date"), pa.timestamp("s")), format="%Y%m%d")
    assert pc.all(pc.equal(pc.utf8_slice_codeunits(ids, 6, 14), birth)).as_py()
    sequence_is_odd = pc.equal(pc.bit_wise_and(pc.cast(pc.utf8_slice_codeunits(ids, 16, 17), pa.int8()), 1), 1)
    assert pc.all(pc.equal(sequence_is_odd, pc.equal(data.column("gender"), "M"))).as_py()
    city_codes = {city.name: city.code for city in CITIES}
    province_of = {city.name: city.province for city in CITIES}
    for row in data.select(["id_number", "city", "province"]).slice(0, 2_000).to_pylist():
        assert row["id_number"].startswith(city_codes[row["city"]])
        assert row["province"] == province_of[row["city"]]
    phones = data.column("phone").combine_chunks()
    assert pc.all(pc.match_substring_regex(phones, r"^1[0-9]{10}$")).as_py()
    prefixes = set(pc.unique(pc.utf8_slice_codeunits(phones, 0, 3)).to_pylist())
    assert prefixes <= {prefix for prefix, _ in PHONE_PREFIXES}
    assert len(prefixes) > 10
    assert set(pc.unique(data.column("gender")).to_pylist()) == {"M", "F"}
    names = data.column("name").combine_chunks()
    assert pc.all(pc.is_in(pc.utf8_length(names), pa.array([2, 3], pa.int32()))).as_py()


def test_consumers_have_valid_distinct_ids_consistent_with_birth_date_gender_and_city():
    consumers = table("consumers", 100_000)
    check_consumer_columns(consumers)
    assert pc.count_distinct(consumers.column("id_number")).as_py() == 100_000
    assert set(pc.unique(consumers.column("income_band")).to_pylist()) == {
        "<5k",
        "5k-10k",
        "10k-20k",
        "20k-50k",
        "50k+",
    }
    births = consumers.column("birth_date").to_numpy()
    assert births.min() >= np.datetime64("1950-01-01") and births.max() <= np.datetime64("2006-12-31")


def test_transactions_show_the_same_consumer_as_the_consumers_table():
    transactions = table("transactions", 100_000, consumers=2_000)
    check_consumer_columns(transactions)
    consumers = table("consumers", 2_000)
    ids = transactions.column("consumer_id").to_numpy()
    assert ids.min() >= 0 and ids.max() < 2_000
    for column in ("id_number", "name", "phone", "birth_date", "gender", "province", "city"):
        assert transactions.column(column).equals(consumers.column(column).take(ids)), column
    assert pc.count_distinct(transactions.column("txn_id")).as_py() == 100_000


def test_transactions_merchants_match_the_merchants_table():
    transactions = table("transactions", 50_000, merchants=500)
    merchants = table("merchants", 500)
    index = pc.subtract(transactions.column("merchant_id"), MERCHANT_ID_BASE).to_numpy()
    assert transactions.column("category").equals(merchants.column("category").take(index))
    assert transactions.column("csi_industry").equals(merchants.column("csi_industry").take(index))
    assert set(pc.unique(transactions.column("channel")).to_pylist()) == {"online", "mobile", "pos"}
    assert pc.min(transactions.column("amount")).as_py() >= 0.01
    amounts = transactions.column("amount").to_numpy()
    assert np.array_equal(amounts, np.round(amounts, 2))


def test_transaction_times_are_ordered_within_the_range_in_shanghai_time():
    transactions = table("transactions", 100_000, start_date="2024-03-01", end_date="2024-03-31")
    times = transactions.column("txn_time")
    assert times.type == pa.timestamp("ms", tz="Asia/Shanghai")
    values = times.to_numpy().astype(np.int64)
    assert (np.diff(values) >= 0).all()
    local_days = pc.cast(pc.local_timestamp(times), pa.date32())
    assert pc.min(local_days).as_py() == dt.date(2024, 3, 1)
    assert pc.max(local_days).as_py() == dt.date(2024, 3, 31)


def daily_counts(transactions: pa.Table) -> dict[dt.date, int]:
    local_days = pc.cast(pc.local_timestamp(transactions.column("txn_time")), pa.date32())
    counts = pc.value_counts(local_days)
    return {item["values"]: item["counts"] for item in counts.to_pylist()}


def test_double_11_618_spring_festival_and_weekends_get_more_volume():
    counts = daily_counts(table("transactions", 200_000))
    average = sum(counts.values()) / len(counts)
    assert counts[dt.date(2024, 11, 11)] > 3 * average
    assert counts[dt.date(2025, 11, 11)] > 3 * average
    assert counts[dt.date(2025, 6, 18)] > 2 * average
    assert counts[dt.date(2025, 1, 28)] > counts[dt.date(2025, 3, 4)]  # New Year shopping vs. an ordinary Tuesday
    assert counts[dt.date(2024, 9, 7)] > counts[dt.date(2024, 9, 4)]  # a Saturday vs. a Wednesday


def test_watermarks():
    connector = get_connector("synthetic", {"table": "transactions", "rows": 30_000, "end_date": "2024-06-30"})
    latest = pc.max(connector.reader().read_all().column("txn_time")).as_py()
    assert connector.watermark() == latest.isoformat()
    assert latest.date() == dt.date(2024, 6, 30)
    attention = get_connector("synthetic", {"table": "stock_attention", "companies": 10, "end_date": "2024-01-31"})
    assert attention.watermark() == "2024-01-31"
    assert get_connector("synthetic", {"table": "consumers", "rows": 10}).watermark() is None


def test_credit_profiles_scores_are_in_range_and_follow_the_features():
    profiles = table("credit_profiles", 50_000)
    scores = profiles.column("credit_score")
    assert scores.type == pa.int32()
    assert pc.min(scores).as_py() >= 350 and pc.max(scores).as_py() <= 950
    assert 600 < pc.mean(scores).as_py() < 720
    score = scores.to_numpy()
    assert np.corrcoef(score, profiles.column("on_time_ratio").to_numpy())[0, 1] > 0.3
    assert np.corrcoef(score, profiles.column("credit_utilization").to_numpy())[0, 1] < -0.3
    utilization = profiles.column("credit_utilization")
    assert pc.min(utilization).as_py() >= 0 and pc.max(utilization).as_py() <= 1
    check_consumer_columns(profiles)
    assert profiles.column("id_number").equals(table("consumers", 50_000).column("id_number"))


def test_loan_statuses_agree_with_their_repayments():
    loans = table("loans", 5_000)
    repayments = table("repayments", 10**9, loans=5_000)
    assert set(pc.unique(loans.column("status")).to_pylist()) == {"current", "paid_off", "overdue", "default"}
    rates = loans.column("annual_rate")
    assert pc.min(rates).as_py() >= 0.036 and pc.max(rates).as_py() <= 0.24
    assert valid_resident_id_mask(loans.column("id_number")).all()
    unpaid_late = repayments.filter(
        pc.and_(pc.is_null(repayments.column("paid_date")), pc.greater(repayments.column("days_past_due"), 0))
    )
    worst = unpaid_late.group_by("loan_id").aggregate([("days_past_due", "max")])
    worst_by_loan = dict(
        zip(worst.column("loan_id").to_pylist(), worst.column("days_past_due_max").to_pylist(), strict=True)
    )
    for loan_id, status in zip(loans.column("loan_id").to_pylist(), loans.column("status").to_pylist(), strict=True):
        if status == "default":
            assert worst_by_loan[loan_id] > 90
        elif status == "overdue":
            assert 0 < worst_by_loan[loan_id] <= 90
        else:
            assert loan_id not in worst_by_loan
    terms = dict(zip(loans.column("loan_id").to_pylist(), loans.column("term_months").to_pylist(), strict=True))
    instalments = pc.value_counts(repayments.column("loan_id")).to_pylist()
    assert all(terms[item["values"]] == item["counts"] for item in instalments)
    paid = repayments.filter(pc.is_valid(repayments.column("paid_date")))
    assert paid.column("amount_paid").equals(paid.column("amount_due"))


def test_companies_and_stock_attention():
    companies = table("companies", 2_000)
    tickers = companies.column("ticker")
    assert pc.count_distinct(tickers).as_py() == 2_000
    assert pc.all(pc.match_substring_regex(tickers, r"^[036][0-9]{5}\.(SH|SZ)$")).as_py()
    exchanges = pc.if_else(pc.ends_with(tickers, ".SH"), "SSE", "SZSE")
    assert companies.column("exchange").equals(exchanges)
    assert companies.slice(0, 1).to_pylist()[0]["company_name"] == "贵州茅台"
    attention = read(
        {"table": "stock_attention", "companies": 50, "start_date": "2024-01-01", "end_date": "2024-03-31"}
    )
    assert attention.num_rows == 50 * 91
    sentiment = attention.column("sentiment")
    assert pc.min(sentiment).as_py() >= -1 and pc.max(sentiment).as_py() <= 1
    assert pc.min(attention.column("search_volume")).as_py() >= 0
    assert set(pc.unique(attention.column("ticker")).to_pylist()) == set(tickers.to_pylist()[:50])


def test_options_errors_list_every_problem():
    with pytest.raises(OptionsError) as error:
        get_connector(
            "synthetic",
            {"table": "consumers", "rows": -5, "seed": "x", "merchants": 10, "start_date": "2024-02-30", "colour": 1},
        )
    fields = {field for field, _ in error.value.problems}
    assert fields == {"rows", "seed", "merchants", "start_date", "colour"}
    with pytest.raises(OptionsError) as error:
        get_connector("synthetic", {"table": "transactions", "start_date": "2025-01-01", "end_date": "2024-01-01"})
    assert [field for field, _ in error.value.problems] == ["end_date"]
    with pytest.raises(OptionsError) as error:
        get_connector("synthetic", {"table": "nope"})
    assert error.value.problems[0][0] == "table"
    with pytest.raises(OptionsError) as error:
        get_connector("synthetic", {"rows": 10})
    assert error.value.problems == [("table", "is required")]
    for too_many in ({"table": "companies", "rows": 100_000}, {"table": "consumers", "rows": 10**10}):
        with pytest.raises(OptionsError) as error:
            get_connector("synthetic", too_many)
        assert error.value.problems[0][0] == "rows"


def test_date_options_accept_dates_as_yaml_parses_them():
    connector = get_connector(
        "synthetic",
        {"table": "transactions", "rows": 1_000, "start_date": dt.date(2024, 5, 1), "end_date": "2024-05-02"},
    )
    days = set(pc.cast(pc.local_timestamp(connector.reader().read_all().column("txn_time")), pa.date32()).to_pylist())
    assert days == {dt.date(2024, 5, 1), dt.date(2024, 5, 2)}
