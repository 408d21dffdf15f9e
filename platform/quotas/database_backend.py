"""Quota counters and leases in the Django database (SQLite or PostgreSQL).

Exactness comes from the database, not from Python-side checks:

- a take is one conditional upsert (`INSERT ... ON CONFLICT DO UPDATE SET
  used = used + n WHERE used + n <= limit RETURNING used`): no row back means
  it did not fit. PostgreSQL evaluates the WHERE clause on the latest row
  version after taking the row lock; SQLite transactions here begin IMMEDIATE,
  so writers are serialized. Either way the limit is never passed. A batch
  runs in one transaction that rolls back when any take does not fit.
- leases are counted and inserted while holding a lock on the subject's guard
  row (SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction serializes).
- usage is added to UsageDaily in the same transaction as the counter, so
  usage can never disagree with what was granted.

The takes are hand-written SQL because they are on every query's path: the
ORM's conditional update, existence check and savepoint-guarded insert cost
several statements and a millisecond or more of Python each (bench/).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import connection, models, transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Value
from django.db.models.functions import Greatest

from quotas.backends import COUNTER_KEPT_AFTER_WINDOW, ConsumeResult, CounterKey, QuotaBackend, ReserveResult, Take
from quotas.decisions import Lease
from quotas.models import QuotaCounter, QuotaLease, QuotaLeaseGuard, UsageDaily


class _DoesNotFit(Exception):
    """Rolls a batch back."""


class DatabaseBackend(QuotaBackend):
    def consume_all(self, takes: Sequence[Take], now: datetime) -> ConsumeResult:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                used = tuple(_take(cursor, take) for take in takes)
        except _DoesNotFit:
            return ConsumeResult(False, tuple(self.peek(take.counter) for take in takes))
        return ConsumeResult(True, used)

    def peek(self, counter: CounterKey) -> int:
        with connection.cursor() as cursor:
            return _used(cursor, counter)

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
        # No savepoint inside a caller's transaction: nothing here catches an error to carry on.
        with transaction.atomic(savepoint=False):
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


def _usage_rows(counter: CounterKey) -> models.QuerySet[UsageDaily]:
    return UsageDaily.objects.filter(subject=counter.subject, metric=counter.metric, day=counter.day)


def _take(cursor, take: Take) -> int:
    """The counter after `take`, or _DoesNotFit; runs in the batch's transaction."""
    counter = take.counter
    if take.amount == 0 or take.amount > take.limit:
        used = _used(cursor, counter)
        if used + take.amount > take.limit:
            raise _DoesNotFit
        return used
    window_end = connection.ops.adapt_datetimefield_value(counter.window_end)
    cursor.execute(_TAKE_SQL, [*_counter_key(counter), window_end, take.amount, take.limit])
    row = cursor.fetchone()
    if row is None:
        raise _DoesNotFit
    if take.meter:
        cursor.execute(
            _METER_SQL,
            [counter.subject, counter.metric, connection.ops.adapt_datefield_value(counter.day), take.amount],
        )
    return row[0]


def _used(cursor, counter: CounterKey) -> int:
    cursor.execute(_USED_SQL, _counter_key(counter))
    row = cursor.fetchone()
    return row[0] if row else 0


def _counter_key(counter: CounterKey) -> list:
    """The values of QuotaCounter's unique key, as the database driver takes them."""
    window_start = connection.ops.adapt_datetimefield_value(counter.window_start)
    return [counter.subject, counter.metric, counter.window.value, window_start]


# The conflict targets are the unique constraints of QuotaCounter and UsageDaily.
# The WHERE of an upsert's update sees the row as it is after any concurrent writer committed.
_TAKE_SQL = """
INSERT INTO quotas_quotacounter (subject, metric, "window", window_start, window_end, used)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (subject, metric, "window", window_start)
DO UPDATE SET used = quotas_quotacounter.used + excluded.used
WHERE quotas_quotacounter.used + excluded.used <= %s
RETURNING used
"""

_USED_SQL = """
SELECT used FROM quotas_quotacounter WHERE subject = %s AND metric = %s AND "window" = %s AND window_start = %s
"""

_METER_SQL = """
INSERT INTO quotas_usagedaily (subject, metric, day, amount)
VALUES (%s, %s, %s, %s)
ON CONFLICT (subject, metric, day)
DO UPDATE SET amount = quotas_usagedaily.amount + excluded.amount
"""
