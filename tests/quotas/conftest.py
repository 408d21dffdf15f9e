"""Fixtures for the quota tests: each backend-agnostic test runs against both backends, for real."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from quotas.service import DatabaseBackend, RedisBackend


@pytest.fixture(autouse=True)
def _platform_time_zone(settings):
    """Pin the zone day windows are cut in, whatever VITAMIN_TIME_ZONE says."""
    settings.TIME_ZONE = "Asia/Shanghai"


@pytest.fixture(params=["database", "redis"])
def backend(request):
    if request.param == "database":
        yield DatabaseBackend()
        return
    request.getfixturevalue("redis_client")  # a flushed Redis database
    redis_backend = RedisBackend(request.getfixturevalue("redis_url"))
    yield redis_backend
    redis_backend.client.close()


@pytest.fixture
def noon() -> datetime:
    """12:00:30 UTC (20:00:30 in Shanghai): mid-minute and mid-day, far from a window edge unless a test moves it."""
    return datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def subject() -> str:
    """A fresh subject, so nothing a test sees was left by another."""
    return f"institution:{uuid.uuid4().hex[:8]}"
