"""Test-suite wiring: a private data directory, the database under test, and real services.

Environment switches (set by `make test` and `.ci/run`):

- VITAMIN_TEST_POSTGRES=postgres://...  run this pass against PostgreSQL. Only tests
  that touch the Django database run in that pass; the rest ran in the SQLite pass.
- VITAMIN_TEST_REDIS=redis://...        the Redis the redis-marked tests use
  (default redis://127.0.0.1:6379/15).
- VITAMIN_TEST_REQUIRE_SERVICES=1       an unreachable Redis or PostgreSQL fails the
  run instead of skipping the tests that need it (CI sets this).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testenv import POSTGRES_ADMIN_URL, POSTGRES_URL, REDIS_URL, REQUIRE_SERVICES, TEST_DATA_DIR  # noqa: I001 - first: sets the environment

# The shared fixtures (the cast tabled in catalog_support's docstring, plan, catalog, ...) reach every
# test, and so do `sharing_client` (the Delta Sharing connector's own venv, tests/sharing_support.py) and
# `object_store` (a real S3-compatible server, tests/object_store_support.py).
pytest_plugins = ["catalog_support", "sharing_support", "object_store_support"]

_DB_FIXTURES = {
    "db",
    "transactional_db",
    "live_server",
    "django_db_setup",
    "django_user_model",
    "admin_user",
    "admin_client",
}


def pytest_collection_modifyitems(config, items):
    if not POSTGRES_URL:
        return
    keep, drop = [], []
    for item in items:
        uses_db = item.get_closest_marker("django_db") or _DB_FIXTURES & set(getattr(item, "fixturenames", ()))
        (keep if uses_db else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _unavailable(what: str, error: Exception):
    message = f"{what} is not reachable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return TEST_DATA_DIR


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL server URL for tests that need PostgreSQL itself (connectors, triggers)."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL}", exc)
    return POSTGRES_ADMIN_URL


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright (Playwright's own browser download cannot work offline)."""
    if not Path(CHROMIUM).exists():
        _unavailable("Chromium (/usr/bin/chromium; apt-get install chromium)", FileNotFoundError(CHROMIUM))
    # Playwright's sync API runs an event loop in this thread; the live server's ORM calls happen
    # in its own threads, but fixtures that touch the ORM here would otherwise be refused.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    page = context.new_page()
    yield page
    context.close()
