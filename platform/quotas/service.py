"""The quota service: the one place Vitamin checks and counts quota use.

Two kinds of quota:

- counters: `consume(subject, metric, amount, limit, window)` atomically takes
  `amount` if it fits under `limit` in the current fixed window (quotas.windows),
  `consume_all([Charge(...), ...])` takes several or none in one round trip,
  `refund` gives back what was not used;
- concurrency leases: `reserve(subject, metric, limit, ttl_seconds)` holds one of
  `limit` slots until `release(lease)` or until the lease expires; `renew` moves a
  live lease's expiry on, so a short lease renewed while its holder works (quotas.keeper)
  is given back soon after the holder dies; `live_leases` says which are still held.

Everything consumed is also counted per day in UsageDaily (read with `usage`).
The backend (database or Redis) comes from settings.QUOTA_BACKEND; every
function takes `backend=` to pick one explicitly and `now=` so tests can move
time instead of sleeping. See docs/quotas.md.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from quotas.backends import CounterKey, QuotaBackend, Take
from quotas.database_backend import DatabaseBackend
from quotas.decisions import Decision, Lease, QuotaExceeded, decide, rate_limit_headers
from quotas.models import LEASE_ID_MAX_LENGTH, METRIC_MAX_LENGTH, SUBJECT_MAX_LENGTH, UsageDaily
from quotas.redis_backend import RedisBackend
from quotas.windows import Window

__all__ = [
    "Charge",
    "DatabaseBackend",
    "Decision",
    "Lease",
    "QuotaBackend",
    "QuotaExceeded",
    "RedisBackend",
    "Window",
    "consume",
    "consume_all",
    "consume_or_raise",
    "get_backend",
    "peek",
    "purge_expired",
    "rate_limit_headers",
    "refund",
    "release",
    "release_all",
    "live_leases",
    "renew",
    "reserve_lease",
    "reserve_leases",
    "reserve",
    "reserved",
    "rollup_usage",
    "usage",
]

# Metric names are code constants; without colons they can prefix Redis keys unambiguously.
METRIC_PATTERN = re.compile(rf"[A-Za-z0-9_.-]{{1,{METRIC_MAX_LENGTH}}}")


@functools.cache
def get_backend() -> QuotaBackend:
    """The backend settings.QUOTA_BACKEND names, created once per process (`get_backend.cache_clear()` resets it)."""
    if settings.QUOTA_BACKEND == "redis":
        return RedisBackend(settings.REDIS_URL)
    return DatabaseBackend()


@dataclass(frozen=True)
class Charge:
    """One counter in a `consume_all` batch: `amount` of `metric` for `subject` under `limit` per `window`."""

    subject: str
    metric: str
    amount: int
    limit: int
    window: Window
    meter: bool = True


def consume(
    subject: str,
    metric: str,
    amount: int,
    limit: int,
    window: Window,
    *,
    meter: bool = True,
    backend: QuotaBackend | None = None,
    now: datetime | None = None,
) -> Decision:
    """Atomically take `amount` of `metric` for `subject` in the current `window`, if it fits.

    Allowed iff used + amount <= limit; when denied nothing is consumed. An
    `amount` of 0 is a pure check that writes nothing: allowed unless the
    subject is already over the limit (possible after a limit was lowered).
    With `meter` the amount also counts in UsageDaily; a metric enforced in two
    windows (say 60 per minute and 10,000 per day) is metered in one of them only.
    """
    charge = Charge(subject, metric, amount, limit, window, meter)
    return consume_all([charge], backend=backend, now=now)[0]


def consume_all(
    charges: Sequence[Charge], *, backend: QuotaBackend | None = None, now: datetime | None = None
) -> list[Decision]:
    """`consume` for several counters at once, all or nothing, in one transaction or script.

    Returns a Decision per charge, in order: all allowed, or all denied with
    nothing taken (the one that did not fit is the first whose `used + amount`
    passes its limit). Each counter (subject, metric, window) may appear once.
    """
    now = _aware(now)
    takes = []
    for charge in charges:
        _check_key(charge.subject, charge.metric)
        _check_count("amount", charge.amount)
        _check_count("limit", charge.limit)
        counter = CounterKey.at(charge.subject, charge.metric, Window(charge.window), now)
        takes.append(Take(counter, charge.amount, charge.limit, charge.meter))
    if len({take.counter for take in takes}) != len(takes):
        raise ValueError("a batch may charge each counter once")
    if not takes:
        return []
    granted, used = (backend or get_backend()).consume_all(takes, now)
    return [
        decide(
            allowed=granted,
            used=used_now,
            limit=take.limit,
            reset_at=take.counter.window_end,
            now=now,
        )
        for take, used_now in zip(takes, used, strict=True)
    ]


def consume_or_raise(
    subject: str,
    metric: str,
    amount: int,
    limit: int,
    window: Window,
    *,
    meter: bool = True,
    backend: QuotaBackend | None = None,
    now: datetime | None = None,
) -> Decision:
    """`consume`, raising QuotaExceeded when denied."""
    decision = consume(subject, metric, amount, limit, window, meter=meter, backend=backend, now=now)
    if not decision.allowed:
        raise QuotaExceeded(metric, decision)
    return decision


def peek(
    subject: str, metric: str, window: Window, *, backend: QuotaBackend | None = None, now: datetime | None = None
) -> int:
    """How much of `metric` `subject` has used in the current `window`."""
    now = _aware(now)
    _check_key(subject, metric)
    return (backend or get_backend()).peek(CounterKey.at(subject, metric, Window(window), now))


def usage_not_rolled_up(
    subjects: Iterable[str], metrics: Iterable[str], *, now: datetime | None = None
) -> dict[tuple[str, str], int]:
    """Today's usage per (subject, metric) that UsageDaily does not show yet: {} when the backend writes
    usage with each charge, else what its day counters hold."""
    backend = get_backend()
    if backend.usage_written_with_each_charge:
        return {}
    metrics = list(metrics)
    return {
        (subject, metric): peek(subject, metric, Window.DAY, backend=backend, now=now)
        for subject in subjects
        for metric in metrics
    }


def refund(
    subject: str,
    metric: str,
    amount: int,
    window: Window,
    *,
    meter: bool = True,
    backend: QuotaBackend | None = None,
    now: datetime | None = None,
) -> int:
    """Give back up to `amount` consumed for work that did not happen; returns what was given back.

    The counter never drops below 0, and UsageDaily drops by the same amount
    (pass the same `meter` as to consume). Refunds apply to the window
    containing `now`: pass the `now` the consume used if the work may have
    crossed a window boundary.
    """
    now = _aware(now)
    _check_key(subject, metric)
    _check_count("amount", amount)
    if amount == 0:
        return 0
    counter = CounterKey.at(subject, metric, Window(window), now)
    return (backend or get_backend()).refund(counter, amount, meter=meter)


def reserve(
    subject: str,
    metric: str,
    limit: int,
    ttl_seconds: float,
    *,
    backend: QuotaBackend | None = None,
    now: datetime | None = None,
) -> Lease | None:
    """Hold one of `limit` concurrent slots for up to `ttl_seconds`; None when all are taken."""
    lease, _ = reserve_lease(subject, metric, limit, ttl_seconds, backend=backend, now=now)
    return lease


def release(lease: Lease, *, backend: QuotaBackend | None = None) -> None:
    """Give a slot back. Harmless if the lease already expired or was released."""
    (backend or get_backend()).release(lease)


def release_all(leases: Sequence[Lease], *, backend: QuotaBackend | None = None) -> None:
    """Give several slots back at once (one statement or round trip). Harmless for any already gone."""
    (backend or get_backend()).release_all(leases)


def renew(
    leases: Sequence[Lease], ttl_seconds: float, *, backend: QuotaBackend | None = None, now: datetime | None = None
) -> int:
    """Extend each lease still live to `ttl_seconds` from now (one statement or script); returns how many were.
    A lease that already lapsed is not revived."""
    now = _aware(now)
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds!r}")
    return (backend or get_backend()).renew_all(leases, _lease_expiry(now, ttl_seconds), now)


def live_leases(
    leases: Sequence[Lease], *, backend: QuotaBackend | None = None, now: datetime | None = None
) -> set[str]:
    """The ids of those of `leases` still held now (neither released nor lapsed)."""
    if not leases:
        return set()
    return (backend or get_backend()).live(leases, _aware(now))


@contextmanager
def reserved(
    subject: str,
    metric: str,
    limit: int,
    ttl_seconds: float,
    *,
    backend: QuotaBackend | None = None,
    now: datetime | None = None,
) -> Iterator[Lease]:
    """Hold a slot for the duration of the block; raises QuotaExceeded when all `limit` slots are taken."""
    lease, decision = reserve_lease(subject, metric, limit, ttl_seconds, backend=backend, now=now)
    if lease is None:
        raise QuotaExceeded(metric, decision)
    try:
        yield lease
    finally:
        release(lease, backend=backend)


def reserve_lease(
    subject: str,
    metric: str,
    limit: int,
    ttl_seconds: float,
    *,
    backend: QuotaBackend | None = None,
    now: datetime | None = None,
    lease_id: str | None = None,
) -> tuple[Lease | None, Decision | None]:
    """`reserve` with the refusing decision: (lease, None) when granted (nothing reads a decision then), else
    (None, the decision that refused). `lease_id` (unique, at most 64 characters) names the lease after its
    holder, so that others can ask whether it is still held (`live_leases`); default a random one."""
    now = _aware(now)
    _check_key(subject, metric)
    _check_count("limit", limit)
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds!r}")
    if lease_id is not None and not 0 < len(lease_id) <= LEASE_ID_MAX_LENGTH:
        raise ValueError(f"lease_id must be 1 to {LEASE_ID_MAX_LENGTH} characters")
    expires_at = _lease_expiry(now, ttl_seconds)
    candidate = Lease(subject=subject, metric=metric, lease_id=lease_id or uuid.uuid4().hex, expires_at=expires_at)
    result = (backend or get_backend()).reserve(candidate, limit, now)
    if result.granted:
        return candidate, None
    # With limit 0 nothing is ever held, so no lease expiry says when to retry; a lease's lifetime does.
    reset_at = result.first_expiry or expires_at
    return None, decide(allowed=False, used=result.held or 0, limit=limit, reset_at=reset_at, now=now)


def reserve_leases(
    wanted: Sequence[tuple[str, int, str | None]],
    metric: str,
    ttl_seconds: float,
    *,
    backend: QuotaBackend | None = None,
    now: datetime | None = None,
) -> tuple[list[Lease], int | None, Decision | None]:
    """`reserve_lease` for several subjects at once, all or none: `wanted` is (subject, limit, lease_id or None)
    for distinct subjects. Returns (the leases, None, None) when every one is held, else ([], the index of
    the first refused, its refusing decision), with none held."""
    now = _aware(now)
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds!r}")
    if len({subject for subject, _, _ in wanted}) != len(wanted):
        raise ValueError("a batch of leases holds each subject once")
    expires_at = _lease_expiry(now, ttl_seconds)
    candidates = []
    for subject, limit, lease_id in wanted:
        _check_key(subject, metric)
        _check_count("limit", limit)
        if lease_id is not None and not 0 < len(lease_id) <= LEASE_ID_MAX_LENGTH:
            raise ValueError(f"lease_id must be 1 to {LEASE_ID_MAX_LENGTH} characters")
        lease = Lease(subject=subject, metric=metric, lease_id=lease_id or uuid.uuid4().hex, expires_at=expires_at)
        candidates.append((lease, limit))
    result = (backend or get_backend()).reserve_all(candidates, now)
    if result.refused is None:
        return [lease for lease, _ in candidates], None, None
    limit = candidates[result.refused][1]
    reset_at = result.first_expiry or expires_at
    return [], result.refused, decide(allowed=False, used=result.held or 0, limit=limit, reset_at=reset_at, now=now)


def _lease_expiry(now: datetime, ttl_seconds: float) -> datetime:
    expires_at = now + timedelta(seconds=ttl_seconds)
    # Whole milliseconds, the resolution Redis scores keep, so both backends expire a lease at the same instant.
    return expires_at.replace(microsecond=expires_at.microsecond // 1000 * 1000)


def rollup_usage(*, backend: QuotaBackend | None = None, now: datetime | None = None) -> int:
    """Bring UsageDaily up to date (a no-op for the database backend, which writes it as it goes)."""
    return (backend or get_backend()).rollup_usage(_aware(now))


def purge_expired(*, backend: QuotaBackend | None = None, now: datetime | None = None) -> int:
    """Delete counters of long-past windows and expired leases; returns how many went."""
    return (backend or get_backend()).purge_expired(_aware(now))


def usage(subject: str, day_from: date, day_to: date, *, metric: str | None = None) -> list[UsageDaily]:
    """Daily usage rows of `subject` from `day_from` to `day_to` inclusive, by day then metric.

    With the Redis backend the rows lag consumption until the next rollup (every few minutes).
    """
    rows = UsageDaily.objects.filter(subject=subject, day__gte=day_from, day__lte=day_to)
    if metric is not None:
        rows = rows.filter(metric=metric)
    return list(rows.order_by("day", "metric"))


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return timezone.now()
    if timezone.is_naive(now):
        raise ValueError("now must be an aware datetime")
    return now


def _check_key(subject: str, metric: str) -> None:
    if not isinstance(subject, str) or not 0 < len(subject) <= SUBJECT_MAX_LENGTH:
        raise ValueError(f"subject must be a string of 1 to {SUBJECT_MAX_LENGTH} characters")
    if not isinstance(metric, str) or not METRIC_PATTERN.fullmatch(metric):
        raise ValueError(f"metric must match {METRIC_PATTERN.pattern}, not {metric!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
