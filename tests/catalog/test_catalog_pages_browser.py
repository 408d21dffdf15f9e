"""The catalog journey in a real browser: browse, open a dataset, request access, an admin approves it."""

from __future__ import annotations

import pytest
from partner_support import sign_in_browser

from access import service
from access.models import Subscription

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_browse_request_and_approve(live_server, page, catalog, fund, alice, olga, plan):
    base = live_server.url
    external = []
    page.on("request", lambda request: None if request.url.startswith(base) else external.append(request.url))

    # The fund's owner browses the catalog and filters it.
    sign_in_browser(page, base, alice, "/catalog/")
    assert page.locator(".dataset-card").count() == 7
    page.select_option("select[name=tier]", "aggregate")
    page.click("button:has-text('Search')")
    page.wait_for_url(f"{base}/catalog/?*")
    assert page.locator(".dataset-card h2").all_inner_texts() == ["Card transactions (de-identified)"]

    # The dataset page: metadata, dictionary with charts, no preview before subscribing.
    page.click("text=Card transactions (de-identified)")
    assert page.locator("h1").inner_text() == "Card transactions (de-identified)"
    assert page.locator("#dictionary svg.share-bars").count() == 9
    assert "aggregated preview" in page.locator("#sample").inner_text()

    # Request access.
    page.click("#access a:has-text('Request access')")
    page.check("input[name=modes][value=query]")
    page.select_option("#id_plan", label="standard")
    page.fill("#id_purpose", "Consumption factors for the monthly index rebalancing.")
    page.click("button:has-text('Send request')")
    assert page.locator("#subscription-status").inner_text() == "Requested"
    subscription = Subscription.objects.get()
    page.click("button:has-text('Sign out')")

    # A platform admin approves it from the review queue.
    sign_in_browser(page, base, olga, "/subscriptions/review/")
    row = page.locator(f"#review-{subscription.pk}")
    assert "Consumption factors" in row.inner_text()
    row.locator("button:has-text('Approve')").click()
    page.wait_for_url(f"{base}/subscriptions/review/")
    assert "Approved: Demo Fund Management Co. → card_transactions" in page.locator(".messages").inner_text()
    assert "No requests are waiting." in page.content()

    subscription.refresh_from_db()
    assert subscription.status == "approved" and subscription.plan == plan
    assert service.allowed(fund, "card_transactions", "query")

    # Now subscribed, the owner sees the aggregated preview, drawn as an inline chart.
    page.click("button:has-text('Sign out')")
    sign_in_browser(page, base, alice, "/catalog/card_transactions/")
    assert page.locator("#sample svg.bar-chart").count() == 1
    assert "Approved" in page.locator("#access").inner_text()
    assert external == []
