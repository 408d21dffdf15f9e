"""Quota counters and leases in the Django database (SQLite or PostgreSQL).

Exactness comes from the database, not from Python-side checks:

- consume is one conditional UPDATE (`used = used + n WHERE used <= limit - n`).
  PostgreSQL re-evaluates the WHERE clause on the latest row version after
  waiting for a concurrent writer's row lock; SQLite transactions here begin
  IMMEDIATE, so writers are serialized. Either way the limit is never passed.
- leases are counted and inserted while holding a lock on the subject's guard
  row (SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction serializes).
- usage is added to UsageDaily in the same transaction as the counter, so
  usage can never disagree with what was granted.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, models, transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Value
from django.db.models.functions import Greatest

from quotas.backends import COUNTER_KEPT_AFTER_WINDOW, ConsumeResult, CounterKey, QuotaBackend, ReserveResult
from quotas.decisions import Lease
from quotas.models import QuotaCounter, QuotaLease, QuotaLeaseGuard, UsageDaily


class DatabaseBackend(QuotaBackend):
    def consume(self, counter: CounterKey, amount: int, limit: int, *, meter: bool, now: datetime) -> ConsumeResult:
        rows = _counter_rows(counter)
        with transaction.atomic():
            granted = _add(rows, "used", amount, at_most=limit, new_row=_new_counter(counter))
            if granted and meter:
                _add(_usage_rows(counter), "amount", amount, at_most=None, new_row=_new_usage(counter))
            used = rows.values_list("used", flat=True).first() or 0
        return ConsumeResult(granted, used)

    def peek(self, counter: CounterKey) -> int:
        return _counter_rows(counter).values_list("used", flat=True).first() or 0

    def refund(self, counter: CounterKey, amount: int, *, meter: bool) -> int:
        with transaction.atomic():
            used = _counter_rows(counter).select_for_update().values_list("used", flat=True).first() or 0
            refunded = min(amount, used)
            if refunded:
                _counter_rows(counter).update(used=F("used") - refunded)
                if meter:
                    # Clamped: usage is only off if consume and refund disagreed on `meter`.
                    _usage_rows(counter).update(
                        amount=Greatest(F("amount") - refunded, Value(0), output_field=models.PositiveBigIntegerField())
                    )
        return refunded

    def reserve(self, lease: Lease, limit: int, now: datetime) -> ReserveResult:
        with transaction.atomic():
            QuotaLeaseGuard.objects.select_for_update().get_or_create(subject=lease.subject, metric=lease.metric)
            # Expired leases are not deleted here but left to purge_expired: two
            # transactions deleting the same rows in different orders could deadlock.
            live = QuotaLease.objects.filter(subject=lease.subject, metric=lease.metric, expires_at__gt=now)
            held = live.aggregate(count=Count("pk"), first_expiry=Min("expires_at"))
            if held["count"] >= limit:
                return ReserveResult(False, held["count"], held["first_expiry"])
            QuotaLease.objects.create(
                subject=lease.subject, metric=lease.metric, lease_id=lease.lease_id, expires_at=lease.expires_at
            )
        first_expiry = lease.expires_at if held["first_expiry"] is None else min(held["first_expiry"], lease.expires_at)
        return ReserveResult(True, held["count"] + 1, first_expiry)

    def release(self, lease: Lease) -> None:
        QuotaLease.objects.filter(subject=lease.subject, metric=lease.metric, lease_id=lease.lease_id).delete()

    def rollup_usage(self, now: datetime) -> int:
        return 0  # consume and refund already keep UsageDaily current, in their own transactions

    def purge_expired(self, now: datetime) -> int:
        counters, _ = QuotaCounter.objects.filter(window_end__lt=now - COUNTER_KEPT_AFTER_WINDOW).delete()
        leases, _ = QuotaLease.objects.filter(expires_at__lte=now).delete()
        # A guard is only a lock: deleting an idle one is harmless, the next reserve recreates it,
        # and a guard a reserve currently holds cannot be deleted until that reserve commits.
        has_leases = QuotaLease.objects.filter(subject=OuterRef("subject"), metric=OuterRef("metric"))
        guards, _ = QuotaLeaseGuard.objects.filter(~Exists(has_leases)).delete()
        return counters + leases + guards


def _counter_rows(counter: CounterKey) -> models.QuerySet[QuotaCounter]:
    return QuotaCounter.objects.filter(
        subject=counter.subject, metric=counter.metric, window=counter.window, window_start=counter.window_start
    )


def _new_counter(counter: CounterKey) -> QuotaCounter:
    return QuotaCounter(
        subject=counter.subject,
        metric=counter.metric,
        window=counter.window,
        window_start=counter.window_start,
        window_end=counter.window_end,
    )


def _usage_rows(counter: CounterKey) -> models.QuerySet[UsageDaily]:
    return UsageDaily.objects.filter(subject=counter.subject, metric=counter.metric, day=counter.day)


def _new_usage(counter: CounterKey) -> UsageDaily:
    return UsageDaily(subject=counter.subject, metric=counter.metric, day=counter.day)


def _add(rows: models.QuerySet, field: str, amount: int, *, at_most: int | None, new_row: models.Model) -> bool:
    """Add `amount` to `field` of the one row `rows` selects, inserting `new_row` on first use.

    With `at_most`, add only if the result stays <= at_most. Runs inside the
    caller's transaction. Returns whether the amount was added.
    """
    if at_most is not None and amount > at_most:
        return False
    within_limit = rows if at_most is None else rows.filter(**{f"{field}__lte": at_most - amount})
    if within_limit.update(**{field: F(field) + amount}):
        return True
    if rows.exists():
        return False  # the row is there but has no room left
    setattr(new_row, field, amount)
    try:
        with transaction.atomic():  # a savepoint: a failed INSERT must not abort the caller's transaction
            new_row.save(force_insert=True)
        return True
    except IntegrityError:
        # A concurrent first use inserted the row and has committed (PostgreSQL
        # waits for it before raising), so the conditional update now sees it.
        return within_limit.update(**{field: F(field) + amount}) > 0
