"""Lookups answered from a version in a real S3-compatible store (SeaweedFS): the same answers as from local disk."""

from __future__ import annotations

import json

import pyarrow.fs as pafs
import pytest
from catalog_support import auth
from lookup_support import item

from datasets.storage import Store

pytestmark = pytest.mark.slow
URL = "/api/v1/datasets/credit_profiles/lookup"


@pytest.fixture
def s3_credit(credit, credit_store, object_store_url, settings):
    """The session's published credit_profiles v1, copied as it is into a fresh store on the S3 server."""
    local, remote = Store.from_url(credit_store.url), Store.from_url(object_store_url)
    location = "datasets/credit_profiles/v1"
    pafs.copy_files(
        local.path(location), remote.path(location), source_filesystem=local.fs, destination_filesystem=remote.fs
    )
    settings.STORE_URL = object_store_url
    return credit


def test_a_lookup_reads_the_version_from_the_object_store(client, s3_credit, bank_lookup, members, strangers):
    chosen = [*members[:4], strangers[0]]
    body = {"transaction_id": "tx-s3", "items": [item(person) for person in chosen]}
    response = client.post(URL, data=json.dumps(body), content_type="application/json", **auth(bank_lookup.token))
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result["status"] for result in results] == ["matched"] * 4 + ["not_found"]
    for person, result in zip(members[:4], results, strict=False):
        assert result["fields"]["credit_score"] == person.credit_score
