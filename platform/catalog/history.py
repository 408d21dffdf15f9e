"""Backfilling a dataset's monthly history, so that point-in-time (`as_of`) reads have versions to resolve to.

A dataset whose spec has a `history` block gets one version per month, built with the data as it stood
at the end of that month (the source sees `VITAMIN_DATA_UNTIL`, the month's last day) and published at
the time the spec gives (`publish_day` of the next month, `publish_time`, in the spec's time zone). Each
version is an ordinary, immutable, published version: a later refresh or a restatement is a new version
and never changes what an earlier instant resolves to.

History only grows forward: a backfill is refused when the dataset already has a version published at
or after the first month's publication time, since an older version number would then be current later
than a newer one.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.utils import timezone

from catalog.models import Dataset, RefreshRun
from catalog.refresh import run_refresh
from datasets.spec import DatasetSpec, HistorySpec
from vitamin.refusals import Kind, Refusal

DATA_UNTIL_VARIABLE = "VITAMIN_DATA_UNTIL"


@dataclass(frozen=True)
class Month:
    first_day: dt.date
    last_day: dt.date
    published_at: dt.datetime  # aware


def months(history: HistorySpec, time_zone: str) -> Iterator[Month]:
    """Every month of `history`, with the instant its version is published."""
    zone = zoneinfo.ZoneInfo(time_zone)
    hour, minute = (int(part) for part in history.publish_time.split(":"))
    first = history.first_month
    while first <= history.last_month:
        following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        published = dt.datetime(following.year, following.month, history.publish_day, hour, minute, tzinfo=zone)
        yield Month(first, following - dt.timedelta(days=1), published)
        first = following


def backfill(
    dataset: Dataset,
    *,
    first_month: dt.date | None = None,
    last_month: dt.date | None = None,
    on_month: Callable[[Month, RefreshRun], None] | None = None,
) -> list[RefreshRun]:
    """Build and publish the dataset's monthly versions (those whose publication time has passed), in order.

    Raises Refusal when the spec has no history or the dataset has versions the backfill would precede.
    A month whose build fails is recorded as a failed run, and the next month is still tried.
    """
    spec: DatasetSpec = dataset.current_spec
    if spec.history is None:
        raise Refusal(f"{dataset.slug} has no `history` in its spec: nothing to backfill.", code="no_history")
    history = HistorySpec(
        first_month=(first_month or spec.history.first_month).replace(day=1),
        last_month=(last_month or spec.history.last_month).replace(day=1),
        publish_day=spec.history.publish_day,
        publish_time=spec.history.publish_time,
    )
    now = timezone.now()
    planned = [month for month in months(history, spec.time_zone) if month.published_at <= now]
    if not planned:
        return []
    later = dataset.versions.filter(created_at__gte=planned[0].published_at).order_by("number").first()
    if later is not None:
        raise Refusal(
            f"{dataset.slug} v{later.number} was published at {later.created_at.isoformat()}, after the first "
            f"month to backfill would be ({planned[0].published_at.isoformat()}): history only grows forward.",
            code="history_conflict",
            kind=Kind.CONFLICT,
        )
    runs = []
    for month in planned:
        run = RefreshRun.objects.create(
            dataset=dataset, trigger=RefreshRun.Trigger.BACKFILL, requested_by=f"backfill {month.first_day:%Y-%m}"
        )
        run = run_refresh(run.pk, variables={DATA_UNTIL_VARIABLE: month.last_day}, published_at=month.published_at)
        runs.append(run)
        if on_month is not None:
            on_month(month, run)
    return runs
