"""Celery tasks of the query app: running query jobs."""

from __future__ import annotations

from celery import shared_task

from query.jobs import execute_job


@shared_task(name="query.run_query_job", acks_late=True)
def run_query_job(job_id: str) -> None:
    execute_job(job_id)
