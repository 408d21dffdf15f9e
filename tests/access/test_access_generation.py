"""The access generation: access reads are cached per process, and every change is still seen by the next request.

The cache may only ever answer as the database would: these tests change what access reads
through every kind of write (the ORM, a queryset update, raw SQL, a new row) and check that the
very next answer is the fresh one, including a property test over random sequences of changes.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from catalog_support import approved, auth, bearer_token, industry_table, publish_table
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from access import service
from access.apps import _restore_access_generation
from access.models import AccessGeneration, Subscription
from catalog import models as catalog_models
from datasets.spec import Mode
from institutions.models import InstitutionStatus
from oauth import authentication
from oauth.credentials import hash_secret
from oauth.models import Token
from vitamin import access_generation as generation

INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"
CACHED_LOOKUPS = [
    authentication._TOKEN_BY_HASH,
    service._SUBSCRIPTION_BY_SLUG,
    service._SUBSCRIPTION_BY_DATASET_ID,
    catalog_models._LATEST_PUBLISHED,
]


@pytest.fixture
def subscription(fund, catalog, plan) -> Subscription:
    return approved(fund, catalog.industry, plan, [Mode.QUERY, Mode.DOWNLOAD])


@pytest.fixture
def token(fund, subscription) -> str:
    return bearer_token(fund)


def query(client, token):
    return client.post("/api/v1/query", {"sql": INDUSTRY_SQL}, content_type="application/json", **auth(token))


def consumed(response) -> int:
    if response.status_code == 200:
        b"".join(response.streaming_content)  # the query's end is recorded
    return response.status_code


def value() -> int:
    return AccessGeneration.objects.get(id=1).value


def forget_cached_rows() -> None:
    for lookup in CACHED_LOOKUPS:
        with lookup._rows_lock:
            lookup._rows.clear()


# -- the triggers ------------------------------------------------------------------------------------


def test_migrate_installs_the_triggers_and_the_row(db):
    assert generation.installed(connection)
    assert AccessGeneration.objects.filter(id=1).exists()


def test_the_cached_lookups_read_only_tables_whose_writes_change_the_generation(db):
    """A lookup that joins a table without the trigger could serve a stale row: none may."""
    for lookup in CACHED_LOOKUPS:
        sql, _ = lookup._template().query.get_compiler(using="default").as_sql()
        tables = set(re.findall(r'(?:FROM|JOIN) "(\w+)"', sql))
        assert tables and tables <= set(generation.TABLES), (lookup, tables - set(generation.TABLES))


@pytest.mark.parametrize("table", generation.TABLES)
def test_an_update_of_any_row_of_an_access_table_changes_the_generation(table, token, catalog):
    before = value()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET id = id WHERE id = (SELECT min(id) FROM {table})")  # noqa: S608
        assert cursor.rowcount == 1
    assert value() != before


def test_inserts_and_deletes_change_the_generation(fund, catalog, plan, token):
    before = value()
    extra = bearer_token(fund)
    after_insert = value()
    Token.objects.filter(access_token_hash=hash_secret(extra)).delete()
    assert len({before, after_insert, value()}) == 3


def test_a_write_that_rolls_back_leaves_the_generation_as_it_was(fund, token):
    from django.db import transaction

    before = value()
    with pytest.raises(RuntimeError), transaction.atomic():
        Token.objects.update(revoked_reason="x")
        raise RuntimeError
    assert value() == before


# -- every change is seen by the next request ----------------------------------------------------------


def test_a_token_revoked_by_a_queryset_update_is_refused_on_the_next_request(client, token):
    assert consumed(query(client, token)) == 200  # the token, subscription and version rows are cached now
    Token.objects.filter(access_token_hash=hash_secret(token)).update(revoked_at=timezone.now())
    assert consumed(query(client, token)) == 401


def test_an_institution_suspended_by_raw_sql_is_refused_on_the_next_request(client, token, fund):
    assert consumed(query(client, token)) == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE institutions_institution SET status = %s WHERE id = %s", [InstitutionStatus.SUSPENDED, fund.pk]
        )
    response = query(client, token)
    assert response.status_code == 401 and "not active" in response.json()["error"]["message"]


def test_a_subscription_revoked_by_raw_sql_is_denied_on_the_next_request(client, token, subscription):
    assert consumed(query(client, token)) == 200
    with connection.cursor() as cursor:
        cursor.execute("UPDATE access_subscription SET status = %s WHERE id = %s", ["revoked", subscription.pk])
    response = query(client, token)
    assert response.status_code == 403 and response.json()["error"]["code"] == "subscription_revoked"


def test_a_new_version_is_read_by_the_next_request(client, token, catalog, store_url):
    first = query(client, token)
    assert consumed(first) == 200
    newer = publish_table(catalog.industry, industry_table(), store_url)
    second = query(client, token)
    assert consumed(second) == 200
    assert second["X-Vitamin-Versions"] == f"industry_prosperity_monthly={newer.number}"
    assert first["X-Vitamin-Versions"] != second["X-Vitamin-Versions"]


def test_expiry_needs_no_write_it_is_compared_with_the_clock_at_each_use(fund, catalog, subscription):
    assert service.allowed(fund, catalog.industry, "query")  # cached now
    later = subscription.expires_at + timedelta(seconds=1)
    assert service.denial_code(fund, catalog.industry, "query", now=later) == "subscription_expired"


def test_a_request_reads_the_generation_once(client, token):
    consumed(query(client, token))
    with CaptureQueriesContext(connection) as captured:
        assert consumed(query(client, token)) == 200
    reads = [q["sql"] for q in captured.captured_queries if "access_accessgeneration" in q["sql"]]
    assert len(reads) == 1


# -- fail-safe ------------------------------------------------------------------------------------------


def test_without_the_triggers_nothing_is_cached(fund, catalog, subscription):
    generation.drop(connection)
    generation.forget_verification()
    try:
        assert generation.current() is None
        assert service.allowed(fund, catalog.industry, "query")
        # No trigger changes the generation now: only not caching keeps this answer fresh.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE access_subscription SET status = %s WHERE id = %s", ["revoked", subscription.pk])
        assert service.denial_code(fund, catalog.industry, "query") == "subscription_revoked"
    finally:
        generation.install(connection)
        generation.forget_verification()


def test_without_the_row_nothing_is_cached(fund, catalog, subscription):
    AccessGeneration.objects.all().delete()
    assert generation.current() is None
    assert service.allowed(fund, catalog.industry, "query")
    Subscription.objects.filter(pk=subscription.pk).update(status="revoked")
    assert service.denial_code(fund, catalog.industry, "query") == "subscription_revoked"


def test_after_migrate_or_flush_the_triggers_and_the_row_are_back(db):
    from django.apps import apps

    generation.drop(connection)
    AccessGeneration.objects.all().delete()
    _restore_access_generation(sender=apps.get_app_config("access"), using="default")
    assert generation.installed(connection)
    assert generation.current() is not None


# -- the property: the cached answer is always the fresh one ------------------------------------------

CHANGES = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "subscription_status",
                "subscription_expiry",
                "subscription_modes",
                "institution_status",
                "dataset_active",
                "token_revoked",
                "new_version",
                "retire_latest",
            ]
        ),
        st.sampled_from(["orm", "update", "sql"]),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=10,
)


def _apply(change: str, path: str, choice: int, *, fund, catalog, subscription, token_hash, store_url) -> None:
    now = timezone.now()
    if change == "subscription_status":
        table, key, column, new = (
            "access_subscription",
            subscription.pk,
            "status",
            ["approved", "revoked", "requested", "expired"][choice],
        )
    elif change == "subscription_expiry":
        table, key, column, new = "access_subscription", subscription.pk, "expires_at", now + timedelta(days=choice - 1)
    elif change == "subscription_modes":
        modes = [["query"], ["download"], ["query", "download"], []][choice]
        table, key, column, new = "access_subscription", subscription.pk, "modes", modes
    elif change == "institution_status":
        table, key, column, new = "institutions_institution", fund.pk, "status", ["approved", "suspended"][choice % 2]
    elif change == "dataset_active":
        table, key, column, new = "catalog_dataset", catalog.industry.pk, "is_active", choice % 2 == 0
    elif change == "token_revoked":
        token = Token.objects.get(access_token_hash=token_hash)
        table, key, column, new = "oauth_token", token.pk, "revoked_at", None if choice % 2 else now
    elif change == "new_version":
        publish_table(catalog.industry, industry_table(), store_url)
        return
    else:  # retire_latest: the newest published version is retired
        latest = catalog.industry.versions.filter(status="published").order_by("-number").first()
        if latest is None:
            return
        table, key, column, new = "catalog_datasetversion", latest.pk, "status", "retired"
    model = {
        "access_subscription": Subscription,
        "institutions_institution": type(fund),
        "catalog_dataset": type(catalog.industry),
        "oauth_token": Token,
        "catalog_datasetversion": catalog_models.DatasetVersion,
    }[table]
    if path == "orm":
        row = model.objects.get(pk=key)
        setattr(row, column, new)
        row.save()
    elif path == "update":
        model.objects.filter(pk=key).update(**{column: new})
    else:
        field = model._meta.get_field(column)
        stored = field.get_db_prep_save(new, connection)
        if column == "modes":
            stored = json.dumps(new)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [stored, key])  # noqa: S608


def _answers(fund, catalog, token_hash) -> tuple:
    token = authentication._TOKEN_BY_HASH.first(token_hash)
    latest = catalog_models.Dataset.objects.get(pk=catalog.industry.pk).latest_version()
    return (
        service.denial_code(fund, "industry_prosperity_monthly", "query"),
        service.denial_code(fund, catalog.industry, "download"),
        None if token is None else token.problem(),
        None if latest is None else latest.number,
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=CHANGES)
def test_cached_answers_are_always_the_fresh_ones(changes, fund, catalog, subscription, token, store_url):
    token_hash = hash_secret(token)
    for change, path, choice in changes:
        _answers(fund, catalog, token_hash)  # the rows are cached under the generation now
        _apply(
            change,
            path,
            choice,
            fund=fund,
            catalog=catalog,
            subscription=subscription,
            token_hash=token_hash,
            store_url=store_url,
        )
        cached = _answers(fund, catalog, token_hash)
        forget_cached_rows()
        assert cached == _answers(fund, catalog, token_hash), (change, path, choice)
