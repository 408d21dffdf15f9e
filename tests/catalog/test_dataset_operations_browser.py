"""An operator's refresh in a real browser: sign in from a staff page, open a dataset's operations, press
"Refresh now" and watch a real Celery worker build and publish the version, live on the page."""

from __future__ import annotations

import re

import pytest
from celery.contrib.testing.worker import start_worker
from partner_support import sign_in_browser
from playwright.sync_api import expect

from catalog.models import RefreshRun
from vitamin.celery import app as celery_app

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLUG = "industry_prosperity_monthly"


@pytest.fixture
def worker(settings, store_url):
    """A real worker on the embedded broker, in a thread of this process (it shares the test database)."""
    settings.DEMO_TRANSACTIONS = 20_000  # a small build of the real demo dataset
    celery_app.control.purge()  # messages other tests queued and never ran
    with start_worker(celery_app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=30):
        yield


def sign_in_through(page, base: str, path: str, user) -> None:
    """Open a staff page signed out: the site's sign-in page, then back to the page."""
    page.goto(f"{base}{path}")
    assert page.url == f"{base}/accounts/login/?next={path}", page.url
    sign_in_browser(page, base, user, path)


def test_staff_refresh_now_and_watch_it_publish(live_server, page, demo_datasets, olga, worker):
    base = live_server.url
    external, polled = [], []
    page.on("request", lambda request: None if request.url.startswith(base) else external.append(request.url))
    page.on("request", lambda request: polled.append(request.url) if "/progress/" in request.url else None)

    # A staff page sends an anonymous visitor to the site's sign-in, and back after it.
    sign_in_through(page, base, "/staff/", olga)
    assert page.locator("h1").inner_text() == "Staff"
    assert "none yet" in page.locator(f"#dataset-{SLUG}").inner_text()

    page.click(f"#datasets a:has-text('{SLUG}')")
    page.wait_for_url(f"{base}/staff/datasets/{SLUG}/")
    assert "04:00" in page.locator("#next-run").inner_text(), "the schedule's next firing: 04:00 on the 1st"
    assert "No refresh has run yet." in page.locator("#runs").inner_text()

    # Refresh now, from the keyboard.
    page.locator("#refresh-now").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/staff/datasets/{SLUG}/#run-\d+$"))
    run = RefreshRun.objects.get()
    assert f"Refresh of {SLUG} queued (run {run.pk})." in page.locator(".messages").inner_text()

    # The page follows the run until the worker has published the version.
    status = page.locator(f"#run-{run.pk} [data-field=status_label]")
    expect(status).to_have_text("Published a new version", timeout=120_000)
    assert polled, "progress came from the JSON endpoint, not from reloading alone"
    run.refresh_from_db()
    assert run.status == RefreshRun.Status.PUBLISHED and run.version.number == 1
    row = page.locator(f"#run-{run.pk}").inner_text()
    assert "Manual" in row and olga.username in row and "v1" in row
    assert page.locator(f"#run-{run.pk} [data-field=rows_processed]").inner_text() == str(run.rows_processed)
    assert run.rows_processed > 0
    assert "kept (one of the newest 12)" in page.locator("#version-1").inner_text()

    # At 1280 px and at a phone's width nothing but the tables' own scroll areas is wider than the screen.
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
        page.goto(f"{base}/staff/")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"/staff/ at {width}"
        assert "v1" in page.locator(f"#dataset-{SLUG}").inner_text()
        page.go_back()
    assert external == []


def test_without_javascript_the_page_reloads_until_the_run_finishes(live_server, chromium, demo_datasets, olga):
    run = RefreshRun.objects.create(dataset=demo_datasets.industry, requested_by=olga.username)
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in_through(page, live_server.url, f"/staff/datasets/{SLUG}/", olga)
        status = page.locator(f"#run-{run.pk} [data-field=status_label]")
        assert status.inner_text() == "Queued"
        RefreshRun.objects.filter(pk=run.pk).update(status=RefreshRun.Status.FAILED, error="the source is down")
        expect(status).to_have_text("Failed", timeout=30_000)
        assert "the source is down" in page.locator(f"#run-{run.pk}").inner_text()
    finally:
        context.close()


def test_a_signed_out_page_stops_polling_and_shows_the_sign_in(live_server, page, demo_datasets, olga):
    RefreshRun.objects.create(dataset=demo_datasets.industry, requested_by=olga.username)
    sign_in_through(page, live_server.url, f"/staff/datasets/{SLUG}/", olga)
    page.context.clear_cookies()  # the session ends (signed out elsewhere, or expired)
    page.wait_for_url(re.compile(r"/accounts/login/\?next="), timeout=30_000)
