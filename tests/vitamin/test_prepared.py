"""Prepared lookups: the same instances as the queryset they replace, and every change seen by the next call."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from catalog_support import approved, industry_table, publish_table
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access import subscriptions
from access.models import Subscription
from catalog.models import DatasetVersion
from institutions.models import Institution, InstitutionStatus
from vitamin.prepared import PreparedLookup

SUBSCRIPTION = PreparedLookup(
    lambda institution_id, slug: (
        Subscription.objects.select_related("institution", "dataset", "plan", "pinned_version")
        .filter(institution_id=institution_id, dataset__slug=slug)
        .order_by("pk")
    ),
    int,
    str,
)


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def test_a_prepared_lookup_gives_what_the_queryset_gives_with_its_related_instances(fund, catalog, plan):
    subscription = approved(fund, catalog.industry, plan, ["query"])
    expected = (
        Subscription.objects.select_related("institution", "dataset", "plan", "pinned_version")
        .filter(pk=subscription.pk)
        .get()
    )

    found = SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly")

    assert _fields(found) == _fields(expected)
    for related in ("institution", "dataset", "plan"):
        assert _fields(getattr(found, related)) == _fields(getattr(expected, related))
    assert found.pinned_version is None
    assert isinstance(found.expires_at, type(expected.expires_at)) and found.expires_at.tzinfo is not None
    assert found.dataset.spec == expected.dataset.spec  # JSON decoded as the ORM decodes it


def test_a_prepared_lookup_runs_one_query_per_call_and_keeps_nothing_it_read(fund, catalog, plan):
    subscription = approved(fund, catalog.industry, plan, ["query"])
    SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly")  # compiled

    with CaptureQueriesContext(connection) as queries:
        first = SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly")
        first.dataset, first.institution, first.plan  # noqa: B018 - already there, no query
    assert len(queries) == 1
    Subscription.objects.filter(pk=subscription.pk).update(status=Subscription.Status.REVOKED)
    Institution.objects.filter(pk=fund.pk).update(status=InstitutionStatus.SUSPENDED)

    again = SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly")
    assert again.status == Subscription.Status.REVOKED
    assert again.institution.status == InstitutionStatus.SUSPENDED
    assert first.status == Subscription.Status.APPROVED  # the earlier instance is the caller's, untouched


def test_a_prepared_lookup_finds_nothing_for_other_values(fund, bank, catalog, plan):
    approved(fund, catalog.industry, plan, ["query"])

    assert SUBSCRIPTION.first(bank.pk, "industry_prosperity_monthly") is None
    assert SUBSCRIPTION.first(fund.pk, "card_transactions") is None
    assert SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly\x00") is None
    assert SUBSCRIPTION.first(fund.pk, "\x00vitamin-prepared-1") is None  # a stand-in is not a wildcard
    with pytest.raises(ValueError):
        SUBSCRIPTION.first("not a number", "industry_prosperity_monthly")


def test_the_latest_version_is_read_at_each_call(fund, catalog, store_url):
    dataset = catalog.industry
    before = dataset.latest_version()
    newer = publish_table(dataset, industry_table(), store_url)

    latest = dataset.latest_version()
    assert latest.pk == newer.pk and latest.number == before.number + 1
    assert latest.dataset is dataset
    DatasetVersion.objects.filter(pk=newer.pk).update(status=DatasetVersion.Status.RETIRED)
    assert dataset.latest_version().pk == before.pk


@pytest.mark.django_db(transaction=True)
def test_each_thread_compiles_its_own_and_reads_the_same(fund, catalog, plan):
    subscription = approved(fund, catalog.industry, plan, ["query"], days=3)
    found, errors = [], []

    def read() -> None:
        try:
            found.append(SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly").expires_at)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert found == [subscription.expires_at] * 3
    assert abs(found[0] - (timezone.now() + timedelta(days=3))) < timedelta(minutes=1)


def test_a_prepared_lookup_takes_only_text_and_integers():
    with pytest.raises(TypeError):
        PreparedLookup(lambda moment: Subscription.objects.filter(expires_at=moment), object)


def test_every_value_must_reach_the_sql():
    ignored = PreparedLookup(lambda slug: Subscription.objects.all(), str)
    with pytest.raises(ValueError):
        ignored.first("anything")


def test_a_subscription_change_between_two_calls_is_seen(fund, catalog, plan):
    subscription = approved(fund, catalog.industry, plan, ["query"])
    assert SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly").status == Subscription.Status.APPROVED
    subscriptions.revoke(subscription, reason="Test.")
    assert SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly").status == Subscription.Status.REVOKED


def test_on_postgresql_the_lookup_is_prepared_on_the_server_once(fund, catalog, plan):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has nothing to plan again")
    approved(fund, catalog.industry, plan, ["query"])
    for _ in range(3):
        assert SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly") is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%access_subscription%"])
        assert cursor.fetchone()[0] == 1
    with CaptureQueriesContext(connection) as queries:
        SUBSCRIPTION.first(fund.pk, "industry_prosperity_monthly")
    assert len(queries) == 1  # still counted like any query
