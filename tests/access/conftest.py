"""Fixtures shared by the access tests."""

from __future__ import annotations

import pytest

from quotas.service import get_backend


@pytest.fixture
def redis_quotas(settings, redis_client, redis_url):
    """The Redis quota backend for the test (a real Redis; skipped when none answers)."""
    settings.QUOTA_BACKEND = "redis"
    settings.REDIS_URL = redis_url
    get_backend.cache_clear()
    yield
    get_backend.cache_clear()
