"""Jobs whose worker died: queued again once their heartbeat stops (`query.jobs.requeue_lost_jobs`), failed once they
waited too long; and a run that lost its job to another stops and changes nothing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from catalog_support import approved, auth, bearer_token
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from datasets.spec import Mode
from query.jobs import LOST_AFTER, requeue_lost_jobs, results_dir
from query.models import QueryJob
from query.tasks import run_query_job

SQL = "SELECT csi_industry, SUM(gmv) AS gmv FROM industry_prosperity_monthly GROUP BY 1 ORDER BY 1"
# Never ends by itself: only the plan's time limit (30 s) or a cancel stops it.
RUNAWAY = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
    "SELECT max(i) FROM r CROSS JOIN (SELECT count(*) AS n FROM industry_prosperity_monthly) AS t"
)


@pytest.fixture(autouse=True)
def job_results(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def token(fund, catalog, plan):
    approved(fund, catalog.industry, plan, [Mode.QUERY])
    return bearer_token(fund)


def submitted(client, token, sql=SQL) -> QueryJob:
    response = client.post("/api/v1/jobs", {"sql": sql}, content_type="application/json", **auth(token))
    assert response.status_code == 202, response.content
    return QueryJob.objects.get(pk=response.json()["id"])


def taken_by_a_worker_that_died(job: QueryJob, *, silent_for: timedelta) -> QueryJob:
    """The job as a worker left it when it was killed: running, its last heartbeat `silent_for` ago."""
    last = timezone.now() - silent_for
    QueryJob.objects.filter(pk=job.pk).update(state="running", started_at=last, heartbeat_at=last)
    return QueryJob.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_a_job_whose_worker_went_silent_is_queued_again_and_then_runs(
    client, token, django_capture_on_commit_callbacks
):
    job = taken_by_a_worker_that_died(submitted(client, token), silent_for=LOST_AFTER + timedelta(seconds=1))
    with django_capture_on_commit_callbacks() as enqueued:
        assert requeue_lost_jobs() == [str(job.pk)]
    assert len(enqueued) == 1  # sent to the queue once the change commits
    job.refresh_from_db()
    assert (job.state, job.attempts, job.started_at, job.heartbeat_at) == ("queued", 1, None, None)
    retry = AuditEvent.objects.get(action="query.job_retry")
    assert (retry.actor_type, retry.target) == ("client", f"query_job:{job.pk}")
    assert requeue_lost_jobs() == []  # once

    run_query_job.apply(args=[str(job.pk)])
    job.refresh_from_db()
    assert job.state == "succeeded" and job.rows_written == 2
    assert job.heartbeat_at is not None


@pytest.mark.django_db
def test_a_job_whose_worker_still_beats_is_left_alone(client, token):
    job = taken_by_a_worker_that_died(submitted(client, token), silent_for=LOST_AFTER - timedelta(seconds=5))
    assert requeue_lost_jobs() == []
    job.refresh_from_db()
    assert job.state == "running"
    assert not AuditEvent.objects.filter(action__in=["query.job_retry", "query.job_lost"]).exists()


@pytest.mark.django_db
def test_a_lost_job_that_waited_too_long_fails(client, token, settings):
    job = submitted(client, token)
    QueryJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.JOB_QUEUE_SECONDS + 60)
    )
    job = taken_by_a_worker_that_died(job, silent_for=timedelta(minutes=5))
    assert requeue_lost_jobs() == [str(job.pk)]
    job.refresh_from_db()
    assert (job.state, job.error_code) == ("failed", "worker_lost")
    assert AuditEvent.objects.filter(action="query.job_lost", target=f"query_job:{job.pk}").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_run_that_lost_its_job_stops_its_query_and_changes_nothing(client, token):
    job = submitted(client, token, sql=RUNAWAY)
    taken_over_at = []

    def take_over_once_running() -> None:
        try:
            while not QueryJob.objects.filter(pk=job.pk, state="running").exists():
                time.sleep(0.05)
            time.sleep(0.5)  # inside the query by now
            now = timezone.now()  # as if requeued and taken by another worker
            QueryJob.objects.filter(pk=job.pk).update(started_at=now, heartbeat_at=now)
            taken_over_at.append(now)
        finally:
            connection.close()

    other = threading.Thread(target=take_over_once_running)
    other.start()
    run_query_job.apply(args=[str(job.pk)])
    other.join()

    job.refresh_from_db()
    assert (job.state, job.started_at, job.result_path) == ("running", taken_over_at[0], "")  # the new run's
    assert not list(results_dir().glob("*"))  # no file of the lost run
    # Stopped by its own check (cancelled), not by the plan's time limit.
    assert AuditEvent.objects.get(action="query.run").outcome == "cancelled"
