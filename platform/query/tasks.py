"""Celery tasks of the query app: running query jobs and cleaning up after them."""

from __future__ import annotations

from celery import shared_task

from query.interrupted import record_interrupted_queries
from query.jobs import RUN_JOB_TASK, cleanup_jobs, execute_job, requeue_lost_jobs

PERIODIC_TASKS = {
    "query-cleanup-jobs": {"task": "query.cleanup_jobs", "schedule": 3600.0, "options": {"expires": 1800}},
    "query-record-interrupted": {"task": "query.record_interrupted", "schedule": 60.0, "options": {"expires": 55}},
    "query-requeue-lost-jobs": {"task": "query.requeue_lost_jobs", "schedule": 15.0, "options": {"expires": 14}},
}


@shared_task(name=RUN_JOB_TASK, acks_late=True)
def run_query_job(job_id: str) -> None:
    execute_job(job_id)


@shared_task(name="query.cleanup_jobs")
def cleanup_jobs_task() -> dict:
    return cleanup_jobs()


@shared_task(name="query.record_interrupted")
def record_interrupted_task() -> list[str]:
    """`query.run` (outcome `interrupted`) for queries whose process died mid-way (query.interrupted)."""
    return record_interrupted_queries()


@shared_task(name="query.requeue_lost_jobs")
def requeue_lost_jobs_task() -> list[str]:
    """Jobs whose worker died go back to the queue, or fail once they waited too long (query.jobs)."""
    return requeue_lost_jobs()
