"""Quota counters and leases in the Django database (SQLite or PostgreSQL).

Exactness comes from the database, not from Python-side checks:

- a take is one conditional upsert (`INSERT ... ON CONFLICT DO UPDATE SET
  used = used + n WHERE used + n <= limit RETURNING used`): no row back means
  it did not fit. PostgreSQL evaluates the WHERE clause on the latest row
  version after taking the row lock; SQLite transactions here begin IMMEDIATE,
  so writers are serialized. Either way the limit is never passed. A batch
  runs in one transaction that rolls back when any take does not fit.
- leases are counted and inserted while holding a lock on the subject's guard
  row (an upsert takes the row lock on PostgreSQL and creates the guard on first
  use; on SQLite the IMMEDIATE transaction serializes).
- usage is added to UsageDaily in the same transaction as the counter, so
  usage can never disagree with what was granted.

Takes and leases are hand-written SQL because they are on every query's path:
the ORM's conditional update, existence check and savepoint-guarded insert
cost several statements and a millisecond or more of Python each (bench/).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from django.db import connection, models, transaction
from django.db.models import Exists, F, OuterRef, Value
from django.db.models.functions import Greatest
from django.utils.dateparse import parse_datetime

from quotas.backends import COUNTER_KEPT_AFTER_WINDOW, ConsumeResult, CounterKey, QuotaBackend, ReserveResult, Take
from quotas.decisions import Lease
from quotas.models import QuotaCounter, QuotaLease, QuotaLeaseGuard, UsageDaily


class _DoesNotFit(Exception):
    """Rolls a batch back."""


class DatabaseBackend(QuotaBackend):
    usage_written_with_each_charge = True

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
        adapt = connection.ops.adapt_datetimefield_value
        # No savepoint inside a caller's transaction: nothing here catches an error to carry on.
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            cursor.execute(_LOCK_GUARD_SQL, [lease.subject, lease.metric])
            # Expired leases are not deleted here but left to purge_expired: two
            # transactions deleting the same rows in different orders could deadlock.
            cursor.execute(_LIVE_LEASES_SQL, [lease.subject, lease.metric, adapt(now)])
            held, first_expiry = cursor.fetchone()
            first_expiry = _datetime_from_db(first_expiry)
            if held >= limit:
                return ReserveResult(False, held, first_expiry)
            cursor.execute(_INSERT_LEASE_SQL, [lease.subject, lease.metric, lease.lease_id, adapt(lease.expires_at)])
        first_expiry = lease.expires_at if first_expiry is None else min(first_expiry, lease.expires_at)
        return ReserveResult(True, held + 1, first_expiry)

    def release(self, lease: Lease) -> None:
        with connection.cursor() as cursor:
            cursor.execute(_DELETE_LEASE_SQL, [lease.lease_id, lease.subject, lease.metric])

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


def _datetime_from_db(value) -> datetime | None:
    """A timestamp column read by hand: PostgreSQL gives an aware datetime, SQLite Django's UTC text."""
    if isinstance(value, str):
        return parse_datetime(value).replace(tzinfo=UTC)
    return value


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

# Locks the guard row of (subject, metric), creating it on first use: an upsert's update takes
# the row lock on PostgreSQL; on SQLite the IMMEDIATE transaction already serializes writers.
_LOCK_GUARD_SQL = """
INSERT INTO quotas_quotaleaseguard (subject, metric) VALUES (%s, %s)
ON CONFLICT (subject, metric) DO UPDATE SET subject = excluded.subject
"""

_LIVE_LEASES_SQL = """
SELECT COUNT(*), MIN(expires_at) FROM quotas_quotalease WHERE subject = %s AND metric = %s AND expires_at > %s
"""

_INSERT_LEASE_SQL = """
INSERT INTO quotas_quotalease (subject, metric, lease_id, expires_at) VALUES (%s, %s, %s, %s)
"""

_DELETE_LEASE_SQL = """
DELETE FROM quotas_quotalease WHERE lease_id = %s AND subject = %s AND metric = %s
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
