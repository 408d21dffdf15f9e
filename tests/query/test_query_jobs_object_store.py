"""Query jobs with an S3-compatible store (a real SeaweedFS): the result goes to the store, and a download is
checked and charged here, then redirected to a pre-signed URL of it."""

from __future__ import annotations

import io
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
import requests
from catalog_support import approved, auth, bearer_token
from django.utils import timezone

from access import subscriptions
from audit.models import AuditEvent
from datasets.spec import Mode
from datasets.storage import Store
from query.jobs import cleanup_jobs, results_dir
from query.models import QueryJob
from query.tasks import run_query_job
from quotas.service import Window, peek

pytestmark = pytest.mark.slow  # a SeaweedFS server for the session

SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


@pytest.fixture
def store_url(object_store_url) -> str:
    """The catalog fixture publishes into a fresh bucket; this node's cache is private to the test."""
    return object_store_url


@pytest.fixture
def subscription(fund, catalog, plan):
    return approved(fund, catalog.industry, plan, [Mode.QUERY])


@pytest.fixture
def token(fund, subscription):
    return bearer_token(fund)


def finished_job(client, token) -> tuple[dict, QueryJob]:
    response = client.post("/api/v1/jobs", {"sql": SQL, "format": "parquet"}, content_type="application/json",
                           **auth(token))  # fmt: skip
    assert response.status_code == 202, response.content
    job = response.json()
    run_query_job.apply(args=[job["id"]])
    return job, QueryJob.objects.get(pk=job["id"])


def stored(store_url: str, job: QueryJob) -> str:
    store = Store.from_url(store_url)
    return store.path("job-results", job.result_path)


def test_a_result_is_stored_in_the_object_store_and_served_by_a_presigned_redirect(
    client, token, subscription, store_url, object_store
):
    job, finished = finished_job(client, token)
    assert finished.state == "succeeded"
    store = Store.from_url(store_url)
    assert store.size_bytes(stored(store_url, finished)) == finished.result_bytes
    assert not list(results_dir().glob("*"))  # no local copy left on the worker

    link = client.get(job["links"]["self"], **auth(token)).json()["links"]["download"]
    for response in (client.get(job["links"]["self"] + "/result", **auth(token)), client.get(link)):
        assert response.status_code == 302
        url = response["Location"]
        assert url.startswith(f"http://{object_store.endpoint}/") and "X-Amz-Signature=" in url
        fetched = requests.get(url, timeout=30)
        assert fetched.status_code == 200 and len(fetched.content) == finished.result_bytes
        assert pq.read_table(io.BytesIO(fetched.content)).num_rows == 2
    # Charged in full before each redirect (the URL serves any range of the file), and audited.
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == 2 * finished.result_bytes
    events = AuditEvent.objects.filter(action="query.job_download", outcome="success")
    assert {event.details["via"] for event in events} == {"api", "link"}
    assert all(event.details["presigned"] is True for event in events)

    head = client.head(job["links"]["self"] + "/result", **auth(token))
    assert head.status_code == 200 and int(head["Content-Length"]) == finished.result_bytes


def test_grants_are_checked_before_any_url_is_handed_out(client, token, subscription, store_url, olga):
    job, _ = finished_job(client, token)
    subscriptions.revoke(subscription, by=olga, reason="Contract ended.")
    response = client.get(job["links"]["self"] + "/result", **auth(token))
    assert response.status_code == 403 and response.json()["error"]["code"] == "subscription_revoked"
    assert "Location" not in response and b"X-Amz" not in response.content
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == 0


def test_an_expired_result_is_gone_from_the_object_store(client, token, store_url):
    job, finished = finished_job(client, token)
    store = Store.from_url(store_url)
    QueryJob.objects.filter(pk=finished.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(job["links"]["self"] + "/result", **auth(token))
    assert response.status_code == 410 and response.json()["error"]["code"] == "result_expired"
    assert not store.exists(stored(store_url, finished))

    _, other = finished_job(client, token)
    QueryJob.objects.filter(pk=other.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert store.exists(stored(store_url, other))
    cleanup_jobs()
    assert not store.exists(stored(store_url, other))
    assert QueryJob.objects.get(pk=other.pk).result_path == ""
