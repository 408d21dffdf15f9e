"""Usage on the partner's subscription pages: the numbers usage_report gives, in human units, against the plan's
daily limits, with what happens at each limit as the metering paths enforce it."""

from __future__ import annotations

import re

import pytest
from catalog_support import approved, auth, bearer_token
from django.utils import timezone

from access import metering, service
from access.plan_terms import METRIC_WORDS, METRICS_BY_MODE, daily_term, metrics_for, plan_terms
from access.usage import CHART_DAYS, subscription_usage, usage_report
from datasets.query.limits import CHARGED_AFTER_USE, DAILY_METRICS
from portal.templatetags.units import human
from quotas.models import UsageDaily
from quotas.windows import usage_day

INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


@pytest.fixture
def subscription(fund, catalog, plan):
    return approved(fund, catalog.industry, plan, ["query"])


def run_queries(client, fund, count: int) -> None:
    token = bearer_token(fund)
    for _ in range(count):
        response = client.post("/api/v1/query", {"sql": INDUSTRY_SQL}, content_type="application/json", **auth(token))
        assert response.status_code == 200
        b"".join(response.streaming_content)  # the query's end charges its rows and bytes


def usage_block(html: str, metric: str) -> str:
    match = re.search(rf'<article class="usage-metric" id="usage-{metric}">(.*?)</article>', html, re.S)
    assert match, f"no usage block for {metric}"
    return match.group(1)


def text_of(block: str, css_class: str) -> str:
    return re.search(rf'<span class="{css_class}">([^<]*)</span>', block).group(1)


def test_the_subscription_page_shows_todays_usage_as_the_usage_report_counts_it(client, fund, alice, subscription):
    run_queries(client, fund, 3)
    today = usage_day(timezone.now())
    (report,) = usage_report([subscription], today, today)
    counted = report["days"][0]["metrics"]
    assert counted["queries"]["used"] == 3 and counted["rows_returned"]["used"] == 6, "the queries were charged"

    client.force_login(alice)
    html = client.get(f"/subscriptions/{subscription.pk}/").content.decode()
    assert metrics_for(["query"]) == ["queries", "rows_returned", "bytes_scanned", "bytes_downloaded"]
    for metric in metrics_for(["query"]):
        block = usage_block(html, metric)
        unit = daily_term(metric).unit
        assert text_of(block, "used-today") == human(counted[metric]["used"], unit)
        assert text_of(block, "daily-limit") == human(counted[metric]["limit"], unit)
        assert text_of(block, "used-month") == human(counted[metric]["used"], unit), "all of it was today"
        assert daily_term(metric).at_limit in block
        assert block.count("<rect") == CHART_DAYS, "one column per day of the chart"
    queries = usage_block(html, "queries")
    assert "3 used today of" in re.sub(r"<[^>]+>", "", queries) and 'aria-valuenow="3"' in queries
    assert "1,000,000,000" not in html and "953.7 MB" in html, "the plan's 10^9 bytes read in human units"
    assert "no monthly limit" in html


def test_the_page_reads_the_same_days_as_the_usage_api(client, fund, subscription):
    run_queries(client, fund, 2)
    usage = {each.metric: each for each in subscription_usage(subscription)}
    body = client.get("/api/v1/usage", **auth(bearer_token(fund))).json()
    (row,) = [item for item in body["subscriptions"] if item["subscription"] == subscription.pk]
    api_today = row["days"][-1]["metrics"]
    for metric, each in usage.items():
        assert each.used_today == api_today[metric]["used"] and each.daily_limit == api_today[metric]["limit"]
        assert len(each.days) == CHART_DAYS and each.days[-1] == (usage_day(timezone.now()), each.used_today)


def test_with_redis_today_is_read_from_the_live_counters_before_any_rollup(
    client, fund, alice, subscription, redis_quotas
):
    run_queries(client, fund, 2)
    assert not UsageDaily.objects.exists(), "nothing rolled up yet"
    client.force_login(alice)
    html = client.get(f"/subscriptions/{subscription.pk}/").content.decode()
    assert text_of(usage_block(html, "queries"), "used-today") == "2"
    assert text_of(usage_block(html, "rows_returned"), "used-today") == "4"


def test_the_list_shows_the_metric_nearest_its_limit_today(client, fund, alice, subscription):
    run_queries(client, fund, 2)  # 2 of 100 queries, 4 of 1,000 rows: queries is nearest
    client.force_login(alice)
    html = client.get("/subscriptions/").content.decode()
    row = re.search(rf'<tr id="subscription-{subscription.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "queries per day: 2 of 100" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", row))


def test_another_institutions_member_sees_no_usage(client, dave, bank, subscription):
    client.force_login(dave)
    assert client.get(f"/subscriptions/{subscription.pk}/").status_code in (403, 404)


def test_what_happens_at_a_limit_follows_how_the_metric_is_charged():
    from query.service import _CHARGED_BEFORE

    assert set(METRIC_WORDS) == set(DAILY_METRICS)
    checked_before_charged_after = {metric for metric, amount in _CHARGED_BEFORE.items() if amount == 0}
    assert checked_before_charged_after == CHARGED_AFTER_USE, "the query service and the page tell the same rule"
    for metric in DAILY_METRICS:
        sentence = daily_term(metric).at_limit
        assert ("crosses the daily limit completes" in sentence) == (metric in CHARGED_AFTER_USE)
        assert ("refused whole before any work" in sentence) == (metric not in CHARGED_AFTER_USE)


def test_a_page_shows_the_metrics_of_the_subscriptions_modes_and_any_other_it_used(
    client, fund, dave, bank, alice, catalog, plan, subscription
):
    lookup = approved(bank, catalog.credit, plan, ["lookup"])
    client.force_login(dave)
    html = client.get(f"/subscriptions/{lookup.pk}/").content.decode()
    assert re.findall(r'id="usage-([a-z_]+)"', html) == ["lookups", "cohort_customers"]
    assert 'id="term-max_query_seconds"' not in html, "no query limits on a lookup subscription"

    client.force_login(alice)
    assert 'id="usage-lookups"' not in client.get(f"/subscriptions/{subscription.pk}/").content.decode()
    metering.charge(service.ensure(fund, catalog.industry, "query"), "lookups", 5)  # charged, so it is shown
    block = usage_block(client.get(f"/subscriptions/{subscription.pk}/").content.decode(), "lookups")
    assert text_of(block, "used-today") == "5"


def test_every_daily_metric_is_charged_by_some_mode():
    assert {metric for metrics in METRICS_BY_MODE.values() for metric in metrics} == set(DAILY_METRICS)


def test_plan_terms_cover_every_limit(plan):
    terms = plan_terms(plan.limits())
    assert [item.term.name for item in terms][: len(DAILY_METRICS)] == list(DAILY_METRICS.values())
    assert {item.term.name for item in terms} == set(plan.limits().to_dict())
    assert all(item.term.at_limit for item in terms)
