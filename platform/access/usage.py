"""Consumption against limits, per subscription and day: the usage API's report, and the same numbers shaped for
the portal's pages (one subscription's usage, today's use for a list, usage added up across institutions).

Past days come from UsageDaily (the quota service's rollup). Today also reads
the live counters when the quota backend is Redis, whose UsageDaily rows lag by
up to one rollup interval; the database backend writes UsageDaily in the same
transaction as the counter, so its rows are already current.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.utils import timezone

from access.models import Subscription
from datasets.query.limits import DAILY_METRICS
from quotas.models import UsageDaily
from quotas.service import usage_not_rolled_up
from quotas.windows import usage_day

MAX_DAYS = 92
CHART_DAYS = 30  # the usage pages' charts: today and the 29 days before


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


@dataclass(frozen=True)
class MetricUsage:
    """One daily metric of one subscription, as its usage page shows it (read from `usage_report`)."""

    metric: str
    used_today: int
    daily_limit: int | None
    used_this_month: int | None  # for information (None when not read): no plan limits a month, only days
    days: list[tuple[date, int]]  # the last CHART_DAYS days, oldest first

    @property
    def share_today(self) -> float | None:
        return self.used_today / self.daily_limit if self.daily_limit else None


def subscription_usage(subscription: Subscription, *, now: datetime | None = None) -> list[MetricUsage]:
    """Each daily metric of `subscription`: today against its limit, this month so far, and the last CHART_DAYS days."""
    now = now or timezone.now()
    today = usage_day(now)
    first = min(today.replace(day=1), today - timedelta(days=CHART_DAYS - 1))
    (report,) = usage_report([subscription], first, today, now=now)
    chart_from = today - timedelta(days=CHART_DAYS - 1)
    usage = []
    for metric in DAILY_METRICS:
        per_day = [(date.fromisoformat(day["day"]), day["metrics"][metric]) for day in report["days"]]
        usage.append(
            MetricUsage(
                metric=metric,
                used_today=per_day[-1][1]["used"],
                daily_limit=per_day[-1][1]["limit"],
                used_this_month=sum(numbers["used"] for day, numbers in per_day if day >= today.replace(day=1)),
                days=[(day, numbers["used"]) for day, numbers in per_day if day >= chart_from],
            )
        )
    return usage


def usage_today(subscriptions: Sequence[Subscription], *, now: datetime | None = None) -> dict[int, list[MetricUsage]]:
    """Today's use of each daily metric per subscription id (a list page's summary; two queries for any number)."""
    now = now or timezone.now()
    today = usage_day(now)
    summary: dict[int, list[MetricUsage]] = defaultdict(list)
    for report in usage_report(subscriptions, today, today, now=now):
        (day,) = report["days"]
        for metric, numbers in day["metrics"].items():
            summary[report["subscription"]].append(
                MetricUsage(metric, numbers["used"], numbers["limit"], used_this_month=None, days=[])
            )
    return summary


@dataclass(frozen=True)
class Consumer:
    """An institution or a dataset on the staff usage page: its use per daily metric today and over the period."""

    key: int
    label: str
    today: dict[str, int]
    period: dict[str, int]


@dataclass(frozen=True)
class UsageAcross:
    """Every subscription's use over the last CHART_DAYS days, added up per institution, per dataset and per day."""

    days: list[date]
    per_day: dict[str, list[int]]  # metric → the total of each day, oldest first
    institutions: list[Consumer]
    datasets: list[Consumer]

    def top(self, metric: str, count: int = 5) -> list[Consumer]:
        """The institutions that used the most of `metric` over the period (none that used nothing)."""
        ranked = sorted(self.institutions, key=lambda each: (-each.period[metric], each.label))
        return [each for each in ranked[:count] if each.period[metric]]


def usage_across(*, now: datetime | None = None) -> UsageAcross:
    """The platform's usage over the last CHART_DAYS days (today last), from `usage_report`: the same numbers
    the partners' pages and the usage API show, added up."""
    now = now or timezone.now()
    today = usage_day(now)
    first = today - timedelta(days=CHART_DAYS - 1)
    subscriptions = list(
        Subscription.objects.filter(plan__isnull=False).select_related("plan", "dataset", "institution")
    )
    by_pk = {subscription.pk: subscription for subscription in subscriptions}
    days = [first + timedelta(days=offset) for offset in range(CHART_DAYS)]
    per_day = {metric: [0] * CHART_DAYS for metric in DAILY_METRICS}
    groups: dict[str, dict[int, tuple[str, dict, dict]]] = {"institution": {}, "dataset": {}}
    for report in usage_report(subscriptions, first, today, now=now):
        subscription = by_pk[report["subscription"]]
        owners = {
            "institution": (subscription.institution_id, subscription.institution.legal_name),
            "dataset": (subscription.dataset_id, subscription.dataset.slug),
        }
        for kind, (key, label) in owners.items():
            groups[kind].setdefault(key, (label, dict.fromkeys(DAILY_METRICS, 0), dict.fromkeys(DAILY_METRICS, 0)))
        for index, day in enumerate(report["days"]):
            for metric, numbers in day["metrics"].items():
                per_day[metric][index] += numbers["used"]
                for kind, (key, _) in owners.items():
                    _, today_used, period_used = groups[kind][key]
                    period_used[metric] += numbers["used"]
                    if index == CHART_DAYS - 1:
                        today_used[metric] += numbers["used"]

    def consumers(kind: str) -> list[Consumer]:
        rows = [Consumer(key, label, used, period) for key, (label, used, period) in groups[kind].items()]
        return sorted(rows, key=lambda each: each.label)

    return UsageAcross(days=days, per_day=per_day, institutions=consumers("institution"), datasets=consumers("dataset"))
