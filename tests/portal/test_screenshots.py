"""The portal's main pages in a real browser, each checked and photographed: `make screenshots` writes them to
docs/images/portal/ (VITAMIN_SCREENSHOTS_DIR); `make test` takes them too, into a temporary folder.

Each page must answer 200, have a heading, ask nothing of another host, and fit 1280 px without sideways
scrolling; the workbench is taken at a phone width too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from catalog_support import approved
from partner_support import sign_in_browser

from datasets.spec import Mode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHANNELS = "SELECT channel, COUNT(*) AS transactions\nFROM card_transactions\nGROUP BY channel\nORDER BY channel"


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("VITAMIN_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def take(page, base: str, path: str, name: str, shots: Path, *, width: int = 1280) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    if path:
        response = page.goto(f"{base}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
    assert page.locator("h1").count() >= 1, path
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), path
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_the_main_pages(live_server, chromium, catalog, fund, alice, bob, olga, plan, shots):
    base = live_server.url
    cards = approved(fund, catalog.cards, plan, [Mode.QUERY])
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    context = chromium.new_context(device_scale_factor=1)
    page = context.new_page()
    external = []
    page.on("request", lambda request: None if request.url.startswith(base) else external.append(request.url))

    sign_in_browser(page, base, bob, "/workbench/")
    page.fill("#id_sql", CHANNELS)
    page.click("#run-button")
    page.wait_for_selector("#chart-canvas svg")
    take(page, base, "", "workbench", shots)
    take(page, base, "", "workbench-phone", shots, width=390)
    take(page, base, "/catalog/", "catalog", shots)
    take(page, base, "/catalog/card_transactions/", "dataset", shots)
    take(page, base, f"/subscriptions/{cards.pk}/", "subscription-usage", shots)
    page.click("button:has-text('Sign out')")

    sign_in_browser(page, base, alice, f"/institutions/{fund.pk}/audit/")
    take(page, base, "", "audit-trail", shots)
    page.click("button:has-text('Sign out')")

    sign_in_browser(page, base, olga, "/staff/")
    take(page, base, "", "staff", shots)
    take(page, base, "/staff/datasets/card_transactions/", "dataset-operations", shots)
    take(page, base, "/staff/usage/", "staff-usage", shots)
    take(page, base, "/subscriptions/review/", "subscription-review", shots)
    take(page, base, "/audit/search/?action=query.run", "audit-search", shots)
    context.close()

    assert external == []
    assert len(list(shots.glob("*.png"))) >= 11
