"""The portal renders in a real browser, with its own styles and no external requests."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db]


def test_home_page_and_api_docs_render_in_chromium(live_server, page):
    external = []
    page.on(
        "request", lambda request: external.append(request.url) if not request.url.startswith(live_server.url) else None
    )

    page.goto(live_server.url + "/")
    assert page.title() == "Home · Vitamin"
    assert "anonymized financial data" in page.locator("h1").inner_text()
    # The stylesheet is served locally and applied.
    assert page.locator(".topbar").evaluate("el => getComputedStyle(el).display") == "flex"

    page.click("text=Explore the API")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
    assert "Vitamin API" in page.locator(".swagger-ui .info .title").inner_text()
    assert external == []
