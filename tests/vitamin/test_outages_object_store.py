"""The object store hangs (its server paused, SIGSTOP) while partners query versions not yet cached.

A wait for it is bounded by the store URL's timeouts (datasets.storage.TIMEOUT_OPTIONS), the query is a 503
`dataset_unavailable` with a `Retry-After`, queries waiting for the same file fail together instead of
one timeout after another, and when the server resumes the same query succeeds from the same process.
Against the real S3-compatible server of tests/object_store_support.py, paused and resumed (it is the
session's: every test here resumes it however it ends).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time

import pytest
from catalog_support import approved, auth, bearer_token

from audit.models import AuditEvent
from datasets.cache import CacheError, FileCache, RemoteFile
from datasets.spec import Mode
from datasets.storage import Store

pytestmark = pytest.mark.slow

TIMEOUTS = "&connect_timeout=1&request_timeout=1"  # a hung store costs a request about 3 x 1 s
INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"
WAITERS = 4


@contextlib.contextmanager
def paused(server):
    """The store's server stopped in its tracks (connections accepted by the kernel, never answered)."""
    os.killpg(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)


@pytest.fixture
def store_url(object_store_url, settings) -> str:
    """The catalog fixture publishes into a fresh bucket of the test server; the node's cache is the test's."""
    settings.STORE_URL = object_store_url + TIMEOUTS
    return settings.STORE_URL


def test_a_cold_query_while_the_store_hangs_is_a_503_and_the_same_query_succeeds_once_it_answers(
    client, fund, catalog, plan, object_store
):
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    token = bearer_token(fund)
    query = {"sql": INDUSTRY_SQL}
    with paused(object_store):
        started = time.monotonic()
        response = client.post("/api/v1/query", query, content_type="application/json", **auth(token))
        print(f"a cold query waited {time.monotonic() - started:.1f} s for the hung store")
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "dataset_unavailable"
    event = AuditEvent.objects.filter(action="query.run").order_by("-seq").first()
    assert (event.outcome, event.details["code"]) == ("failure", "dataset_unavailable")

    response = client.post("/api/v1/query", query, content_type="application/json", **auth(token))
    assert response.status_code == 200
    assert json.loads(b"".join(response.streaming_content))["rows"]


def test_queries_waiting_for_one_cold_file_fail_together_when_its_download_fails(
    object_store, object_store_keys, tmp_path, caplog
):
    store = Store.from_url(object_store.fresh_store_url() + TIMEOUTS)
    source = store.path("datasets/cold/v1", "part-000.parquet")
    with store.fs.open_output_stream(source) as out:
        out.write(os.urandom(1 << 20))
    remote = RemoteFile(source, "", 1 << 20)
    cache = FileCache(tmp_path / "cache", max_bytes=1 << 30)
    outcomes: list[BaseException | None] = []

    def pin() -> None:
        try:
            cache.pin(store, [remote]).release()
            outcomes.append(None)
        except CacheError as exc:
            outcomes.append(exc)

    caplog.set_level(logging.ERROR, logger="vitamin.cache")
    with paused(object_store):
        started = time.monotonic()
        waiters = [threading.Thread(target=pin) for _ in range(WAITERS)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        print(
            f"{WAITERS} queries waiting for one file of a hung store all answered in {time.monotonic() - started:.1f} s"
        )
    assert len(outcomes) == WAITERS and all(isinstance(outcome, CacheError) for outcome in outcomes)
    asked = [r for r in caplog.records if r.getMessage().startswith("fetching") and "failed" in r.getMessage()]
    assert len(asked) == 1  # one waited for the store; the others learnt from its failure instead of asking again

    with cache.pin(store, [remote]):  # the store answers again: the next query fetches the file
        assert os.path.getsize(cache.path_for(remote)) == 1 << 20
