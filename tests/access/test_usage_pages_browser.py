"""Usage and review pages in a real browser: a partner reads its usage (chart and numbers) at a phone's width and
a desktop's, and staff decide applications with the keyboard, without the page scrolling sideways."""

from __future__ import annotations

import pytest
from catalog_support import approved, auth, bearer_token
from partner_support import make_institution, sign_in_browser

from access import subscriptions
from institutions.models import Institution, InstitutionStatus

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1"


def scrolls_sideways(page) -> list[str]:
    """[] when the page fits its width, else the elements that stick out (what to fix)."""
    return page.evaluate(
        """() => {
            const root = document.documentElement;
            if (root.scrollWidth <= root.clientWidth) return [];
            const out = [...document.querySelectorAll("body *")].filter(
                (e) => e.getBoundingClientRect().right > root.clientWidth + 0.5 && !e.closest(".scroll"));
            return out.slice(0, 12).map((e) => e.tagName + "#" + e.id + "." + (e.getAttribute("class") || "") + " " + Math.round(e.getBoundingClientRect().right));
        }"""
    )


def test_a_partner_reads_its_usage_on_a_phone_and_a_desktop(live_server, page, client, catalog, fund, alice, plan):
    subscription = approved(fund, catalog.industry, plan, ["query"])
    token = bearer_token(fund)
    for _ in range(2):
        response = client.post("/api/v1/query", {"sql": SQL}, content_type="application/json", **auth(token))
        assert response.status_code == 200
        b"".join(response.streaming_content)

    path = f"/subscriptions/{subscription.pk}/"
    page.set_viewport_size(PHONE)
    sign_in_browser(page, live_server.url, alice, path)
    queries = page.locator("#usage-queries")
    assert queries.locator(".used-today").inner_text() == "2"
    assert queries.locator(".daily-limit").inner_text() == "100"
    chart = queries.locator("svg.daily-columns")
    assert chart.is_visible() and "today 2" in chart.get_attribute("aria-label")
    assert page.locator("#usage svg.daily-columns").count() == 4, "a chart per daily metric a query is charged to"
    assert page.locator("#usage-bytes_scanned .daily-limit").inner_text() == "953.7 MB"
    assert "refused" in page.locator("#usage-queries .at-limit").inner_text()
    box = chart.bounding_box()
    assert box["width"] <= PHONE["width"], "the chart shrinks to the screen"
    overflow = scrolls_sideways(page)
    assert overflow == [], f"no horizontal scrollbar at 390 px: {overflow}"

    page.goto(f"{live_server.url}/subscriptions/")
    assert "queries per day: 2 of 100" in page.locator(f"#subscription-{subscription.pk}").inner_text()
    assert scrolls_sideways(page) == []

    page.set_viewport_size(DESKTOP)
    page.goto(f"{live_server.url}{path}")
    assert page.locator("#usage-queries .used-today").inner_text() == "2" and scrolls_sideways(page) == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_staff_decide_applications_in_bulk_with_the_keyboard(live_server, page, olga, dave, demo_datasets, viewport):
    first, second = (
        make_institution(
            f"Applicant {number} Co.",
            60 + number,
            owner=dave if number == 1 else None,
            status=InstitutionStatus.PENDING,
        )
        for number in (1, 2)
    )
    page.set_viewport_size(viewport)
    sign_in_browser(page, live_server.url, olga, "/institutions/review/")
    assert scrolls_sideways(page) == [], "the queue and its bulk bar fit the width"
    bulk = page.locator(".bulk-actions")
    assert bulk.bounding_box()["width"] <= viewport["width"]

    page.focus(f"#select-{second.pk}")
    page.keyboard.press("Space")
    assert page.is_checked(f"#select-{second.pk}") and not page.is_checked(f"#select-{first.pk}")
    page.focus("#bulk-reason")
    page.keyboard.type("Documents checked.")
    page.focus("button[value=approve-selected]")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/institutions/review/")
    assert "Approved: Applicant 2 Co." in page.locator(".messages").inner_text()
    statuses = dict(Institution.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", "status"))
    assert statuses == {first.pk: "pending", second.pk: "approved"}

    subscriptions.request_access(
        Institution.objects.get(pk=second.pk), demo_datasets.industry, modes=["query"], purpose="Index research. " * 20
    )
    page.goto(f"{live_server.url}/subscriptions/review/")
    assert scrolls_sideways(page) == []
    if viewport is DESKTOP:  # at 1280 px the request's row, its terms and the bulk bar fit without scrolling
        table = page.locator("#pending-form .scroll")
        assert table.evaluate("e => e.scrollWidth <= e.clientWidth"), "the review table fits 1280 px"
