"""The staff usage page: usage across institutions and datasets, top consumers, for platform staff only."""

from __future__ import annotations

import re

import pytest
from catalog_support import approved, auth, bearer_token
from django.utils import timezone
from partner_support import make_institution, make_user

from access.usage import CHART_DAYS, usage_across, usage_report
from quotas.windows import usage_day

URL = "/staff/usage/"


def run_query(client, token, sql: str) -> None:
    response = client.post("/api/v1/query", {"sql": sql}, content_type="application/json", **auth(token))
    assert response.status_code == 200
    b"".join(response.streaming_content)


@pytest.fixture
def used(client, fund, bank, catalog, plan):
    """The fund ran three queries on its subscription, the bank one on its own."""
    fund_subscription = approved(fund, catalog.industry, plan, ["query"])
    bank_subscription = approved(bank, catalog.industry, plan, ["query"])
    fund_token, bank_token = bearer_token(fund), bearer_token(bank)
    for _ in range(3):
        run_query(client, fund_token, "SELECT csi_industry, SUM(gmv) FROM industry_prosperity_monthly GROUP BY 1")
    run_query(client, bank_token, "SELECT COUNT(*) FROM industry_prosperity_monthly")
    return fund_subscription, bank_subscription


def test_only_staff_see_usage_across_institutions(client, alice, used):
    assert client.get(URL).status_code == 302, "anonymous visitors are sent to sign in"
    for person in (alice, make_user("mallory@example.com")):
        client.force_login(person)
        response = client.get(URL)
        assert response.status_code == 403 and "Demo Commercial Bank" not in response.content.decode()


def test_staff_see_each_institution_and_dataset_today_and_the_top_consumers(client, olga, fund, bank, used):
    today = usage_day(timezone.now())
    reports = {row["subscription"]: row for row in usage_report(list(used), today, today)}
    fund_rows = reports[used[0].pk]["days"][0]["metrics"]["rows_returned"]["used"]
    assert reports[used[1].pk]["days"][0]["metrics"]["queries"]["used"] == 1

    client.force_login(olga)
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    fund_row = re.search(rf'<tr id="institution-{fund.pk}">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'<td class="num">(.*?)</td>', fund_row)
    assert fund.legal_name in fund_row and cells[:2] == ["3 · 3", f"{fund_rows} · {fund_rows}"]
    dataset_row = re.search(
        r'<tr id="dataset-\d+"><th scope="row">industry_prosperity_monthly</th>(.*?)</tr>', html, re.S
    )
    assert dataset_row and "4 · 4" in dataset_row.group(1), "both institutions' queries on the dataset"

    queries = html.split('id="metric-queries"')[1].split("</section>")[0]
    top = re.findall(r"<li>(.*?)</li>", queries)
    assert top == [f"{fund.legal_name}: 3", f"{bank.legal_name}: 1"], "the biggest consumer first"
    assert queries.count('class="chart daily-columns"') == 1 and queries.count("<rect") >= CHART_DAYS
    assert "Nobody used any." in html.split('id="metric-lookups"')[1].split("</section>")[0]


def test_the_totals_add_up_the_usage_report(used):
    across = usage_across()
    assert across.per_day["queries"][-1] == 4 and sum(across.per_day["queries"]) == 4
    assert len(across.days) == CHART_DAYS and across.days[-1] == usage_day(timezone.now())
    assert [each.period["queries"] for each in across.top("queries")] == [3, 1]
    assert across.top("lookups") == []


def test_names_reach_the_page_and_its_charts_escaped(client, olga, catalog, plan):
    hostile = make_institution('<script>alert("x")</script> Co.', 77)
    approved(hostile, catalog.industry, plan, ["query"])
    run_query(client, bearer_token(hostile), "SELECT COUNT(*) FROM industry_prosperity_monthly")
    client.force_login(olga)
    html = client.get(URL).content.decode()
    assert "<script>alert" not in html
    assert html.count("&lt;script&gt;alert(") >= 3, "in the table, the top list and the chart's labels"
