"""The partner's day in the SQL workbench, in a real browser: from sign-in to a chart of a grouped aggregate,
an exported Parquet file and a saved query, without leaving the page."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from catalog_support import approved
from partner_support import PASSWORD

from audit.models import AuditEvent
from datasets.spec import Mode
from query.models import SavedQuery

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHANNELS = "SELECT channel, COUNT(*) AS n\nFROM card_transactions\nGROUP BY channel\nORDER BY channel"


def test_from_sign_in_to_a_chart_an_export_and_a_saved_query(live_server, page, catalog, fund, bob, plan, tmp_path):
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    approved(fund, catalog.cards, plan, [Mode.QUERY])
    base = live_server.url
    external = []
    page.on("request", lambda request: None if request.url.startswith(base) else external.append(request.url))

    page.goto(f"{base}/accounts/login/?next=/workbench/")
    page.fill("#id_username", bob.username)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/workbench/")

    # A sample query from the schema panel opens in the editor and runs as shown.
    cards = page.locator("#schema-card_transactions")
    if cards.get_attribute("open") is None:
        cards.locator("summary").click()
    cards.locator("a.use-sample").first.click()
    page.wait_for_load_state()
    assert "FROM card_transactions" in page.input_value("#id_sql")
    page.click("#run-button")
    page.wait_for_selector("#result-grid")
    assert page.locator("#result-grid tbody tr").count() > 0

    # A grouped aggregate, run with Ctrl+Enter, drawn as bars.
    page.fill("#id_sql", CHANNELS)
    page.focus("#id_sql")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result-grid")
    channels = page.locator("#result-grid tbody tr").count()
    assert channels >= 2
    page.select_option("#chart-kind", "bar")
    chart = page.locator("#chart-canvas svg.result-chart")
    assert chart.get_attribute("data-kind") == "bar"
    assert chart.locator("rect").count() == channels
    assert page.locator("#chart-y").input_value() == "1"  # the count column

    # The whole result as Parquet.
    with page.expect_download() as download_info:
        page.click("button[formaction='/workbench/export'][value=parquet]")
    path = tmp_path / "export.parquet"
    download_info.value.save_as(path)
    table = pq.read_table(path)
    assert table.column_names == ["channel", "n"] and table.num_rows == channels

    # Saved, shared, at a stable URL.
    page.fill("#id_title", "Transactions by channel")
    page.check("input[name=shared]")
    page.click("fieldset.save button:has-text('Save')")
    saved = SavedQuery.objects.get()
    page.wait_for_url(f"{base}/workbench/saved/{saved.pk}/")
    assert page.locator("h1").inner_text() == "SQL workbench: Transactions by channel"
    assert page.input_value("#id_sql") == CHANNELS
    assert saved.shared and saved.owner == bob

    assert AuditEvent.objects.filter(action="query.run", actor_id=bob.username, outcome="success").count() == 3
    assert external == []


def test_an_error_points_at_its_place_and_the_keyboard_reaches_every_control(
    live_server, page, catalog, fund, bob, plan
):
    approved(fund, catalog.cards, plan, [Mode.QUERY])
    base = live_server.url
    page.goto(f"{base}/accounts/login/?next=/workbench/")
    page.fill("#id_username", bob.username)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/workbench/")
    page.fill("#id_sql", "SELECT channel,\n  SUM(nope) AS s\nFROM card_transactions\nGROUP BY channel")
    page.click("#run-button")
    error = page.locator("#query-error")
    assert "unknown_column" in error.inner_text()
    assert "Line 2, column 7" in error.inner_text()

    # Tab from the editor reaches the run button, then the export buttons.
    page.focus("#id_sql")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "run-button"

    # A phone-width window scrolls nothing sideways but the grid itself.
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
