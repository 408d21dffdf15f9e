"""Celery tasks of the lookups app: forgetting what no longer needs keeping."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from lookups.cutoffs import forget_before
from lookups.replays import erase_expired

PERIODIC_TASKS = {
    "lookups-forget-expired": {"task": "lookups.forget_expired", "schedule": 3600.0, "options": {"expires": 1800}},
}


@shared_task(name="lookups.forget_expired")
def forget_expired() -> dict:
    """Erase kept answers past their replay window, and cut-off checks of days gone."""
    return {"answers_erased": erase_expired(), "cutoff_checks_deleted": forget_before(timezone.localdate())}
