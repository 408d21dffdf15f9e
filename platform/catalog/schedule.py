"""When a dataset's schedule fires: the one rule that beat's dispatcher (`catalog.tasks.dispatch_due_refreshes`)
acts on and that the catalog and the staff pages show.

A spec's `schedule` is a cron expression read on its `time_zone`'s clock (docs/datasets.md). The dispatcher
runs every minute and queues a refresh when the schedule has fired since the dataset's last scheduled
refresh (`due`); so the next scheduled refresh is the next firing, or now when a firing waits to be queued.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from croniter import croniter
from django.conf import settings

from catalog.models import Dataset


def _on_schedule_clock(dataset: Dataset, moment: datetime) -> datetime:
    return moment.astimezone(zoneinfo.ZoneInfo(dataset.current_spec.time_zone or settings.TIME_ZONE))


def due(dataset: Dataset, now: datetime) -> bool:
    """Whether the dataset's cron schedule fired since its last scheduled refresh."""
    if not dataset.schedule:
        return False
    previous_fire = croniter(dataset.schedule, _on_schedule_clock(dataset, now)).get_prev(datetime)
    return dataset.last_scheduled_at is None or dataset.last_scheduled_at < previous_fire


def next_scheduled_at(dataset: Dataset, now: datetime) -> datetime | None:
    """When the dispatcher will next queue a scheduled refresh of the dataset.

    A firing not yet dispatched is `now` (the dispatcher runs every minute); None when the dataset is
    inactive or has no valid schedule, since the dispatcher then never queues it.
    """
    if not dataset.is_active or not dataset.schedule or not croniter.is_valid(dataset.schedule):
        return None
    if due(dataset, now):
        return now
    return croniter(dataset.schedule, _on_schedule_clock(dataset, now)).get_next(datetime)
