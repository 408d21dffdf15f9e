"""What the Redis backend leaves in Redis: prefixed keys that all expire, so nothing grows forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from quotas.service import RedisBackend, Window, consume, release, reserve

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_backend(redis_client, redis_url):
    backend = RedisBackend(redis_url)
    yield backend
    backend.client.close()


def _ttls_seconds(redis_client) -> dict[str, float]:
    return {key.decode(): redis_client.pttl(key) / 1000 for key in redis_client.scan_iter()}


def test_every_key_is_prefixed_and_expires(redis_backend, redis_client):
    now = timezone.now()
    consume("fund", "queries", 1, 10, Window.MINUTE, backend=redis_backend, now=now)
    consume("fund", "rows", 1, 10, Window.DAY, backend=redis_backend, now=now)
    reserve("fund", "concurrent_queries", 2, 30, backend=redis_backend, now=now)

    ttls = _ttls_seconds(redis_client)

    assert len(ttls) == 4  # two counters, one usage hash, one lease set
    assert all(key.startswith("vitamin:quota:") for key in ttls)
    assert all(ttl > 0 for ttl in ttls.values()), ttls


def test_keys_live_as_long_as_they_can_matter(redis_backend, redis_client):
    # 12:00:30 UTC on 10 March: 30 s left in the minute, 3 h 59 min 30 s left in the Shanghai day.
    now = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
    consume("fund", "queries", 1, 10, Window.MINUTE, backend=redis_backend, now=now)
    reserve("fund", "concurrent_queries", 2, 30, backend=redis_backend, now=now)
    reserve("fund", "concurrent_queries", 2, 90, backend=redis_backend, now=now)

    ttls = {key.split(":")[2]: ttl for key, ttl in _ttls_seconds(redis_client).items()}
    expected = {
        "counter": timedelta(seconds=30) + timedelta(minutes=10),  # the window, plus ten minutes for late refunds
        "usage": timedelta(hours=3, minutes=59, seconds=30) + timedelta(days=7),  # the day, plus a week for rollups
        "lease": timedelta(seconds=90),  # until the last lease lapses
    }

    # Expiries are relative to the caller's `now`; a minute of slack covers the time this test takes.
    for kind, lifetime in expected.items():
        assert lifetime.total_seconds() - 60 < ttls[kind] <= lifetime.total_seconds(), kind


def test_a_released_lease_leaves_the_set(redis_backend, redis_client):
    lease = reserve("fund", "concurrent_queries", 2, 30, backend=redis_backend)

    release(lease, backend=redis_backend)

    assert redis_client.zcard("vitamin:quota:lease:concurrent_queries:fund") == 0


def test_pure_checks_and_denials_write_nothing(redis_backend, redis_client):
    consume("fund", "queries", 0, 10, Window.DAY, backend=redis_backend)
    consume("fund", "queries", 11, 10, Window.DAY, backend=redis_backend)

    assert list(redis_client.scan_iter()) == []
