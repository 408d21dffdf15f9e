"""Partner queries over versions in a real S3-compatible store (SeaweedFS): read through the node's file cache.

DuckDB keeps its sandbox (no external access, no extensions): the gateway fetches a version's files
into the cache before binding, so a query reads local copies only; a cold copy is fetched, a warm
one is read without asking the store, and a store that cannot deliver is 503 dataset_unavailable.
"""

from __future__ import annotations

import json
import os

import pytest
from catalog_support import AGGREGATE_K, CHANNEL_BUYERS, approved, auth, bearer_token

from audit.models import AuditEvent
from datasets.cache import FileCache, remote_files
from datasets.spec import Mode
from datasets.storage import Store
from query import service

pytestmark = pytest.mark.slow  # a SeaweedFS server for the session

INDUSTRY_SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"
EXPECTED = [["主要消费", 3006.0], ["信息技术", 3009.0]]


@pytest.fixture
def store_url(object_store_url) -> str:
    """The catalog fixture publishes into a fresh bucket; this node's cache is private to the test."""
    return object_store_url


@pytest.fixture
def token(fund, catalog, plan):
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    approved(fund, catalog.cards, plan, [Mode.QUERY])
    return bearer_token(fund)


def post(client, token, sql):
    return client.post("/api/v1/query", {"sql": sql}, content_type="application/json", **auth(token))


def body_of(response) -> dict:
    assert response.status_code == 200, response.content
    return json.loads(b"".join(response.streaming_content) if response.streaming else response.content)


def cached_copies(catalog_dataset, store_url) -> list[str]:
    version = catalog_dataset.versions.get(number=1)
    cache = service.file_cache()
    return [
        cache.path_for(remote) for remote in remote_files(Store.from_url(store_url), version.location, version.files)
    ]


def test_a_cold_query_fetches_the_version_and_a_warm_one_needs_no_store(client, token, catalog, store_url):
    (copy,) = cached_copies(catalog.industry, store_url)
    assert not os.path.exists(copy)
    assert body_of(post(client, token, INDUSTRY_SQL))["rows"] == EXPECTED
    assert os.path.exists(copy)  # fetched whole into the cache before DuckDB bound it

    store = Store.from_url(store_url)
    version = catalog.industry.versions.get(number=1)
    store.delete_dir(store.path(version.location))  # the store loses the files: a warm read does not notice
    assert body_of(post(client, token, INDUSTRY_SQL))["rows"] == EXPECTED

    FileCache(service.file_cache().directory, max_bytes=1).evict()  # ... until the copy is evicted
    response = post(client, token, INDUSTRY_SQL)
    assert response.status_code == 503 and response.json()["error"]["code"] == "dataset_unavailable"
    assert str(store.root) not in response.content.decode()  # nothing of the store's layout reaches a partner
    event = AuditEvent.objects.filter(action="query.run").order_by("-seq").first()
    assert event.outcome == "failure" and event.details["code"] == "dataset_unavailable"


def test_aggregate_rules_hold_on_the_object_store(client, token, catalog):
    sql = "SELECT channel, COUNT(DISTINCT buyer) AS buyers FROM card_transactions GROUP BY channel"
    kept = dict(body_of(post(client, token, sql))["rows"])
    assert kept == {channel: n for channel, n in CHANNEL_BUYERS.items() if n >= AGGREGATE_K}


@pytest.mark.parametrize(
    "target",
    ["{s3}", "{copy}", "http://{endpoint}/"],
)
def test_partner_sql_reaches_neither_the_object_store_nor_the_cache_directly(
    client, token, catalog, store_url, object_store, target
):
    body_of(post(client, token, INDUSTRY_SQL))  # the copy is in the cache now
    version = catalog.industry.versions.get(number=1)
    s3 = store_url.split("?")[0] + f"/{version.location}/part-0.parquet"
    (copy,) = cached_copies(catalog.industry, store_url)
    path = target.format(s3=s3, copy=copy, endpoint=object_store.endpoint)
    for sql in (f"SELECT * FROM '{path}'", f"SELECT * FROM read_parquet('{path}')"):
        response = post(client, token, sql)
        assert response.status_code == 400, (sql, response.content)
        assert response.json()["error"]["code"] in ("file_access_not_allowed", "table_function_not_allowed")


def test_a_query_pins_its_files_until_its_result_is_read_to_the_end(client, token, catalog, store_url):
    response = post(client, token, INDUSTRY_SQL)  # started: its first batch is computed, the rest not yet read
    assert response.status_code == 200 and response.streaming
    (copy,) = cached_copies(catalog.industry, store_url)
    squeeze = FileCache(service.file_cache().directory, max_bytes=1)
    assert squeeze.evict() == [] and os.path.exists(copy)  # over the bound, but a running query reads it
    assert json.loads(b"".join(response.streaming_content))["rows"] == EXPECTED
    assert squeeze.evict() == [copy]  # the query ended: its pin is gone
