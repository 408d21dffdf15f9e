"""Daily usage (UsageDaily), the read side billing and the partner usage page use, fed by both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from quotas import tasks
from quotas.models import UsageDaily
from quotas.service import (
    DatabaseBackend,
    RedisBackend,
    Window,
    consume,
    get_backend,
    refund,
    rollup_usage,
    usage,
)

pytestmark = pytest.mark.django_db

# In Shanghai (UTC+8) these fall on 10 and 11 March.
EVENING_10_MARCH = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
MORNING_11_MARCH = datetime(2026, 3, 11, 1, 0, 0, tzinfo=UTC)


def _amounts(subject: str) -> dict[tuple[date, str], int]:
    return {(row.day, row.metric): row.amount for row in usage(subject, date(2026, 1, 1), date(2026, 12, 31))}


def test_usage_counts_what_was_granted_per_local_day_minus_refunds(backend, subject):
    consume(subject, "queries", 3, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH)
    consume(subject, "queries", 8, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH)  # denied: not usage
    consume(subject, "rows", 500, 1000, Window.MINUTE, backend=backend, now=EVENING_10_MARCH)
    refund(subject, "rows", 200, Window.MINUTE, backend=backend, now=EVENING_10_MARCH)
    consume(subject, "queries", 4, 10, Window.DAY, backend=backend, now=MORNING_11_MARCH)

    rollup_usage(backend=backend, now=MORNING_11_MARCH)

    assert _amounts(subject) == {
        (date(2026, 3, 10), "queries"): 3,
        (date(2026, 3, 10), "rows"): 300,
        (date(2026, 3, 11), "queries"): 4,
    }


def test_a_metric_enforced_per_minute_and_per_day_is_metered_once(backend, subject):
    for _ in range(3):
        consume(subject, "api_calls", 1, 60, Window.MINUTE, meter=False, backend=backend, now=EVENING_10_MARCH)
        consume(subject, "api_calls", 1, 10_000, Window.DAY, backend=backend, now=EVENING_10_MARCH)
    refund(subject, "api_calls", 1, Window.MINUTE, meter=False, backend=backend, now=EVENING_10_MARCH)
    refund(subject, "api_calls", 1, Window.DAY, backend=backend, now=EVENING_10_MARCH)

    rollup_usage(backend=backend, now=EVENING_10_MARCH)

    assert _amounts(subject) == {(date(2026, 3, 10), "api_calls"): 2}


def test_pure_checks_are_not_usage(backend, subject):
    consume(subject, "queries", 0, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH)

    rollup_usage(backend=backend, now=EVENING_10_MARCH)

    assert _amounts(subject) == {}


def test_database_backend_writes_usage_in_the_consuming_transaction(subject):
    consume(subject, "queries", 2, 10, Window.DAY, backend=DatabaseBackend(), now=EVENING_10_MARCH)

    # no rollup needed, and none does anything
    assert _amounts(subject) == {(date(2026, 3, 10), "queries"): 2}
    assert rollup_usage(backend=DatabaseBackend(), now=EVENING_10_MARCH) == 0


def test_redis_usage_appears_on_rollup_and_reruns_are_harmless(redis_client, redis_url, subject):
    backend = RedisBackend(redis_url)
    consume(subject, "queries", 2, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH)
    assert _amounts(subject) == {}

    assert rollup_usage(backend=backend, now=EVENING_10_MARCH) == 1
    assert rollup_usage(backend=backend, now=EVENING_10_MARCH) == 1
    assert _amounts(subject) == {(date(2026, 3, 10), "queries"): 2}

    consume(subject, "queries", 5, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH)
    refund(subject, "queries", 1, Window.DAY, backend=backend, now=EVENING_10_MARCH)
    rollup_usage(backend=backend, now=EVENING_10_MARCH)
    assert _amounts(subject) == {(date(2026, 3, 10), "queries"): 6}


def test_redis_rollup_writes_absolute_totals(redis_client, redis_url, subject):
    backend = RedisBackend(redis_url)
    consume(subject, "queries", 4, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH)
    UsageDaily.objects.create(subject=subject, metric="queries", day=date(2026, 3, 10), amount=999)

    rollup_usage(backend=backend, now=EVENING_10_MARCH)

    assert _amounts(subject) == {(date(2026, 3, 10), "queries"): 4}


def test_redis_rollup_still_finds_days_that_ended_a_week_ago(redis_client, redis_url, subject):
    backend = RedisBackend(redis_url)
    consume(subject, "queries", 1, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH)
    consume(subject, "queries", 2, 10, Window.DAY, backend=backend, now=EVENING_10_MARCH - timedelta(days=7))

    rollup_usage(backend=backend, now=EVENING_10_MARCH)

    assert _amounts(subject) == {(date(2026, 3, 3), "queries"): 2, (date(2026, 3, 10), "queries"): 1}


def test_usage_reads_an_inclusive_day_range_and_one_metric(subject):
    for day, metric, amount in [(1, "queries", 1), (2, "queries", 2), (2, "rows", 20), (3, "queries", 3)]:
        UsageDaily.objects.create(subject=subject, metric=metric, day=date(2026, 3, day), amount=amount)
    UsageDaily.objects.create(subject="other", metric="queries", day=date(2026, 3, 2), amount=50)

    rows = usage(subject, date(2026, 3, 2), date(2026, 3, 3))

    assert [(row.day.day, row.metric, row.amount) for row in rows] == [
        (2, "queries", 2),
        (2, "rows", 20),
        (3, "queries", 3),
    ]
    assert [row.amount for row in usage(subject, date(2026, 3, 1), date(2026, 3, 31), metric="rows")] == [20]


def test_periodic_task_is_declared_with_an_expiry_shorter_than_its_interval():
    entry = tasks.PERIODIC_TASKS["quotas-rollup-usage"]

    assert entry["task"] == tasks.rollup_usage.name == "quotas.rollup_usage"
    assert entry["options"]["expires"] < entry["schedule"]


def test_rollup_task_uses_the_configured_backend(settings, redis_client, redis_url, subject):
    settings.QUOTA_BACKEND, settings.REDIS_URL = "redis", redis_url
    get_backend.cache_clear()
    try:
        assert isinstance(get_backend(), RedisBackend)
        consume(subject, "queries", 3, 10, Window.DAY)

        result = tasks.rollup_usage.apply().get()

        assert result["usage_rows"] >= 1
        today = timezone.localdate()  # yesterday too, in case the test straddles midnight
        assert [(row.metric, row.amount) for row in usage(subject, today - timedelta(days=1), today)] == [
            ("queries", 3)
        ]
    finally:
        get_backend.cache_clear()


def test_default_backend_is_the_database_once_per_process():
    get_backend.cache_clear()

    assert isinstance(get_backend(), DatabaseBackend)
    assert get_backend() is get_backend()
