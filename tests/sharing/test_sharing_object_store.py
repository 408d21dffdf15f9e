"""Delta Sharing on an S3-compatible store (a real SeaweedFS): files come straight from the store through pre-signed
URLs."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
import requests
from catalog_support import approved, auth, bearer_token

from audit.models import AuditEvent
from datasets.spec import Mode
from datasets.storage import Store
from quotas.service import Window, peek

pytestmark = pytest.mark.slow  # a SeaweedFS server for the session

TABLE = "/delta-sharing/shares/vitamin/schemas/industry_indicators/tables/industry_prosperity_monthly"


@pytest.fixture
def store_url(object_store_url) -> str:
    """The catalog fixture publishes straight into a fresh store on the S3 server (tests/object_store_support.py)."""
    return object_store_url


def test_a_query_on_an_object_store_hands_out_presigned_urls_charged_at_once(
    client, fund, catalog, plan, store_url, object_store
):
    subscription = approved(fund, catalog.industry, plan, [Mode.QUERY, Mode.DOWNLOAD])
    version = catalog.industry.versions.get(number=1)
    (entry,) = version.files
    store = Store.from_url(store_url)
    published = store.read_bytes(store.path(version.location, entry["path"]))

    token = bearer_token(fund, scopes="download")
    answer = client.post(f"{TABLE}/query", {}, content_type="application/json", **auth(token))
    assert answer.status_code == 200, answer.content
    (file,) = [json.loads(line)["file"] for line in answer.content.decode().splitlines()[2:]]
    assert file["url"].startswith(f"http://{object_store.endpoint}/{store.root}/") and "X-Amz-Signature=" in file["url"]
    fetched = requests.get(file["url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content == published
    assert pq.read_table(io.BytesIO(fetched.content)).num_rows == json.loads(file["stats"])["numRecords"] == 6
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == file["size"]
    event = AuditEvent.objects.get(action="sharing.download")
    assert event.details["presigned"] is True and event.details["bytes"] == file["size"]
