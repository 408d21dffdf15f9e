"""The portal in Chinese in a real browser: a zh-CN browser signs in, works in the workbench at a phone's width,
and switches to English with the header's switcher (keyboard only)."""

from __future__ import annotations

import pytest
from catalog_support import approved
from partner_support import PASSWORD

from datasets.spec import Mode

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


def test_a_chinese_browser_gets_the_workbench_in_chinese_and_can_switch_to_english(
    live_server, chromium, catalog, fund, bob, plan
):
    base = live_server.url
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    context = chromium.new_context(locale="zh-CN")
    page = context.new_page()

    page.goto(f"{base}/accounts/login/?next=/workbench/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert page.locator("h1").inner_text() == "登录"
    page.fill("#id_username", bob.username)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/workbench/")
    assert page.locator("h1").inner_text().startswith("SQL 工作台")
    assert page.get_by_role("link", name="数据目录").count() == 1
    assert page.get_by_role("button", name="运行", exact=True).count() == 1

    page.fill("#id_sql", INDUSTRY_SQL)
    page.click("#run-button")
    page.wait_for_selector("#result-grid")
    assert " 行" in page.locator("#result-meta").inner_text()

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")

    switch = page.get_by_role("button", name="English")
    switch.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/workbench/"
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text().startswith("SQL workbench")
    page.goto(f"{base}/catalog/")  # the choice sticks over the browser's zh-CN
    assert page.locator("h1").inner_text() == "Dataset catalog"
    assert page.get_by_role("form", name="Language").get_by_role("button").inner_text() == "简体中文"
    context.close()
