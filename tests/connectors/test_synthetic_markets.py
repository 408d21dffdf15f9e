"""The fund-index side of the synthetic connector: the exchange calendar, brands of listed companies,
company demand in card spending, daily market data, and `until` cuts of the streams."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import OptionsError, get_connector
from connectors.synthetic.brands import BRAND_INDUSTRIES, brand_owner
from connectors.synthetic.commerce import MERCHANT_ID_BASE
from connectors.synthetic.demand import company_demand, month_number
from connectors.synthetic.reference import CATEGORIES
from connectors.synthetic.trading_calendar import HOLIDAYS_FILE, exchange_holidays, trading_days

SPEC_RANGE = {"start_date": "2023-01-01", "end_date": "2025-12-31"}


def read(options: dict, batch_rows: int = 65_536) -> pa.Table:
    connector = get_connector("synthetic", options, batch_rows=batch_rows)
    return pa.Table.from_batches(list(connector.batches()), schema=connector.schema())


@cache
def market(companies: int = 300, seed: int = 2015) -> pa.Table:
    return read({"table": "market_daily", "companies": companies, "seed": seed, **SPEC_RANGE})


def as_matrix(data: pa.Table, column: str, companies: int) -> np.ndarray:
    """A (trading day, company) matrix of one market_daily column."""
    return data.column(column).to_numpy().reshape(-1, companies)


# --- the trading calendar ---


def test_trading_days_are_weekdays_that_are_not_exchange_holidays():
    days = trading_days(dt.date(2023, 1, 1), dt.date(2026, 12, 31))
    as_dates = days.astype(dt.date).tolist()
    assert all(day.weekday() < 5 for day in as_dates)
    assert not set(as_dates) & exchange_holidays()
    per_year = {year: sum(day.year == year for day in as_dates) for year in (2023, 2024, 2025, 2026)}
    assert per_year == {2023: 242, 2024: 242, 2025: 243, 2026: 242}  # as the exchanges published
    assert np.all(np.diff(days.astype(np.int64)) > 0)


def test_the_holiday_file_lists_weekday_closures_of_every_covered_year():
    with HOLIDAYS_FILE.open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    days = [dt.date.fromisoformat(row["date"]) for row in rows]
    assert {day.year for day in days} == {2023, 2024, 2025, 2026}
    assert all(day.weekday() < 5 for day in days)
    assert all(row["name"] for row in rows)
    spring_festival_2024 = {dt.date(2024, 2, 9)} | {dt.date(2024, 2, day) for day in range(12, 17)}
    assert spring_festival_2024 <= exchange_holidays()
    weekend_makeup_working_day = dt.date(2024, 2, 4)  # a Sunday the State Council made a working day
    assert np.datetime64(weekend_makeup_working_day) not in trading_days(dt.date(2024, 2, 1), dt.date(2024, 2, 29))


@pytest.mark.parametrize(
    ("start", "end"), [(dt.date(2022, 12, 1), dt.date(2023, 1, 31)), (dt.date(2026, 6, 1), dt.date(2027, 1, 5))]
)
def test_dates_outside_the_calendar_raise(start, end):
    with pytest.raises(ValueError, match="calendar covers 2023-2026"):
        trading_days(start, end)


def test_market_daily_refuses_a_range_the_calendar_does_not_cover():
    with pytest.raises(OptionsError) as error:
        get_connector("synthetic", {"table": "market_daily", "start_date": "2022-06-01"})
    assert [field for field, _ in error.value.problems] == ["start_date"]


# --- listed brands ---


def test_listed_brands_name_the_merchants_as_the_merchants_table_does_and_match_industries():
    brands = read({"table": "listed_brands", "seed": 9})
    merchants = read({"table": "merchants", "rows": 10_000, "seed": 9})
    companies = read({"table": "companies", "rows": 300, "seed": 9})
    assert 2_000 < brands.num_rows < 4_500  # about a third of the ~93% consumer-facing merchants
    ids = brands.column("merchant_id").to_numpy()
    assert np.all(np.diff(ids) > 0)
    row = ids - MERCHANT_ID_BASE
    assert brands.column("merchant_name").equals(merchants.column("merchant_name").take(row))
    assert brands.column("csi_industry").equals(merchants.column("csi_industry").take(row))
    branded_categories = {category.name for category in CATEGORIES if category.csi_industry in BRAND_INDUSTRIES}
    assert set(merchants.column("category").take(row).to_pylist()) == branded_categories
    company_of = {r["ticker"]: r for r in companies.to_pylist()}
    for r in brands.select(["ticker", "company_name", "exchange", "csi_industry"]).to_pylist():
        assert r == company_of[r["ticker"]]
    owning = set(brands.column("ticker").to_pylist())
    other_industries = {t for t, r in company_of.items() if r["csi_industry"] not in BRAND_INDUSTRIES}
    assert other_industries and not owning & other_industries
    per_company = brands.group_by("ticker").aggregate([("brand", "count_distinct")])
    counts = per_company.column("brand_count_distinct").to_numpy()
    assert counts.min() >= 1 and counts.max() == 3 and (counts == 1).any()


def test_brand_owner_is_a_pure_function_of_the_merchant():
    merchants = np.arange(50_000, dtype=np.int64)
    owners = brand_owner(4, merchants, 300)
    assert np.array_equal(owners[123:4567], brand_owner(4, merchants[123:4567], 300))
    assert 0.25 < (owners >= 0).mean() < 0.40
    assert owners.min() == -1 and owners.max() < 300


# --- company demand in card spending ---


def test_non_brand_amounts_are_byte_identical_to_those_before_companies_existed():
    transactions = read({"table": "transactions", "rows": 200_000, "seed": 5})
    merchant = transactions.column("merchant_id").to_numpy() - MERCHANT_ID_BASE
    amounts = transactions.column("amount").to_numpy()[brand_owner(5, merchant, 300) < 0]
    assert len(amounts) == 140_359
    # sha256 of the same rows' amounts as the generator made them before brands and demand were added
    expected = "f4f63b889929f8b8911be4b32f8355098fdbbea93115e54cc575405e67b441fa"
    assert hashlib.sha256(np.ascontiguousarray(amounts).tobytes()).hexdigest() == expected


def test_brand_spending_per_company_month_tracks_the_demand_level():
    seed = 7
    transactions = read({"table": "transactions", "rows": 600_000, "seed": seed, **SPEC_RANGE})
    merchant = transactions.column("merchant_id").to_numpy() - MERCHANT_ID_BASE
    owner = brand_owner(seed, merchant, 300)
    local_day = pc.cast(pc.local_timestamp(transactions.column("txn_time")), pa.date32())
    month = month_number(local_day.to_numpy(zero_copy_only=False).astype("datetime64[D]"))
    median = {category.name: np.log(category.median_amount_cny) for category in CATEGORIES}
    log_median = np.array([median[name] for name in transactions.column("category").to_pylist()])
    relative = np.log(transactions.column("amount").to_numpy()) - log_median
    assert abs(relative[owner < 0].mean()) < 0.02  # other shops' amounts centre on their category median

    first = month_number(dt.date(2023, 1, 1))
    levels, _ = company_demand(seed, 300, first, month_number(dt.date(2025, 12, 31)))
    branded = owner >= 0
    cell = owner[branded] * levels.shape[1] + (month[branded] - first)
    counts = np.bincount(cell, minlength=levels.size)
    means = np.bincount(cell, weights=relative[branded], minlength=levels.size) / np.maximum(counts, 1)
    busy = counts >= 30
    assert busy.sum() > 500
    expected = levels.ravel()[busy]
    assert np.corrcoef(means[busy], expected)[0, 1] > 0.6
    slope = np.polyfit(expected, means[busy], 1)[0]
    assert 0.8 < slope < 1.2


def test_demand_levels_follow_the_recursion_and_do_not_depend_on_the_range():
    levels, shocks = company_demand(3, 40, 600, 700)
    assert np.allclose(levels[:, 1:], 0.6 * levels[:, :-1] + shocks[:, 1:])
    later, _ = company_demand(3, 10, 650, 660)
    assert np.array_equal(later, levels[:10, 50:61])
    assert 0.09 < shocks.std() < 0.15


# --- market_daily ---


def test_market_daily_has_one_row_per_company_per_trading_day_in_order():
    data = market(50)
    days = trading_days(dt.date(2023, 1, 1), dt.date(2025, 12, 31))
    assert data.num_rows == len(days) * 50
    dates = data.column("date").to_numpy().astype("datetime64[D]")
    assert np.array_equal(dates[::50], days)
    assert np.array_equal(dates.reshape(-1, 50), np.repeat(days[:, None], 50, axis=1))
    companies = read({"table": "companies", "rows": 50, "seed": 2015})
    first_day = data.slice(0, 50)
    for name in ("ticker", "exchange", "company_name", "csi_industry"):
        assert first_day.column(name).equals(companies.column(name))
    assert set(pc.unique(data.column("exchange")).to_pylist()) == {"SSE", "SZSE"}


def test_corporate_actions_are_consistent_with_close_and_total_return():
    data, n = market(), 300
    close, tri = as_matrix(data, "close", n), as_matrix(data, "total_return_index", n)
    dividend, split = as_matrix(data, "dividend_per_share", n), as_matrix(data, "split_ratio", n)
    shares, free_float = as_matrix(data, "shares_outstanding", n), as_matrix(data, "free_float_shares", n)
    cap = as_matrix(data, "market_cap", n)
    assert np.all(tri[0] == 1000.0)
    total_return = tri[1:] / tri[:-1] - 1
    rebuilt = (close[:-1] * (1 + total_return) - dividend[1:]) / split[1:]
    assert np.abs(rebuilt - close[1:]).max() < 0.015  # published closes are rounded to cents
    assert np.abs(total_return).max() <= 0.1 + 1e-6
    assert np.array_equal(cap, np.round(close * shares, 2))
    splits = split[1:] != 1.0
    assert 15 <= splits.sum() <= 50 and set(np.unique(split)) <= {1.0, 1.2, 1.5, 2.0}
    assert np.all(splits.sum(axis=0) <= 1)
    assert np.array_equal(shares[1:][splits], np.round(shares[:-1][splits] * split[1:][splits]).astype(np.int64))
    assert np.all(shares[1:][~splits] == shares[:-1][~splits])
    float_changes = (free_float[1:] != free_float[:-1]) & ~splits
    assert 0 < float_changes.sum() < 0.3 * n
    assert np.array_equal(free_float[1:][splits], np.round(free_float[:-1][splits] * split[1:][splits]))
    ratio = free_float / shares
    assert ratio.min() >= 0.19 and ratio.max() <= 0.951
    # a split moves the market cap by the day's return (less the dividend), not by the split
    cap_move = cap[1:][splits] / cap[:-1][splits]
    expected_move = 1 + total_return[splits] - dividend[1:][splits] / close[:-1][splits]
    assert np.abs(cap_move - expected_move).max() < 0.002


def test_dividends_fall_in_may_to_july_with_plausible_yields_and_prices_are_plausible():
    data, n = market(), 300
    dividend, close = as_matrix(data, "dividend_per_share", n), as_matrix(data, "close", n)
    day, company = np.nonzero(dividend)
    months = data.column("date").to_numpy().astype("datetime64[M]").astype(np.int64)[::n][day] % 12 + 1
    assert set(months) <= {5, 6, 7, 8}  # August only when July 31 is not a trading day
    dividend_yield = dividend[day, company] / close[day - 1, company]
    assert dividend_yield.min() > 0.003 and dividend_yield.max() < 0.05
    payers_per_year = len(day) / (3 * n)
    assert 0.75 < payers_per_year < 0.95
    cap = as_matrix(data, "market_cap", n)[0]
    assert 100e9 <= cap[:51].min() and cap[:51].max() <= 2_600e9  # the well-known listed companies
    assert 1.9e9 <= cap[51:].min() and cap[51:].max() <= 81e9
    assert 1.0 < close.min() and close.max() < 5_000
    daily_volatility = np.std(np.diff(np.log(as_matrix(data, "total_return_index", n)), axis=0), axis=0)
    assert 0.012 < np.median(daily_volatility) < 0.025


def test_consumption_shocks_predict_next_month_returns_because_the_demo_plants_it():
    data, n = market(), 300
    tri = as_matrix(data, "total_return_index", n)
    month = data.column("date").to_numpy().astype("datetime64[M]").astype(np.int64)[::n]
    month_end = np.nonzero(np.diff(month))[0]  # last trading day of each month but the last
    first = int(month[0])
    _, shocks = company_demand(2015, n, first, int(month[-1]))
    industries = np.array(market(n).column("csi_industry").to_pylist()[:n])
    brand_companies = np.isin(industries, BRAND_INDUSTRIES)
    correlations = []
    for k in range(len(month_end) - 1):  # month k+1 of the range, from the end of month k
        next_return = tri[month_end[k + 1], brand_companies] / tri[month_end[k], brand_companies] - 1
        shock = shocks[brand_companies, int(month[month_end[k]]) - first]
        correlations.append(np.corrcoef(shock, next_return)[0, 1])
    assert len(correlations) == 34
    assert np.mean(correlations) > 0.1
    assert np.mean(np.array(correlations) > 0) > 0.75


def test_market_daily_is_the_same_for_every_batch_size_and_depends_on_the_seed():
    options = {"table": "market_daily", "companies": 40, **SPEC_RANGE}
    assert read(options, batch_rows=997).equals(read(options, batch_rows=100_000))
    assert not read(options).equals(read({**options, "seed": 3}))


# --- until: the data as it was known on a day ---


@settings(max_examples=12, deadline=None)
@given(
    until=st.dates(dt.date(2023, 12, 31), dt.date(2024, 3, 5)),
    batch_rows=st.sampled_from([1_000, 4_321, 65_536, 200_000]),
)
def test_until_gives_an_exact_prefix_of_the_unbounded_stream(until, batch_rows):
    bounded = {"start_date": "2024-01-01", "end_date": "2024-02-29"}
    streams = {
        "transactions": {"table": "transactions", "rows": 150_000, "seed": 4, **bounded},
        "market_daily": {"table": "market_daily", "companies": 60, "seed": 4, **bounded},
        "stock_attention": {"table": "stock_attention", "companies": 60, "seed": 4, **bounded},
    }
    for name, options in streams.items():
        whole = full_stream(name)
        connector = get_connector("synthetic", {**options, "until": until}, batch_rows=batch_rows)
        cut = pa.Table.from_batches(list(connector.batches()), schema=connector.schema())
        if name == "transactions":
            days = pc.cast(pc.local_timestamp(whole.column("txn_time")), pa.date32())
        else:
            days = whole.column("date")
        expected = whole.filter(pc.less_equal(days, pa.scalar(until, pa.date32())))
        assert cut.equals(expected), name
        if cut.num_rows:
            last = cut.column("txn_time" if name == "transactions" else "date")[-1].as_py()
            assert connector.watermark() == last.isoformat()
        else:
            assert connector.watermark() is None


@cache
def full_stream(name: str) -> pa.Table:
    bounded = {"start_date": "2024-01-01", "end_date": "2024-02-29"}
    if name == "transactions":
        return read({"table": name, "rows": 150_000, "seed": 4, **bounded})
    return read({"table": name, "companies": 60, "seed": 4, **bounded})


def test_until_keeps_rows_meaning_the_whole_range_and_is_checked():
    whole = get_connector("synthetic", {"table": "transactions", "rows": 20_000})
    half = get_connector("synthetic", {"table": "transactions", "rows": 20_000, "until": "2024-12-31"})
    half_rows = half.reader().read_all()
    assert 8_000 < half_rows.num_rows < 12_000
    assert half_rows.equals(whole.reader().read_all().slice(0, half_rows.num_rows))
    assert half.watermark().startswith("2024-12-31T")
    day_before = get_connector("synthetic", {"table": "market_daily", "until": "2023-12-31", "companies": 5})
    assert day_before.reader().read_all().num_rows == 0 and day_before.watermark() is None
    with pytest.raises(OptionsError) as error:
        get_connector("synthetic", {"table": "transactions", "until": "2023-12-30"})
    assert [field for field, _ in error.value.problems] == ["until"]
    with pytest.raises(OptionsError) as error:
        get_connector("synthetic", {"table": "consumers", "until": "2024-05-01"})
    assert [field for field, _ in error.value.problems] == ["until"]
