"""Consumption against limits, per subscription and day, for the usage API.

Past days come from UsageDaily (the quota service's rollup). Today also reads
the live counters when the quota backend is Redis, whose UsageDaily rows lag by
up to one rollup interval; the database backend writes UsageDaily in the same
transaction as the counter, so its rows are already current.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from django.utils import timezone

from access.models import Subscription
from datasets.query.limits import DAILY_METRICS
from quotas.models import UsageDaily
from quotas.service import usage_not_rolled_up
from quotas.windows import usage_day

MAX_DAYS = 92


def usage_report(
    subscriptions: Sequence[Subscription], day_from: date, day_to: date, *, now: datetime | None = None
) -> list[dict]:
    """For each subscription: its current limits and, per day from `day_from` to `day_to`, used vs limit per metric.

    Two queries whatever the number of subscriptions (plus one quota-backend read
    per subscription and metric for today, with the Redis backend only).
    """
    if day_to < day_from:
        raise ValueError("the first day is after the last")
    if (day_to - day_from).days >= MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at a time")
    now = now or timezone.now()
    today = usage_day(now)
    subjects = {subscription.quota_subject for subscription in subscriptions}
    used: dict[tuple[str, date, str], int] = {
        (row.subject, row.day, row.metric): row.amount
        for row in UsageDaily.objects.filter(
            subject__in=subjects, day__gte=day_from, day__lte=day_to, metric__in=DAILY_METRICS
        )
    }
    if day_from <= today <= day_to:
        for (subject, metric), amount in usage_not_rolled_up(subjects, DAILY_METRICS, now=now).items():
            used[(subject, today, metric)] = amount

    days = [day_from + timedelta(days=offset) for offset in range((day_to - day_from).days + 1)]
    report = []
    for subscription in subscriptions:
        limits = subscription.limits()
        report.append(
            {
                "subscription": subscription.pk,
                "dataset": subscription.dataset.slug,
                "status": subscription.status,
                "plan": subscription.plan.name if subscription.plan else None,
                "limits": limits.to_dict() if limits else None,
                "days": [
                    {
                        "day": day.isoformat(),
                        "metrics": {
                            metric: {
                                "used": used.get((subscription.quota_subject, day, metric), 0),
                                "limit": limits.daily_limit(metric) if limits else None,
                            }
                            for metric in DAILY_METRICS
                        },
                    }
                    for day in days
                ],
            }
        )
    return report
