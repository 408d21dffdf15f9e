"""Staff pages: one gate for all of them (sign in, else the site's 403), the landing page's counts, a dataset's
operations (runs, progress JSON, "Refresh now" through the real request path, versions with retention and pins),
and the next scheduled run by the dispatcher's own rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from catalog_support import card_transactions_table, publish_table
from django.test import Client
from django.utils import timezone
from django.utils.html import escape
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from partner_support import make_institution, make_user

from access import subscriptions
from audit.models import AuditEvent
from catalog import describe
from catalog.models import Dataset, RefreshRun
from catalog.refresh import apply_retention, store
from catalog.schedule import due, next_scheduled_at
from institutions.models import InstitutionStatus
from vitamin.staff import NOT_STAFF_MESSAGE

BRAND = '<a class="brand" href="/">Vitamin</a>'


@pytest.fixture
def mallory(db):
    return make_user("mallory@evil.example")


def staff_pages(catalog) -> list[tuple[str, str]]:
    """(method, path) of every staff-only portal page and action."""
    run = RefreshRun.objects.create(dataset=catalog.cards)
    institution = make_institution("Applicant Insurance", 77, status=InstitutionStatus.PENDING)
    return [
        ("get", "/staff/"),
        ("get", "/staff/datasets/card_transactions/"),
        ("get", f"/staff/refreshes/{run.pk}/progress/"),
        ("post", "/staff/datasets/card_transactions/refresh/"),
        ("get", "/institutions/review/"),
        ("post", f"/institutions/{institution.pk}/status/"),
        ("get", "/subscriptions/review/"),
        ("post", "/subscriptions/review/decide/"),
    ]


def test_anonymous_visitors_of_staff_pages_are_sent_to_the_sites_sign_in(client, catalog):
    for method, path in staff_pages(catalog):
        response = getattr(client, method)(path)
        assert response.status_code == 302, path
        assert response["Location"] == f"/accounts/login/?next={quote(path)}", path
    assert RefreshRun.objects.count() == 1, "only the run staff_pages made"


def test_signed_in_non_staff_get_the_sites_403_page_on_every_staff_page(client, catalog, mallory, alice, fund):
    pages = staff_pages(catalog)
    for user in (mallory, alice):  # an outsider, and a partner institution's owner
        client.force_login(user)
        for method, path in pages:
            response = getattr(client, method)(path)
            html = response.content.decode()
            assert response.status_code == 403, path
            assert BRAND in html and 'href="/catalog/">Catalog</a>' in html, f"{path}: the site's header"
            assert escape(NOT_STAFF_MESSAGE) in html, path
            assert 'href="/staff/"' not in html, "no staff link for non-staff"
    assert not RefreshRun.objects.filter(requested_by__in=[mallory.username, alice.username]).exists()
    assert not AuditEvent.objects.filter(action="dataset.refresh.request").exists()


def test_staff_pages_answer_staff(client, catalog, olga):
    client.force_login(olga)
    for method, path in staff_pages(catalog):
        if method == "get":
            assert client.get(path).status_code == 200, path
    assert 'href="/staff/">Staff</a>' in client.get("/").content.decode(), "the nav links the staff page"


def test_the_landing_page_counts_what_waits_and_what_failed_recently(client, catalog, olga, fund, plan):
    make_institution("Applicant Insurance", 77, status=InstitutionStatus.PENDING)
    make_institution("Applicant Bank", 78, status=InstitutionStatus.PENDING)
    subscriptions.request_access(fund, catalog.industry, modes=["query"], purpose="Index research.")
    now = timezone.now()
    RefreshRun.objects.create(dataset=catalog.cards, status=RefreshRun.Status.RUNNING, started_at=now)
    RefreshRun.objects.create(dataset=catalog.industry, status=RefreshRun.Status.QUEUED)
    recent = RefreshRun.objects.create(
        dataset=catalog.credit, status=RefreshRun.Status.FAILED, finished_at=now - timedelta(hours=2), error="boom"
    )
    RefreshRun.objects.create(
        dataset=catalog.credit, status=RefreshRun.Status.FAILED, finished_at=now - timedelta(days=2), error="old"
    )
    client.force_login(olga)
    html = client.get("/staff/").content.decode()
    assert "<strong>2</strong> institutions waiting for review" in html
    assert "<strong>1</strong> subscription request waiting" in html
    assert '<strong>1</strong> refresh running <span class="muted">(1 queued)</span>' in html
    assert "<strong>1</strong> refresh failed in the last 24 hours" in html
    assert f'href="/staff/datasets/credit_profiles/#run-{recent.pk}"' in html and "— boom" in html
    assert "— old" not in html
    # Every dataset, with its freshness and a link to its operations page.
    for dataset in Dataset.objects.all():
        assert f'href="/staff/datasets/{dataset.slug}/"' in html
    assert 'id="dataset-stock_attention_daily"' in html and "none yet" in html
    assert 'href="/institutions/review/"' in html and 'href="/subscriptions/review/"' in html
    assert 'href="/staff/usage/"' in html and 'href="/admin/"' in html


def test_refresh_now_goes_through_the_request_path_and_is_audited(client, catalog, olga):
    client.force_login(olga)
    response = client.post("/staff/datasets/card_transactions/refresh/")
    run = RefreshRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/staff/datasets/card_transactions/#run-{run.pk}"
    assert (run.dataset, run.trigger, run.requested_by, run.status) == (
        catalog.cards,
        RefreshRun.Trigger.MANUAL,
        olga.username,
        RefreshRun.Status.QUEUED,
    )
    assert run.task_id, "queued on the workers, like the admin action and the command"
    event = AuditEvent.objects.get(action="dataset.refresh.request")
    assert event.target == "card_transactions" and event.details["run"] == run.pk
    assert (event.actor_type, event.actor_id) == ("user", olga.username)

    html = client.get(response["Location"]).content.decode()
    assert f"Refresh of card_transactions queued (run {run.pk})." in html
    assert f'data-progress-url="/staff/refreshes/{run.pk}/progress/"' in html
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html, "works without JavaScript"


def test_refresh_now_refuses_a_post_without_csrf_and_a_get(catalog, olga):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(olga)
    refused = browser.post("/staff/datasets/card_transactions/refresh/")
    assert refused.status_code == 403
    assert BRAND in refused.content.decode() and "security token" in refused.content.decode()
    assert browser.get("/staff/datasets/card_transactions/refresh/").status_code == 405
    assert not RefreshRun.objects.exists()
    assert not AuditEvent.objects.filter(action="dataset.refresh.request").exists()


def test_refresh_now_refuses_an_inactive_dataset_and_an_unknown_one(client, catalog, olga):
    Dataset.objects.filter(pk=catalog.cards.pk).update(is_active=False)
    client.force_login(olga)
    response = client.post("/staff/datasets/card_transactions/refresh/", follow=True)
    assert "has no spec file any more" in response.content.decode()
    assert client.post("/staff/datasets/no_such_dataset/refresh/").status_code == 404
    assert not RefreshRun.objects.exists()


def test_the_progress_json_is_the_runs_own_fields(client, catalog, olga):
    started = timezone.now() - timedelta(seconds=30)
    run = RefreshRun.objects.create(
        dataset=catalog.cards,
        status=RefreshRun.Status.RUNNING,
        requested_by="olga@vitamin.example",
        started_at=started,
        heartbeat_at=started + timedelta(seconds=28),
        rows_processed=12_345,
    )
    client.force_login(olga)
    progress = client.get(f"/staff/refreshes/{run.pk}/progress/").json()
    assert progress["started_at"].endswith("+08:00"), "on the server's clock, as the page shows times"
    assert progress == {
        "id": run.pk,
        "dataset": "card_transactions",
        "status": "running",
        "status_label": "Running",
        "finished": False,
        "trigger": "manual",
        "requested_by": "olga@vitamin.example",
        "created_at": timezone.localtime(run.created_at).isoformat(),
        "started_at": timezone.localtime(started).isoformat(),
        "heartbeat_at": timezone.localtime(started + timedelta(seconds=28)).isoformat(),
        "finished_at": None,
        "rows_processed": 12_345,
        "duration_seconds": None,
        "version": None,
        "error": "",
    }
    version = catalog.cards.versions.get()
    RefreshRun.objects.filter(pk=run.pk).update(
        status=RefreshRun.Status.PUBLISHED, finished_at=started + timedelta(seconds=42), version=version
    )
    progress = client.get(f"/staff/refreshes/{run.pk}/progress/").json()
    assert (progress["finished"], progress["duration_seconds"], progress["version"]) == (True, 42.0, 1)
    assert client.get("/staff/refreshes/999999/progress/").status_code == 404


def test_a_failed_run_shows_its_whole_error_and_finished_runs_are_not_polled(client, catalog, olga):
    error = "ConnectorError: the source answered 502\n" + "x" * 2000 + "\nlast line of the error"
    failed = RefreshRun.objects.create(
        dataset=catalog.cards,
        status=RefreshRun.Status.FAILED,
        trigger=RefreshRun.Trigger.SCHEDULE,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        error=error,
    )
    client.force_login(olga)
    html = client.get("/staff/datasets/card_transactions/").content.decode()
    assert "last line of the error" in html and "x" * 2000 in html
    assert f'id="run-{failed.pk}" class="run">' in html, "a finished run has no progress URL"
    assert "<noscript>" not in html, "nothing is running: no reloading"
    assert "Schedule" in html and "scheduler" in html


def test_the_version_history_shows_retention_and_pins(client, catalog, olga, fund, bank, plan, store_url):
    cards = catalog.cards
    for _ in range(3):
        publish_table(cards, card_transactions_table(), store_url)  # v2..v4; the spec keeps 3
    first = cards.versions.get(number=1)
    pinned = subscriptions.request_access(fund, cards, modes=["query"], purpose="Backtests on v1.", plan=plan)
    subscriptions.approve(pinned, plan=plan, expires_at=timezone.now() + timedelta(days=30), pinned_version=first)
    lapsed = subscriptions.request_access(bank, cards, modes=["query"], purpose="Checks.", plan=plan)
    subscriptions.approve(lapsed, plan=plan, expires_at=timezone.now() + timedelta(days=30), pinned_version=first)
    subscriptions.revoke(lapsed, reason="Contract ended.", by=olga)
    assert apply_retention(cards, 3, store()) == [1]

    client.force_login(olga)
    html = client.get("/staff/datasets/card_transactions/").content.decode()

    def row(number: int) -> str:
        start = html.index(f'<tr id="version-{number}">')
        return html[start : html.index("</tr>", start)]

    assert "Retired" in row(1) and "files kept for pinned subscriptions" in row(1)
    assert "Demo Fund Management Co." in row(1) and "(approved, until" in row(1)
    assert "Demo Commercial Bank" in row(1) and "(revoked" in row(1), "a lapsed pin is shown, with its status"
    assert "retired when the next version is published" in row(2)
    assert "kept (one of the newest 3)" in row(3) and "kept (one of the newest 3)" in row(4)
    assert "Published" in row(4) and "Demo Fund" not in row(4)

    # Without a live pin, a retired version's files go when retention next runs.
    subscriptions.revoke(pinned, reason="Done.", by=olga)
    assert (
        "files removed when the next version is published"
        in client.get("/staff/datasets/card_transactions/").content.decode()
    )


def test_the_next_scheduled_run_follows_the_dispatchers_rule(demo_datasets):
    industry = demo_datasets.industry  # "0 4 1 * *": 04:00 on the first of each month, server time
    now = timezone.make_aware(datetime(2026, 3, 15, 12, 0))
    industry.last_scheduled_at = now
    assert next_scheduled_at(industry, now) == timezone.make_aware(datetime(2026, 4, 1, 4, 0))
    industry.last_scheduled_at = now - timedelta(days=40)  # a firing the dispatcher has not queued yet
    assert next_scheduled_at(industry, now) == now
    industry.is_active = False
    assert next_scheduled_at(industry, now) is None
    industry.is_active, industry.schedule = True, ""
    assert next_scheduled_at(industry, now) is None


def on_clock(dataset: Dataset, time_zone: str) -> Dataset:
    """The dataset with its spec's `time_zone` changed (the spec document is what the schedule is read by)."""
    dataset.spec = {**dataset.spec, "time_zone": time_zone}
    dataset.spec_hash = ""  # parsed specs are cached by fingerprint: this one is a new spec
    return dataset


def test_the_schedule_is_read_on_the_specs_clock_by_the_dispatcher_the_catalog_and_the_staff_page(demo_datasets):
    industry = on_clock(demo_datasets.industry, "Europe/London")  # "0 4 1 * *"; the server's clock is Shanghai's
    now = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    industry.last_scheduled_at = now
    london_four = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)  # 04:00 British Summer Time
    assert next_scheduled_at(industry, now) == london_four == describe.next_refresh_at(industry, now)
    shanghai_four = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)
    assert not due(industry, shanghai_four + timedelta(minutes=1)), "the server's 04:00 does not fire it"
    assert due(industry, london_four + timedelta(minutes=1))


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    schedule=st.sampled_from(["0 4 1 * *", "30 3 * * *", "*/15 * * * *", "0 9 * * 1-5", "5 0 29 2 *"]),
    time_zone=st.sampled_from(["Asia/Shanghai", "Europe/London", "America/New_York"]),
    now=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
)
def test_the_dispatcher_queues_exactly_at_the_shown_next_run(demo_datasets, schedule, time_zone, now):
    """Just after a dispatch, the page's next run is the firing after which `due` (beat's rule) turns true."""
    dataset = on_clock(demo_datasets.industry, time_zone)
    dataset.schedule = schedule
    now = timezone.make_aware(now)
    dataset.last_scheduled_at = now
    shown = next_scheduled_at(dataset, now)
    assert shown > now
    assert due(dataset, shown + timedelta(seconds=1))
    assert not due(dataset, shown - timedelta(seconds=1))
