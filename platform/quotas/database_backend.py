"""Quota counters and leases in the Django database (SQLite or PostgreSQL).

Exactness comes from the database, not from Python-side checks:

- a take is one conditional upsert (`INSERT ... ON CONFLICT DO UPDATE SET
  used = used + n WHERE used + n <= limit RETURNING used`): no row back means
  it did not fit. The takes of a batch that share a limit are one multi-row
  upsert (a query's two meters), and their usage one more. PostgreSQL evaluates the WHERE clause on the latest row
  version after taking the row lock; SQLite transactions here begin IMMEDIATE,
  so writers are serialized. Either way the limit is never passed. A batch
  runs in one transaction (no savepoint of its own inside a caller's); when a take does not
  fit, what the batch had added is subtracted again, under the same locks, and nothing is
  left changed.
- a lease is counted and inserted in one statement (`INSERT ... SELECT ... WHERE
  (SELECT COUNT(*) ...) < limit`) while holding a lock on the subject's guard row on
  PostgreSQL (an upsert takes the row lock and creates the guard on first use); on
  SQLite the IMMEDIATE transaction serializes and no guard is taken. Only a refused
  reserve counts again, for the refusal's Retry-After.
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

from quotas.backends import (
    COUNTER_KEPT_AFTER_WINDOW,
    ConsumeResult,
    CounterKey,
    QuotaBackend,
    ReserveAllResult,
    ReserveResult,
    Take,
)
from quotas.decisions import Lease
from quotas.models import QuotaCounter, QuotaLease, QuotaLeaseGuard, UsageDaily


class DatabaseBackend(QuotaBackend):
    usage_written_with_each_charge = True
    charges_roll_back_with_the_transaction = True

    def consume_all(self, takes: Sequence[Take], now: datetime) -> ConsumeResult:
        # No savepoint inside a caller's transaction (two statements on every charge): a take that does not
        # fit is undone by hand, by subtracting what this batch added, in the same locked transaction.
        if connection.vendor == "postgresql" and _in_one_statement(takes):
            return _consume_in_one_statement(takes)
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            # Takes that only check (0), or that cannot fit whatever is used, read their counters in one statement.
            checked = _used_many(cursor, [take.counter for take in takes if _only_checks(take)])
            if any(_only_checks(take) and checked.get(take.counter, 0) + take.amount > take.limit for take in takes):
                return _refused(cursor, takes, {})
            positive = [take for take in takes if not _only_checks(take)]
            after = _take_all(cursor, positive)
            if len(after) < len(positive):  # one did not fit
                return _refused(cursor, takes, after)
            _meter_all(cursor, [take for take in positive if take.meter])
            used = [checked.get(take.counter, 0) if _only_checks(take) else after[take.counter] for take in takes]
        return ConsumeResult(True, tuple(used))

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
        key = [lease.subject, lease.metric]
        # No savepoint inside a caller's transaction: nothing here catches an error to carry on.
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            if connection.vendor != "sqlite":  # SQLite: BEGIN IMMEDIATE already holds the one write lock
                cursor.execute(_LOCK_GUARD_SQL, key)
            # Expired leases are not deleted here but left to purge_expired: two
            # transactions deleting the same rows in different orders could deadlock.
            cursor.execute(
                _INSERT_LEASE_IF_ROOM_SQL, [*key, lease.lease_id, adapt(lease.expires_at), *key, adapt(now), limit]
            )
            if cursor.rowcount == 1:
                return ReserveResult(True)
            # Refused: how many are held and when the first lapses, for the refusal's Retry-After.
            cursor.execute(_LIVE_LEASES_SQL, [*key, adapt(now)])
            held, first_expiry = cursor.fetchone()
        return ReserveResult(False, held, _datetime_from_db(first_expiry))

    def reserve_all(self, wanted: Sequence[tuple[Lease, int]], now: datetime) -> ReserveAllResult:
        """Two statements on PostgreSQL whatever the number of leases (one on SQLite): the guards of all the
        subjects locked in one upsert, in the order of their keys (so two batches never wait on each other in
        a cycle), then every lease that has room inserted in one statement, counted under those locks."""
        if len(wanted) < 2:
            return super().reserve_all(wanted, now)
        adapt = connection.ops.adapt_datetimefield_value
        ordered = sorted(wanted, key=lambda item: (item[0].subject, item[0].metric))
        postgresql = connection.vendor == "postgresql"  # SQLite: BEGIN IMMEDIATE holds the one write lock
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            if postgresql:
                rows = ", ".join(["(%s, %s)"] * len(ordered))
                cursor.execute(
                    _LOCK_GUARDS_SQL.format(rows=rows),
                    [value for lease, _ in ordered for value in (lease.subject, lease.metric)],
                )
            typed = _TYPED_LEASE_ROW if postgresql else _LEASE_ROW
            cursor.execute(
                _INSERT_LEASES_IF_ROOM_SQL.format(rows=", ".join([typed] * len(wanted))),
                [
                    *(
                        value
                        for lease, limit in wanted
                        for value in (lease.subject, lease.metric, lease.lease_id, adapt(lease.expires_at), limit)
                    ),
                    adapt(now),
                ],
            )
            inserted = {lease_id for (lease_id,) in cursor.fetchall()}
            if len(inserted) == len(wanted):
                return ReserveAllResult(None)
            # Refused: nothing held (the ones inserted go again), and the first refused one's count for the refusal.
            refused = next(index for index, (lease, _) in enumerate(wanted) if lease.lease_id not in inserted)
            self.release_all([lease for lease, _ in wanted if lease.lease_id in inserted])
            lease = wanted[refused][0]
            cursor.execute(_LIVE_LEASES_SQL, [lease.subject, lease.metric, adapt(now)])
            held, first_expiry = cursor.fetchone()
        return ReserveAllResult(refused, held, _datetime_from_db(first_expiry))

    def renew_all(self, leases: Sequence[Lease], expires_at: datetime, now: datetime) -> int:
        if not leases:
            return 0
        adapt = connection.ops.adapt_datetimefield_value
        ids = ", ".join(["%s"] * len(leases))
        with connection.cursor() as cursor:
            cursor.execute(
                _RENEW_LEASES_SQL.format(ids=ids),
                [adapt(expires_at), *(lease.lease_id for lease in leases), adapt(now)],
            )
            return cursor.rowcount

    def live(self, leases: Sequence[Lease], now: datetime) -> set[str]:
        ids = [lease.lease_id for lease in leases]
        return set(QuotaLease.objects.filter(lease_id__in=ids, expires_at__gt=now).values_list("lease_id", flat=True))

    def release(self, lease: Lease) -> None:
        self.release_all([lease])

    def release_all(self, leases: Sequence[Lease]) -> None:
        if not leases:
            return
        rows = ", ".join(["(%s, %s, %s)"] * len(leases))
        with connection.cursor() as cursor:
            cursor.execute(
                _DELETE_LEASES_SQL.format(rows=rows),
                [value for lease in leases for value in (lease.lease_id, lease.subject, lease.metric)],
            )

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


def _only_checks(take: Take) -> bool:
    return take.amount == 0 or take.amount > take.limit


def _used_many(cursor, counters: list[CounterKey]) -> dict[CounterKey, int]:
    """The used value of each of `counters` that exists (one statement)."""
    if not counters:
        return {}
    rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(counters))
    values = [value for index, counter in enumerate(counters) for value in (index, *_counter_key(counter))]
    cursor.execute(_USED_MANY_SQL.format(rows=rows), values)
    return {counters[index]: used for index, used in cursor.fetchall()}


def _take_all(cursor, takes: list[Take]) -> dict[CounterKey, int]:
    """Add each take (an amount within its limit) to its counter if it stays within the limit: one
    conditional upsert per distinct limit (a query's meters share one). Returns the counters after, of
    the takes that fitted; runs in the batch's transaction."""
    by_limit: dict[int, list[Take]] = {}
    for take in takes:
        by_limit.setdefault(take.limit, []).append(take)
    after: dict[CounterKey, int] = {}
    for limit, group in by_limit.items():
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(group))
        values = [
            value
            for take in group
            for value in (
                *_counter_key(take.counter),
                connection.ops.adapt_datetimefield_value(take.counter.window_end),
                take.amount,
            )
        ]
        cursor.execute(_TAKE_SQL.format(rows=rows), [*values, limit])
        after.update(_fitted(group, cursor.fetchall()))
    return after


def _fitted(takes: Sequence[Take], returned) -> dict[CounterKey, int]:
    """The counters after, of those of `takes` that a take upsert returned (subject, metric, window, used) for."""
    fitted = {(subject, metric, window): used for subject, metric, window, used in returned}
    keys = {take.counter: (take.counter.subject, take.counter.metric, take.counter.window.value) for take in takes}
    return {counter: fitted[key] for counter, key in keys.items() if key in fitted}


def _refused(cursor, takes: Sequence[Take], after: dict[CounterKey, int]) -> ConsumeResult:
    """A batch that did not fit as a whole: what it took (`after`: the counters it added to) is given back,
    and every counter is read as it is now."""
    for take in takes:
        if take.counter in after:
            _untake(cursor, take)
    return ConsumeResult(False, tuple(_used(cursor, take.counter) for take in takes))


def _in_one_statement(takes: Sequence[Take]) -> bool:
    """Whether PostgreSQL can check, take and meter `takes` in one statement: its takes share one limit
    (one conditional upsert), no check is of an amount past its limit (refused whatever is used), and
    no two meter the same day's row."""
    positive = [take for take in takes if not _only_checks(take)]
    metered = [(take.counter.subject, take.counter.metric, take.counter.day) for take in positive if take.meter]
    return (
        bool(positive)
        and len({take.limit for take in positive}) == 1
        and all(take.amount <= take.limit for take in takes)
        and len(set(metered)) == len(metered)
    )


def _consume_in_one_statement(takes: Sequence[Take]) -> ConsumeResult:
    """`consume_all` on PostgreSQL in one round trip (`_CONSUME_SQL`): the checks read, the takes upserted
    unless a check is over, and the day's usage upserted only if every take fitted. The rare refusal
    (a take that did not fit) is undone and counted as in the statement-by-statement path."""
    checks = [take for take in takes if _only_checks(take)]
    positive = [take for take in takes if not _only_checks(take)]
    metered = [take for take in positive if take.meter]
    adapt_day = connection.ops.adapt_datefield_value
    adapt_time = connection.ops.adapt_datetimefield_value
    sql = _CONSUME_SQL.format(
        checks=", ".join([_CHECK_ROW] * len(checks)) or _NO_CHECK_ROW,
        takes=", ".join([_TAKE_ROW] * len(positive)),
        meters=", ".join([_METER_ROW] * len(metered)) or _NO_METER_ROW,
    )
    values = [
        *(v for i, take in enumerate(checks) for v in (i, *_counter_key(take.counter), take.amount, take.limit)),
        *(
            v
            for take in positive
            for v in (*_counter_key(take.counter), adapt_time(take.counter.window_end), take.amount)
        ),
        positive[0].limit,
        *(
            v
            for take in metered
            for v in (take.counter.subject, take.counter.metric, adapt_day(take.counter.day), take.amount)
        ),
        len(positive) if metered else -1,
    ]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, values)
        rows = cursor.fetchall()
        checked = {checks[row[1]].counter: row[5] for row in rows if row[0] == "checked"}
        after = _fitted(positive, [row[2:] for row in rows if row[0] == "taken"])
        if len(after) < len(positive):  # a check was over (nothing taken), or a take did not fit
            return _refused(cursor, takes, after)
    return ConsumeResult(
        True, tuple(checked.get(take.counter, 0) if _only_checks(take) else after[take.counter] for take in takes)
    )


def _meter_all(cursor, takes: list[Take]) -> None:
    """Add each take's amount to its day's usage: one upsert (one per take if two share a day's row)."""
    days = [
        (take.counter.subject, take.counter.metric, connection.ops.adapt_datefield_value(take.counter.day), take.amount)
        for take in takes
    ]
    if len({day[:3] for day in days}) < len(days):  # an upsert may not touch a row twice
        batches = [[day] for day in days]
    else:
        batches = [days] if days else []
    for batch in batches:
        rows = ", ".join(["(%s, %s, %s, %s)"] * len(batch))
        cursor.execute(_METER_SQL.format(rows=rows), [value for day in batch for value in day])


def _untake(cursor, take: Take) -> None:
    """Subtract what `_take_all` added to a counter (a batch that did not fit as a whole; usage is written only
    once all fitted), in the same transaction; a counter left at 0 goes, as if the batch had never written it
    (a counter at 0 and no counter read the same)."""
    key = _counter_key(take.counter)
    cursor.execute(_UNTAKE_SQL, [take.amount, *key])
    cursor.execute(_DROP_EMPTY_COUNTER_SQL, key)


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
VALUES {rows}
ON CONFLICT (subject, metric, "window", window_start)
DO UPDATE SET used = quotas_quotacounter.used + excluded.used
WHERE quotas_quotacounter.used + excluded.used <= %s
RETURNING subject, metric, "window", used
"""

# Locks the guard row of (subject, metric), creating it on first use: an upsert's update takes
# the row lock on PostgreSQL; on SQLite the IMMEDIATE transaction already serializes writers.
_LOCK_GUARD_SQL = """
INSERT INTO quotas_quotaleaseguard (subject, metric) VALUES (%s, %s)
ON CONFLICT (subject, metric) DO UPDATE SET subject = excluded.subject
"""

_LOCK_GUARDS_SQL = """
INSERT INTO quotas_quotaleaseguard (subject, metric) VALUES {rows}
ON CONFLICT (subject, metric) DO UPDATE SET subject = excluded.subject
"""

# `reserve_all`'s leases, each if fewer than its limit are live, in one statement: its counts do not see the
# rows it inserts itself, which is why a batch's subjects and metrics are distinct.
_INSERT_LEASES_IF_ROOM_SQL = """
WITH wanted (subject, metric, lease_id, expires_at, max_live) AS (VALUES {rows})
INSERT INTO quotas_quotalease (subject, metric, lease_id, expires_at)
SELECT subject, metric, lease_id, expires_at FROM wanted
WHERE (
    SELECT COUNT(*) FROM quotas_quotalease AS live
    WHERE live.subject = wanted.subject AND live.metric = wanted.metric AND live.expires_at > %s
) < wanted.max_live
RETURNING lease_id
"""
_LEASE_ROW = "(%s, %s, %s, %s, %s)"
_TYPED_LEASE_ROW = "(%s, %s, %s, %s::timestamptz, %s::integer)"  # PostgreSQL types a VALUES list by its first row

_LIVE_LEASES_SQL = """
SELECT COUNT(*), MIN(expires_at) FROM quotas_quotalease WHERE subject = %s AND metric = %s AND expires_at > %s
"""

_UNTAKE_SQL = """
UPDATE quotas_quotacounter SET used = used - %s
WHERE subject = %s AND metric = %s AND "window" = %s AND window_start = %s
"""

_DROP_EMPTY_COUNTER_SQL = """
DELETE FROM quotas_quotacounter WHERE subject = %s AND metric = %s AND "window" = %s AND window_start = %s AND used = 0
"""

# The lease, if fewer than the limit are live: one statement, counted under the guard's lock (PostgreSQL) or
# the write lock (SQLite), so two reserves never both see room for one.
_INSERT_LEASE_IF_ROOM_SQL = """
INSERT INTO quotas_quotalease (subject, metric, lease_id, expires_at)
SELECT %s, %s, %s, %s
WHERE (SELECT COUNT(*) FROM quotas_quotalease WHERE subject = %s AND metric = %s AND expires_at > %s) < %s
"""

_RENEW_LEASES_SQL = """
UPDATE quotas_quotalease SET expires_at = %s WHERE lease_id IN ({ids}) AND expires_at > %s
"""

_DELETE_LEASES_SQL = """
DELETE FROM quotas_quotalease WHERE (lease_id, subject, metric) IN (VALUES {rows})
"""

_USED_SQL = """
SELECT used FROM quotas_quotacounter WHERE subject = %s AND metric = %s AND "window" = %s AND window_start = %s
"""

_USED_MANY_SQL = """
WITH wanted (position, subject, metric, "window", window_start) AS (VALUES {rows})
SELECT wanted.position, counter.used FROM wanted JOIN quotas_quotacounter AS counter
ON counter.subject = wanted.subject AND counter.metric = wanted.metric
AND counter."window" = wanted."window" AND counter.window_start = wanted.window_start
"""

# `consume_all` in one statement (PostgreSQL): the checks' counters are read, the takes are upserted unless a
# check is over, and the day's usage only if every take fitted (`count(*) FROM taken`). Every part sees the
# same snapshot; the upsert's WHERE, as `_TAKE_SQL`'s, sees the row as it is after any concurrent writer
# committed. A batch without checks or meters gets a row of NULLs there, which matches no counter.
_CONSUME_SQL = """
WITH checked (position, subject, metric, "window", window_start, amount, max_used) AS (VALUES {checks}),
current AS (
    SELECT checked.position, counter.used, counter.used + checked.amount > checked.max_used AS over
    FROM checked JOIN quotas_quotacounter AS counter
    ON counter.subject = checked.subject AND counter.metric = checked.metric
    AND counter."window" = checked."window" AND counter.window_start = checked.window_start
),
taken AS (
    INSERT INTO quotas_quotacounter (subject, metric, "window", window_start, window_end, used)
    SELECT * FROM (VALUES {takes}) AS take (subject, metric, "window", window_start, window_end, used)
    WHERE NOT EXISTS (SELECT 1 FROM current WHERE current.over)
    ON CONFLICT (subject, metric, "window", window_start)
    DO UPDATE SET used = quotas_quotacounter.used + excluded.used
    WHERE quotas_quotacounter.used + excluded.used <= %s
    RETURNING subject, metric, "window", used
),
metered AS (
    INSERT INTO quotas_usagedaily (subject, metric, day, amount)
    SELECT * FROM (VALUES {meters}) AS meter (subject, metric, day, amount)
    WHERE meter.subject IS NOT NULL AND (SELECT count(*) FROM taken) = %s
    ON CONFLICT (subject, metric, day)
    DO UPDATE SET amount = quotas_usagedaily.amount + excluded.amount
)
SELECT 'checked', position, NULL, NULL, NULL, used FROM current
UNION ALL
SELECT 'taken', NULL, subject, metric, "window", used FROM taken
"""

# Typed, since PostgreSQL types a VALUES list from its first row, and a text literal compares with no timestamp.
_CHECK_ROW = "(%s::integer, %s, %s, %s, %s::timestamptz, %s::bigint, %s::bigint)"
_NO_CHECK_ROW = "(NULL::integer, NULL, NULL, NULL, NULL::timestamptz, 0::bigint, 0::bigint)"
_TAKE_ROW = "(%s, %s, %s, %s::timestamptz, %s::timestamptz, %s::bigint)"
_METER_ROW = "(%s, %s, %s::date, %s::bigint)"
_NO_METER_ROW = "(NULL, NULL, NULL::date, 0::bigint)"

_METER_SQL = """
INSERT INTO quotas_usagedaily (subject, metric, day, amount)
VALUES {rows}
ON CONFLICT (subject, metric, day)
DO UPDATE SET amount = quotas_usagedaily.amount + excluded.amount
"""
