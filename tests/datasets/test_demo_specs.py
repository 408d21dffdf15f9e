"""The demo specs load and build, at small scale, from the synthetic connector."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from connectors import get_connector
from datasets.anonymize import PseudonymKey
from datasets.build import build, connector_for
from datasets.identifiers import digest
from datasets.publish import publish, verify_version, version_path
from datasets.spec import load_specs
from testenv import REPO_DIR

SPECS_DIR = REPO_DIR / "datasets" / "specs"
SMALL = {"VITAMIN_DEMO_TRANSACTIONS": 20_000, "VITAMIN_DEMO_CONSUMERS": 5_000, "VITAMIN_DEMO_COMPANIES": 40}
MASTER_KEY = b"demo-master-key-0123456789abcdef"


@pytest.fixture(scope="module")
def specs():
    return {spec.slug: spec for spec in load_specs(SPECS_DIR, SMALL)}


@pytest.fixture(scope="module")
def built(specs, tmp_path_factory):
    """Every demo dataset built and published once as version 1, with its store."""
    from datasets.storage import Store

    root = tmp_path_factory.mktemp("demo")
    store = Store.from_url(str(root / "store"))
    results = {}
    for slug, spec in specs.items():
        result = build(
            spec, connector_for(spec), master_key=MASTER_KEY, release="2025", store=store, scratch_dir=root / "scratch"
        )
        publish(store, slug, 1, result)
        results[slug] = result
    return store, results


def query(store, slug: str, sql: str) -> list[tuple]:
    """`sql` over the data files of v1 (a lookup key's index file under _lookup/ is not data)."""
    paths = sorted(
        str(path) for path in Path(version_path(store, slug, 1)).rglob("*.parquet") if "_lookup" not in path.parts
    )
    files = "read_parquet([" + ", ".join(f"'{path}'" for path in paths) + "])"
    return duckdb.sql(sql.replace("{data}", files)).fetchall()


def test_the_demo_specs_load_with_their_documented_defaults():
    specs = {spec.slug: spec for spec in load_specs(SPECS_DIR)}
    assert {slug: spec.tier for slug, spec in specs.items()} == {
        "industry_prosperity_monthly": "open",
        "card_transactions": "aggregate",
        "credit_profiles": "lookup",
        "stock_attention_daily": "open",
        "listed_brands": "open",
        "market_daily": "open",
        "company_consumption_monthly": "open",
    }
    assert specs["card_transactions"].source.options["rows"] == 1_000_000
    assert specs["card_transactions"].source.options["consumers"] == 50_000
    assert specs["credit_profiles"].source.options["rows"] == 50_000
    card = specs["card_transactions"]
    assert card.privacy.k == 10 and card.privacy.entity == "buyer"
    assert card.analysis.aggregates == ("count", "count_distinct", "sum", "avg")
    assert set(card.analysis.dimensions) == {
        "month",
        "province",
        "age_band",
        "gender",
        "category",
        "csi_industry",
        "channel",
    }
    credit = specs["credit_profiles"].lookup
    assert credit.keys == ("customer", "mobile") and credit.thresholds == ("credit_score",)
    assert credit.consent_scope == "credit_assessment" and "credit_score" in credit.cohort.measures


def test_every_demo_dataset_builds_passes_its_privacy_checks_and_verifies(built, specs):
    store, results = built
    for slug, result in results.items():
        assert result.privacy.passed, (slug, result.privacy.problems)
        assert result.row_count > 0 and verify_version(store, slug, 1) == []
        assert [c["name"] for c in result.schema] == [c.name for c in specs[slug].published_columns]


def test_card_transactions_is_k_anonymous_and_holds_no_person_data(built):
    store, results = built
    report = results["card_transactions"].privacy
    assert report.k_achieved >= 10 and report.distinct_entities > 1000
    assert set(report.columns_dropped) >= {"name", "phone", "consumer_id", "merchant_id", "txn_id"}
    smallest = query(
        store,
        "card_transactions",
        "SELECT min(n) FROM (SELECT count(DISTINCT buyer) AS n FROM {data} GROUP BY age_band, gender, province)",
    )[0][0]
    assert smallest >= 10
    [(amount_not_rounded, bad_province)] = query(
        store,
        "card_transactions",
        "SELECT count(*) FILTER (WHERE amount % 10 <> 0), count(*) FILTER (WHERE province NOT LIKE '%省' AND province NOT LIKE '%市' AND province NOT LIKE '%自治区') FROM {data}",
    )
    assert amount_not_rounded == 0 and bad_province == 0


def test_credit_profiles_answer_a_lookup_by_pseudonymized_resident_id(built, specs):
    store, results = built
    spec = specs["credit_profiles"]
    stats = results["credit_profiles"].column_stats
    assert stats["credit_score"].min is None  # extremes of sensitive columns are withheld from the catalog
    [(low, high)] = query(store, "credit_profiles", "SELECT min(credit_score), max(credit_score) FROM {data}")
    assert 350 <= low and high <= 950

    # What the lookup API does: normalize and hash the ID a bank sends, pseudonymize it with this dataset's key,
    # and find the row (by resident ID in the data, by mobile through the index file).
    source = get_connector("synthetic", spec.source.options, batch_rows=1000)
    first = next(source.batches()).slice(0, 50).to_pylist()
    key = PseudonymKey.derive(MASTER_KEY, "credit_profiles", "2025")
    found = 0
    for person in first:
        rows = query(
            store,
            "credit_profiles",
            f"SELECT credit_score FROM {{data}} WHERE customer = '{key.pseudonym(digest(person['id_number']))}'",
        )
        found += len(rows)
        assert rows in ([], [(person["credit_score"],)])  # absent only when k-anonymity suppressed the person
        index = f"{version_path(store, 'credit_profiles', 1)}/_lookup/mobile.parquet"
        [(matches,)] = duckdb.execute(
            "SELECT count(*) FROM read_parquet(?) WHERE mobile = ? AND customer = ?",
            [index, key.pseudonym(digest(person["phone"])), key.pseudonym(digest(person["id_number"]))],
        ).fetchall()
        assert matches == len(rows)
    assert found >= 40


def test_industry_prosperity_growth_is_consistent_with_gmv(built):
    store, _ = built
    rows = query(store, "industry_prosperity_monthly", "SELECT csi_industry, month, gmv, mom_growth FROM {data}")
    gmv = {(industry, month): value for industry, month, value, _ in rows}
    checked = 0
    for industry, month, value, growth in rows:
        previous = gmv.get((industry, (month.replace(day=1) - dt.timedelta(days=1)).replace(day=1)))
        if previous:
            assert growth == pytest.approx(value / previous - 1, abs=1e-3)
            checked += 1
        else:
            assert growth is None
    assert checked > 0


def test_stock_attention_is_one_row_per_ticker_and_day(built):
    store, results = built
    [(rows, keys)] = query(
        store, "stock_attention_daily", "SELECT count(*), count(DISTINCT (ticker, date)) FROM {data}"
    )
    assert rows == keys == results["stock_attention_daily"].row_count


def source_table(spec, name: str | None = None):
    """The rows a spec's source (or one of its references) yields, read straight from the connector."""
    import pyarrow as pa

    source = spec.source if name is None else spec.references[name]
    connector = get_connector(source.kind, source.options)
    return pa.Table.from_batches(list(connector.batches()), schema=connector.schema())


def test_company_months_under_k_buyers_are_absent_and_the_rest_are_published(built, specs):
    """Recounted from the source, independently of the transform: a company-month is published exactly
    when at least 10 distinct buyers bought at its brands' merchants that month."""
    store, _ = built
    spec = specs["company_consumption_monthly"]
    transactions, brands = source_table(spec), source_table(spec, "brands")  # noqa: F841 (read by DuckDB)
    counted = duckdb.sql(
        """
        SELECT b.ticker, CAST(date_trunc('month', t.txn_time AT TIME ZONE 'Asia/Shanghai') AS DATE) AS month,
               count(DISTINCT t.consumer_id) AS buyers, count(*) AS orders, sum(t.amount) AS spending
        FROM transactions AS t JOIN brands AS b USING (merchant_id)
        GROUP BY ALL
        """
    ).fetchall()
    expected = {(ticker, month): (buyers, orders, spending) for ticker, month, buyers, orders, spending in counted}
    published = {
        (ticker, month): (buyers, orders, spending)
        for ticker, month, buyers, orders, spending in query(
            store, "company_consumption_monthly", "SELECT ticker, month, buyers, orders, spending FROM {data}"
        )
    }
    under_k = {key for key, (buyers, _, _) in expected.items() if buyers < 10}
    assert under_k and published, "the small demo has company-months on both sides of k"
    assert not under_k & set(published)
    assert set(published) == set(expected) - under_k
    for key, (buyers, orders, spending) in published.items():
        assert (buyers, orders) == expected[key][:2]
        assert spending == pytest.approx(expected[key][2], abs=0.01)


def test_company_growth_compares_with_the_published_previous_month_only(built):
    store, _ = built
    rows = query(store, "company_consumption_monthly", "SELECT ticker, month, spending, mom_growth FROM {data}")
    spending = {(ticker, month): value for ticker, month, value, _ in rows}
    for ticker, month, value, growth in rows:
        previous = spending.get((ticker, (month - dt.timedelta(days=1)).replace(day=1)))
        assert growth == (None if previous is None else pytest.approx(value / previous - 1, abs=1e-3))


def test_market_daily_has_only_trading_days_no_exchange_holiday(built):
    """The holidays are read here from the calendar's data file, not from the generator's code."""
    import csv

    store, _ = built
    holidays_file = REPO_DIR / "connectors" / "synthetic" / "data" / "cn_exchange_holidays.csv"
    with holidays_file.open(encoding="utf-8") as stream:
        holidays = {dt.date.fromisoformat(row["date"]) for row in csv.DictReader(stream)}
    assert dt.date(2024, 10, 1) in holidays and dt.date(2025, 1, 29) in holidays  # National Day, Spring Festival
    days = [row[0] for row in query(store, "market_daily", "SELECT DISTINCT date FROM {data} ORDER BY date")]
    assert days[0] == dt.date(2023, 1, 3) and days[-1] == dt.date(2025, 12, 31)  # 2 January 2023 was a holiday
    assert not set(days) & holidays
    assert all(day.weekday() < 5 for day in days)
    every_weekday = [
        days[0] + dt.timedelta(days=n)
        for n in range((days[-1] - days[0]).days + 1)
        if (days[0] + dt.timedelta(days=n)).weekday() < 5
    ]
    assert days == [day for day in every_weekday if day not in holidays]
    [(rows, keys, companies)] = query(
        store, "market_daily", "SELECT count(*), count(DISTINCT (ticker, date)), count(DISTINCT ticker) FROM {data}"
    )
    assert rows == keys == companies * len(days)


def test_an_until_day_cuts_the_market_data_as_it_stood_then(specs, tmp_path):
    """A backfilled month's build sees the data up to that month's end, identical to the full build's rows."""
    from datasets.spec import load_spec

    until = dt.date(2024, 2, 29)
    cut = load_spec(SPECS_DIR / "market_daily.yaml", {**SMALL, "VITAMIN_DATA_UNTIL": until})
    assert cut.source.options["until"] == until and cut.fingerprint != specs["market_daily"].fingerprint
    last_month = {**SMALL, "VITAMIN_DATA_UNTIL": dt.date(2025, 12, 31)}
    for slug in ("market_daily", "company_consumption_monthly"):  # a refresh after the history is unchanged
        assert load_spec(SPECS_DIR / f"{slug}.yaml", last_month).fingerprint == specs[slug].fingerprint
    full, part = source_table(specs["market_daily"]), source_table(cut)
    assert part.num_rows and max(part.column("date").to_pylist()) <= until
    assert part.equals(full.slice(0, part.num_rows))


def test_the_last_backfilled_month_and_a_later_refresh_build_the_same_version(built, specs, tmp_path):
    """Exact sums (DECIMAL) make the content hash a function of the rows: a scheduled refresh after the
    history (until its default, the data's end) is recognised as unchanged, not published again."""
    from datasets.spec import load_spec
    from datasets.storage import Store

    _, results = built
    for slug in ("company_consumption_monthly", "industry_prosperity_monthly", "market_daily"):
        spec = load_spec(SPECS_DIR / f"{slug}.yaml", {**SMALL, "VITAMIN_DATA_UNTIL": dt.date(2025, 12, 31)})
        again = build(
            spec,
            connector_for(spec),
            master_key=MASTER_KEY,
            release="2025",
            store=Store.from_url(str(tmp_path / slug)),
            scratch_dir=tmp_path / "scratch",
            threads=2,
        )
        assert again.spec_fingerprint == results[slug].spec_fingerprint
        assert again.content_hash == results[slug].content_hash
