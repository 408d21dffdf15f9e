"""Celery tasks for the catalog: refresh a dataset, dispatch scheduled refreshes, clean the store."""

from __future__ import annotations

import logging

from celery import shared_task, signals
from django.db import connection, transaction
from django.utils import timezone

from catalog.models import Dataset, RefreshRun
from catalog.refresh import (
    REFRESH_TASK,
    TransientRefreshError,
    cleanup_store,
    recover_refreshes,
    request_refresh,
    run_refresh,
    sweep_leftovers,
)
from catalog.schedule import due

SCHEDULED_REFRESH_EXPIRES_SECONDS = 3600  # a scheduled refresh nobody ran within an hour is dropped, not piled up
MAX_TRANSIENT_RETRIES = 4

PERIODIC_TASKS = {
    "catalog-dispatch-due-refreshes": {
        "task": "catalog.dispatch_due_refreshes",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Every 10 s, so a refresh whose worker was killed is queued again within VITAMIN_REFRESH_STALE_SECONDS + 10 s.
    "catalog-recover-refreshes": {
        "task": "catalog.recover_refreshes",
        "schedule": 10.0,
        "options": {"expires": 9},
    },
    "catalog-cleanup-store": {
        "task": "catalog.cleanup_store",
        "schedule": 3600.0,
        "options": {"expires": 1800},
    },
}


@shared_task(bind=True, name=REFRESH_TASK, acks_late=True, max_retries=MAX_TRANSIENT_RETRIES)
def refresh_dataset(self, run_id: int) -> dict:
    """Refresh one dataset (the run was created by `request_refresh`); progress is reported in the task state."""

    def progress(rows: int) -> None:
        if self.request.id:
            self.update_state(state="PROGRESS", meta={"rows": rows})

    try:
        run = run_refresh(run_id, on_progress=progress)
    except TransientRefreshError as exc:
        if self.request.retries >= self.max_retries:
            RefreshRun.objects.filter(pk=run_id).update(
                status=RefreshRun.Status.FAILED,
                error=f"gave up after {self.max_retries} retries: {exc}",
                finished_at=timezone.now(),
            )
            raise
        raise self.retry(exc=exc, countdown=min(600, 15 * 2**self.request.retries)) from exc
    return {"run": run.pk, "status": run.status, "version": run.version.number if run.version else None}


@shared_task(name="catalog.dispatch_due_refreshes")
def dispatch_due_refreshes() -> list[str]:
    """Queue a refresh for every active dataset whose schedule has fired (runs every minute from beat)."""
    now = timezone.now()
    queued = []
    for dataset in Dataset.objects.filter(is_active=True).exclude(schedule=""):
        if not due(dataset, now):
            continue
        with transaction.atomic():
            # Claim this firing first, so two dispatchers (or a slow one) never queue it twice.
            claimed = Dataset.objects.filter(pk=dataset.pk, last_scheduled_at=dataset.last_scheduled_at).update(
                last_scheduled_at=now
            )
        if claimed:
            request_refresh(
                dataset, trigger=RefreshRun.Trigger.SCHEDULE, expires_seconds=SCHEDULED_REFRESH_EXPIRES_SECONDS
            )
            queued.append(dataset.slug)
    return queued


@shared_task(name="catalog.cleanup_store")
def cleanup_store_task() -> dict:
    return cleanup_store()


@shared_task(name="catalog.recover_refreshes")
def recover_refreshes_task() -> dict:
    """Queue again (or fail) refreshes whose worker died; sweep dead builds' folders (catalog.refresh)."""
    return recover_refreshes()


@signals.worker_ready.connect
def _sweep_on_worker_start(sender=None, **_):
    """A worker starting after a crash empties the scratch folders of builds no longer running on this host at
    once, and asks for a recovery sweep (which any worker may run) instead of waiting for beat."""
    try:
        sweep_leftovers()
        if sender is not None:
            sender.app.send_task("catalog.recover_refreshes")
    except Exception:  # noqa: BLE001 - the periodic sweep does the same a few seconds later
        logging.getLogger("vitamin.catalog.refresh").exception("the start-up sweep failed")
    finally:
        connection.close()  # the pool's children must not share this process's connection
