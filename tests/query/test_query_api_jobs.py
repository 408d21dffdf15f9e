"""Query jobs: checked at submit, run by the worker's task through the same run_query, cancelled, expiring.

The Celery task is called directly (`run_query_job.apply`); the worker itself is tested elsewhere.
"""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from catalog_support import approved, auth, bearer_token, close_as_a_server_does
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access import subscriptions
from audit.models import AuditEvent
from datasets.spec import Mode
from query.models import QueryJob
from query.tasks import run_query_job

SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"


@pytest.fixture(autouse=True)
def job_results(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def subscription(fund, catalog, plan):
    return approved(fund, catalog.industry, plan, [Mode.QUERY])


@pytest.fixture
def token(fund, subscription):
    return bearer_token(fund)


def submit(client, token, sql=SQL, **body):
    return client.post("/api/v1/jobs", {"sql": sql, **body}, content_type="application/json", **auth(token))


def submitted(client, token, **body) -> dict:
    response = submit(client, token, **body)
    assert response.status_code == 202, response.content
    assert response["Location"] == response.json()["links"]["self"]
    return response.json()


def downloaded(response) -> bytes:
    """A download's bytes, read to the end (which closes the file behind it)."""
    assert response.status_code in (200, 206), response
    return b"".join(response.streaming_content)


def run_worker(job: dict) -> QueryJob:
    run_query_job.apply(args=[job["id"]])
    return QueryJob.objects.get(pk=job["id"])


def test_a_job_runs_and_its_result_downloads_in_the_requested_format(client, token):
    job = submitted(client, token, format="parquet")
    assert job["state"] == "queued" and job["links"]["result"] is None
    assert run_worker(job).state == "succeeded"
    status = client.get(job["links"]["self"], **auth(token)).json()
    assert status["state"] == "succeeded" and status["rows_written"] == 2 and status["expires_at"]
    download = client.get(status["links"]["result"], **auth(token))
    assert download.status_code == 200
    assert download["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(b"".join(download.streaming_content)))
    assert table.num_rows == 2 and table.column_names == ["csi_industry", "gmv"]
    assert AuditEvent.objects.filter(action="query.run", outcome="success").count() == 1


def test_a_bad_query_fails_at_submit(client, token):
    response = submit(client, token, sql="SELECT * FROM read_csv('/etc/passwd')")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "table_function_not_allowed"
    not_granted = submit(client, token, sql="SELECT COUNT(*) AS n FROM card_transactions")
    assert not_granted.status_code == 403 and not_granted.json()["error"]["code"] == "not_subscribed"
    assert not QueryJob.objects.exists()


def test_a_revoked_subscription_refuses_submission_and_fails_a_queued_job(client, token, subscription):
    queued = submitted(client, token)
    subscriptions.revoke(subscription, reason="Contract ended.")
    response = submit(client, token)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "subscription_revoked"
    job = run_worker(queued)
    assert (job.state, job.error_code) == ("failed", "subscription_revoked")
    assert not job.result_path
    assert client.get(queued["links"]["self"], **auth(token)).json()["error"]["code"] == "subscription_revoked"


def test_a_cancelled_queued_job_never_runs(client, token):
    job = submitted(client, token)
    cancelled = client.delete(job["links"]["self"], **auth(token))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert run_worker(job).state == "cancelled"
    assert not AuditEvent.objects.filter(action="query.start").exists()
    again = client.delete(job["links"]["self"], **auth(token))
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_only_the_owning_institution_sees_a_job(client, token, bank):
    job = submitted(client, token)
    run_worker(job)
    outsider = bearer_token(bank)
    for url in (job["links"]["self"], job["links"]["self"] + "/result"):
        response = client.get(url, **auth(outsider))
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    assert client.delete(job["links"]["self"], **auth(outsider)).status_code == 404
    assert client.get("/api/v1/jobs", **auth(outsider)).json()["count"] == 0


def test_a_result_expires(client, token):
    job = submitted(client, token, format="csv")
    run_worker(job)
    result_url = job["links"]["self"] + "/result"
    assert downloaded(client.get(result_url, **auth(token)))
    QueryJob.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client.get(result_url, **auth(token))
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "result_expired"


def test_a_result_before_the_job_finished_is_409(client, token):
    job = submitted(client, token)
    response = client.get(job["links"]["self"] + "/result", **auth(token))
    assert response.status_code == 409 and response.json()["error"]["code"] == "result_not_ready"


def test_listing_jobs_costs_the_same_queries_whatever_their_number(client, token):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/api/v1/jobs", **auth(token))
        assert response.status_code == 200
        return len(captured)

    submitted(client, token)
    one = count_queries()
    for _ in range(4):
        submitted(client, token)
    assert client.get("/api/v1/jobs", **auth(token)).json()["count"] == 5
    assert count_queries() == one


def test_cleanup_removes_expired_results_and_fails_jobs_whose_worker_died(client, token):
    from query.jobs import STALE_RUNNING, cleanup_jobs, results_dir

    finished = run_worker(submitted(client, token, format="csv"))
    result = results_dir() / finished.result_path
    assert result.exists()
    stuck = submitted(client, token)
    QueryJob.objects.filter(pk=stuck["id"]).update(state="running", started_at=timezone.now() - STALE_RUNNING * 2)

    assert cleanup_jobs() == {"expired_results": 0, "lost_jobs": 1, "partial_files": 0}
    assert result.exists()  # not expired yet
    assert QueryJob.objects.get(pk=stuck["id"]).error_code == "worker_lost"

    QueryJob.objects.filter(pk=finished.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert cleanup_jobs()["expired_results"] == 1
    assert not result.exists()


# Never ends by itself: only the plan's time limit (30 s) or a cancel stops it.
RUNAWAY = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
    "SELECT max(i) FROM r CROSS JOIN (SELECT count(*) AS n FROM industry_prosperity_monthly) AS t"
)


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_job_interrupts_its_query_mid_computation(client, token):
    from query.jobs import cancel_job, results_dir

    job = submitted(client, token, sql=RUNAWAY)

    def cancel_once_running() -> None:
        try:
            while not QueryJob.objects.filter(pk=job["id"], state="running").exists():
                time.sleep(0.05)
            time.sleep(0.5)  # inside the first batch by now
            cancel_job(QueryJob.objects.get(pk=job["id"]))
        finally:
            connection.close()

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    finished = run_worker(job)
    canceller.join()

    assert finished.state == "cancelled"
    run = AuditEvent.objects.get(action="query.run")
    assert run.outcome == "cancelled" and run.details["code"] == "query_cancelled"  # not the time limit
    assert not list(results_dir().glob("*"))  # no partial file left
    # The plan's only concurrent slot was given back: the next query runs.
    after = client.post("/api/v1/query", {"sql": SQL}, content_type="application/json", **auth(token))
    assert after.status_code == 200
    assert b"".join(after.streaming_content)  # read to the end, which gives this query's slot back too


def test_a_job_refused_a_concurrent_slot_goes_back_to_the_queue(
    client, token, subscription, settings, django_capture_on_commit_callbacks
):
    from access import metering
    from access.service import ensure

    queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    job = submitted(client, token)
    queued_messages = len(list(queue.iterdir()))
    with metering.query_slot(ensure(subscription.institution, subscription.dataset, "query")):  # the plan's only slot
        with django_capture_on_commit_callbacks(execute=True):
            waiting = run_worker(job)
    assert (waiting.state, waiting.attempts) == ("queued", 1)
    assert len(list(queue.iterdir())) == queued_messages + 1  # retried later, by a new message
    assert run_worker(job).state == "succeeded"


def test_a_job_that_waited_for_a_slot_too_long_fails_with_the_quota_error(client, token, subscription, settings):
    from access import metering
    from access.service import ensure

    settings.JOB_QUEUE_SECONDS = 0
    job = submitted(client, token)
    with metering.query_slot(ensure(subscription.institution, subscription.dataset, "query")):
        failed = run_worker(job)
    assert failed.state == "failed" and failed.error_code == "quota_exceeded"


# --- downloads: the signed link, grants checked again, bytes_downloaded, audit ---------------------


def test_a_signed_link_downloads_the_result_without_a_token(client, token, subscription):
    from quotas.service import Window, peek

    job = submitted(client, token, format="parquet")
    run_worker(job)
    links = client.get(job["links"]["self"], **auth(token)).json()["links"]
    assert links["download"].startswith("/api/v1/job-results/") and links["download_expires_at"]

    download = client.get(links["download"])  # no Authorization header

    assert download.status_code == 200, download.content
    data = b"".join(download.streaming_content)
    assert pq.read_table(io.BytesIO(data)).num_rows == 2
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == len(data)
    event = AuditEvent.objects.get(action="query.job_download")
    assert (event.actor_type, event.institution) == ("client", str(subscription.institution_id))
    assert event.details["via"] == "link" and event.details["bytes"] == len(data)
    assert event.details["datasets"] == {"industry_prosperity_monthly": 1}


def test_a_forged_or_expired_link_is_refused(client, token, monkeypatch):
    from query import jobs

    job = submitted(client, token)
    run_worker(job)
    download = client.get(job["links"]["self"], **auth(token)).json()["links"]["download"]
    other = submitted(client, token)
    prefix, signed = download.rsplit("/", 1)
    _, timestamp, signature = signed.split(":")
    other_payload = signing.dumps(other["id"], salt="vitamin.query.job-result", compress=True).split(":")[0]
    forgeries = [
        f"{prefix}/{other_payload}:{timestamp}:{signature}",  # another job under this job's signature
        f"{prefix}/{signing.dumps(other['id'], salt='vitamin.query.job-result', key='a-guessed-key')}",
        f"{prefix}/{signing.dumps(other['id'], salt='another-purpose', compress=True)}",  # signed for something else
        f"{prefix}/{other['id']}",
    ]
    for url in forgeries:
        refused = client.get(url)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "link_invalid", url

    monkeypatch.setattr(jobs, "RESULT_LINK_SECONDS", -1)
    expired = client.get(download)
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "link_expired"
    assert not AuditEvent.objects.filter(action="query.job_download", outcome="success").exists()


def test_a_subscription_revoked_after_the_job_ran_stops_its_download(client, token, subscription, olga):
    job = submitted(client, token)
    run_worker(job)
    download = client.get(job["links"]["self"], **auth(token)).json()["links"]["download"]
    subscriptions.revoke(subscription, by=olga, reason="Contract ended.")

    for response in (client.get(job["links"]["self"] + "/result", **auth(token)), client.get(download)):
        assert response.status_code == 403 and response.json()["error"]["code"] == "subscription_revoked"
    denied = AuditEvent.objects.filter(action="query.job_download", outcome="denied")
    assert denied.count() == 2 and {e.details["via"] for e in denied} == {"api", "link"}
    assert AuditEvent.objects.filter(action="grant.denied").count() == 2

    # A job finished before jobs kept the versions they read is checked on the datasets its SQL names.
    QueryJob.objects.filter(pk=job["id"]).update(datasets={})
    legacy = client.get(job["links"]["self"] + "/result", **auth(token))
    assert legacy.status_code == 403 and legacy.json()["error"]["code"] == "subscription_revoked"


def test_a_head_request_is_not_charged_as_a_download(client, token, subscription):
    from quotas.service import Window, peek

    job = submitted(client, token, format="csv")
    finished = run_worker(job)
    download = client.get(job["links"]["self"], **auth(token)).json()["links"]["download"]
    for head in (client.head(download), client.head(job["links"]["self"] + "/result", **auth(token))):
        assert head.status_code == 200 and int(head["Content-Length"]) == finished.result_bytes
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == 0
    assert not AuditEvent.objects.filter(action="query.job_download").exists()


def test_a_disabled_clients_links_stop_working(client, token, fund):
    from oauth.models import Client

    job = submitted(client, token)
    run_worker(job)
    download = client.get(job["links"]["self"], **auth(token)).json()["links"]["download"]
    Client.objects.filter(client_id=QueryJob.objects.get(pk=job["id"]).client_id).update(disabled_at=timezone.now())
    refused = client.get(download)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "link_invalid"


def test_the_daily_download_quota_bounds_result_downloads(client, token, subscription):
    from access.models import QuotaPlan

    job = submitted(client, token, format="csv")
    finished = run_worker(job)
    QuotaPlan.objects.filter(pk=subscription.plan_id).update(bytes_downloaded_per_day=finished.result_bytes * 2)
    result_url = job["links"]["self"] + "/result"
    for _ in range(2):
        assert downloaded(client.get(result_url, **auth(token)))
    third = client.get(result_url, **auth(token))
    assert third.status_code == 429 and third.json()["error"]["details"]["metric"] == "bytes_downloaded"
    assert "Retry-After" in third


def test_a_byte_range_is_served_and_only_it_is_charged(client, token, subscription):
    from quotas.service import Window, peek

    job = submitted(client, token, format="parquet")
    finished = run_worker(job)
    size = finished.result_bytes
    download = client.get(job["links"]["self"], **auth(token)).json()["links"]["download"]
    whole = b"".join(client.get(download).streaming_content)
    assert len(whole) == size
    charged = peek(subscription.quota_subject, "bytes_downloaded", Window.DAY)

    # What a Parquet reader does: the footer first (the last 8 bytes), then the rest.
    footer = client.get(download, HTTP_RANGE="Bytes=-8")  # the unit is case-insensitive
    assert footer.status_code == 206 and footer["Content-Range"] == f"bytes {size - 8}-{size - 1}/{size}"
    assert b"".join(footer.streaming_content) == whole[-8:] and whole[-4:] == b"PAR1"
    body = client.get(job["links"]["self"] + "/result", HTTP_RANGE=f"bytes=4-{size + 100}", **auth(token))
    assert body.status_code == 206 and body["Content-Length"] == str(size - 4)
    assert b"".join(body.streaming_content) == whole[4:]
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == charged + 8 + (size - 4)
    ranges = [e.details.get("range") for e in AuditEvent.objects.filter(action="query.job_download")]
    assert sorted(filter(None, ranges)) == sorted([f"{size - 8}-{size - 1}", f"4-{size - 1}"])


def test_a_result_download_cut_short_gives_back_what_was_not_sent(client, token, subscription, monkeypatch):
    from quotas.service import Window, peek
    from vitamin import ranges

    monkeypatch.setattr(ranges, "_CHUNK_BYTES", 8)
    job = submitted(client, token, format="csv")
    size = run_worker(job).result_bytes
    assert size > 3 * 8
    answer = client.get(job["links"]["self"] + "/result", **auth(token))
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == size  # charged before the first byte
    body = answer.streaming_content
    next(body), next(body)  # one chunk written, the write of the second failed: the client went away
    close_as_a_server_does(answer, monkeypatch)
    assert peek(subscription.quota_subject, "bytes_downloaded", Window.DAY) == 16  # both chunks taken
    (cut,) = AuditEvent.objects.filter(action="query.job_download_incomplete")
    assert (cut.details["bytes"], cut.details["charged"], cut.details["refunded"]) == (16, size, size - 16)
    assert cut.target == AuditEvent.objects.get(action="query.job_download").target


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=0-1,5-6", 200),  # several ranges: not served, the whole file instead
        ("items=0-1", 200),
        ("bytes=9-3", 200),  # invalid: ignored
        ("bytes=abc", 200),
        ("bytes=0-" + "9" * 4400, 200),  # too long a number: malformed, not a 500
        ("bytes=99999999-", 416),
        ("bytes=-0", 416),
    ],
)
def test_ranges_this_server_does_not_serve(client, token, header, status):
    job = submitted(client, token, format="csv")
    finished = run_worker(job)
    response = client.get(job["links"]["self"] + "/result", HTTP_RANGE=header, **auth(token))
    assert response.status_code == status
    if status == 416:
        assert response.json()["error"]["code"] == "range_not_satisfiable"
        assert response["Content-Range"] == f"bytes */{finished.result_bytes}"
    else:
        assert len(b"".join(response.streaming_content)) == finished.result_bytes
        assert response["Accept-Ranges"] == "bytes"
