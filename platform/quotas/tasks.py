"""Periodic quota housekeeping: copy usage into UsageDaily and drop expired counters and leases."""

from __future__ import annotations

from celery import shared_task

from quotas import service

# Collected into CELERY_BEAT_SCHEDULE. The expiry is shorter than the interval,
# so runs queued while workers were down are dropped instead of piling up.
PERIODIC_TASKS = {
    "quotas-rollup-usage": {"task": "quotas.rollup_usage", "schedule": 300.0, "options": {"expires": 240}},
}


@shared_task(name="quotas.rollup_usage")
def rollup_usage() -> dict[str, int]:
    return {"usage_rows": service.rollup_usage(), "purged": service.purge_expired()}
