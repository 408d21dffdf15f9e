"""Honest dataset pages: approximate distinct counts say so, the data's own period stands beside the publication
time (and says when the data ends long before it), and the plans a partner can ask for are shown before a request."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest
from catalog_support import auth, bearer_token
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from access.models import QuotaPlan
from access.plan_terms import plan_terms
from catalog import describe
from catalog.models import DatasetVersion
from portal.templatetags.units import human


def page(client, user, url: str) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def distinct_cells(html: str) -> dict[str, str]:
    """Column name → the text of its Distinct cell in the data dictionary."""
    dictionary = html.split('id="dictionary"')[1].split("</section>")[0]
    cells = {}
    for name, row in re.findall(r'<tr id="column-([^"]+)">(.*?)</tr>', dictionary, re.S):
        cells[name] = re.findall(r'<td class="num">(.*?)</td>', row, re.S)[1]
    return cells


def test_approximate_distinct_counts_are_marked_and_exact_ones_are_not(client, catalog, bob):
    version = catalog.industry.latest_version()
    cells = distinct_cells(page(client, bob, "/catalog/industry_prosperity_monthly/"))
    approximate = {name for name, stats in version.column_stats.items() if "distinct_approx" in stats}
    assert approximate == set(cells), "the build's statistics are HyperLogLog estimates"
    assert all("≈" in cells[name] for name in approximate)

    exact_column = "csi_industry"
    stats = dict(version.column_stats)
    stats[exact_column] = {
        **{k: v for k, v in stats[exact_column].items() if k != "distinct_approx"},
        "distinct_count": 2,
    }
    DatasetVersion.objects.filter(pk=version.pk).update(column_stats=stats)
    html = page(client, bob, "/catalog/industry_prosperity_monthly/")
    cells = distinct_cells(html)
    assert "≈" not in cells[exact_column] and cells[exact_column].strip() == "2"
    assert all("≈" in text for name, text in cells.items() if name != exact_column)
    assert 'id="approx-legend"' in html

    for name in stats:
        stats[name] = {**{k: v for k, v in stats[name].items() if k != "distinct_approx"}, "distinct_count": 1}
    DatasetVersion.objects.filter(pk=version.pk).update(column_stats=stats)
    html = page(client, bob, "/catalog/industry_prosperity_monthly/")
    assert "≈" not in html.split('id="dictionary"')[1].split("</section>")[0] and 'id="approx-legend"' not in html


def test_the_schema_api_says_which_counts_are_approximate(client, catalog, fund):
    body = client.get("/api/v1/datasets/industry_prosperity_monthly/schema", **auth(bearer_token(fund))).json()
    assert body["columns"] and all(column["stats"]["distinct_count_approximate"] for column in body["columns"])


def test_data_that_ends_long_before_its_publication_says_so(client, catalog, bob, fund):
    version = catalog.industry.latest_version()  # monthly data from 2025-01-01 to 2025-03-01, published now
    published = timezone.localdate()
    html = page(client, bob, "/catalog/industry_prosperity_monthly/")
    period = html.split('id="data-period">')[1].split("</dd>")[0]
    assert "data from 2025-01-01 to 2025-03-01" in period
    assert f"data up to 2025-03-01, published {published:%Y-%m-%d}" in period and 'id="data-behind"' in period
    assert "2025-03-01" != f"{published:%Y-%m-%d}", "the data's end differs from the publication day"

    body = client.get("/api/v1/datasets/industry_prosperity_monthly", **auth(bearer_token(fund))).json()
    latest = body["latest_version"]
    assert latest["time_range"] == {"column": "month", "from": "2025-01-01", "to": "2025-03-01"}
    assert (
        latest["data_behind"] is True
        and latest["data_days_behind"] == (published - timezone.datetime(2025, 3, 1).date()).days
    )

    # Published a month after its last month: on time for a monthly dataset, and the page does not cry wolf.
    DatasetVersion.objects.filter(pk=version.pk).update(created_at=timezone.make_aware(timezone.datetime(2025, 4, 5)))
    html = page(client, bob, "/catalog/industry_prosperity_monthly/")
    assert "data from 2025-01-01 to 2025-03-01" in html and 'id="data-behind"' not in html
    fresh = describe.freshness(catalog.industry, DatasetVersion.objects.get(pk=version.pk))
    assert (fresh.days_behind, fresh.behind) == (35, False)


def test_a_snapshot_without_a_time_column_claims_no_period(client, catalog, bob):
    html = page(client, bob, "/catalog/credit_profiles/")
    period = html.split('id="data-period">')[1].split("</dd>")[0]
    assert "no time column" in period and "data up to" not in period


@pytest.fixture
def offered(plan):
    QuotaPlan.objects.create(name="internal", is_offered=False, queries_per_day=7)
    return plan


def plan_block(html: str, name: str) -> str:
    return re.search(rf'<details class="plan" id="plan-{name}"[^>]*>(.*?)</details>', html, re.S).group(1)


@pytest.mark.parametrize(
    "url", ["/catalog/industry_prosperity_monthly/request/", "/catalog/industry_prosperity_monthly/"]
)
def test_the_plans_on_offer_are_shown_before_a_request_with_their_terms(client, catalog, alice, fund, offered, url):
    html = page(client, alice, url)
    block = plan_block(html, offered.name)
    assert 'id="term-lookups_per_day"' not in block, "an open dataset is not looked up: no lookup limits"
    for item in plan_terms(offered.limits(), ["query", "download"]):
        row = re.search(rf'<tr id="term-{item.term.name}">(.*?)</tr>', block, re.S).group(1)
        assert human(item.value, item.term.unit) in row and item.term.at_limit in row
    assert "953.7 MB" in block and "1,000,000,000" not in block, "10^9 bytes in human units"
    assert 'id="plan-internal"' not in html, "a plan not on offer is not shown"


def test_a_lookup_datasets_plans_show_the_lookup_limits_only(client, catalog, alice, fund, offered):
    block = plan_block(page(client, alice, "/catalog/credit_profiles/"), offered.name)
    assert re.findall(r'<tr id="term-([a-z_]+)">', block) == ["lookups_per_day", "cohort_customers_per_day"]


def test_a_member_who_cannot_request_still_reads_the_terms(client, catalog, bob, fund, offered):
    client.force_login(bob)
    response = client.get("/catalog/industry_prosperity_monthly/request/")
    assert response.status_code == 403 and 'id="plan-standard"' in response.content.decode()


@given(
    last=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2030, 12, 31)),
    lag=st.integers(min_value=-30, max_value=2000),
    frequency=st.sampled_from([*describe.BEHIND_AFTER_DAYS, "", "irregular"]),
)
def test_data_is_called_behind_exactly_when_its_lag_passes_the_frequencys_allowance(last, lag, frequency):
    published = timezone.make_aware(dt.datetime.combine(last + dt.timedelta(days=lag), dt.time(12)))
    version = SimpleNamespace(
        created_at=published,
        dataset_spec=SimpleNamespace(time_column="month"),
        column_stats={"month": {"min": "1999-01-01", "max": last.isoformat()}},
    )
    fresh = describe.freshness(SimpleNamespace(update_frequency=frequency), version)
    allowed = describe.BEHIND_AFTER_DAYS.get(frequency, describe.BEHIND_AFTER_DAYS_DEFAULT)
    assert fresh.days_behind == lag and fresh.behind == (lag > allowed)
    assert fresh.time_range == {"column": "month", "from": "1999-01-01", "to": last.isoformat()}
