"""Charging a grant's usage against its limits, through the quota service.

    decision = metering.charge(grant, "queries", 1)        # or a LIMIT_REACHED Refusal
    metering.charge_all([(grant, "queries", 1), (grant, "rows_returned", 0)])   # all or none, one round trip
    metering.meter([(grant, "rows_returned", 1234)])        # usage already done: counted, never refused
    with metering.query_slot(grant):                        # concurrent_queries, or a LIMIT_REACHED Refusal
        ...
    metering.refund(grant, "rows_returned", unused)

A query slot is a short lease (VITAMIN_QUERY_SLOT_LEASE_SECONDS) that this process renews
while the query runs (quotas.keeper): a process killed mid-query gives its slots back
within that lifetime, not after the query's whole time limit.

Usage is counted per subscription (quota subject `subscription:{id}`): each
subscription has its own plan, so each has its own counters, and the same
subscription requested again keeps its counters for the day. Daily limits use
the quota service's DAY window (a calendar day in VITAMIN_TIME_ZONE).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from django.conf import settings

from access.service import Grant
from datasets.query.limits import CONCURRENT_QUERIES, DAILY_METRICS
from quotas.keeper import keeper
from quotas.service import (
    Charge,
    Decision,
    Lease,
    Window,
    consume_all,
    get_backend,
    live_leases,
    release_all,
    reserve_lease,
    reserve_leases,
)
from quotas.service import refund as refund_quota
from vitamin.refusals import Kind, Refusal

# What `meter` charges against: use that already happened always counts.
_NO_LIMIT = 2**62

Use = tuple[Grant, str, int]  # (grant, daily metric, amount)


def charge(grant: Grant, metric: str, amount: int, *, now: datetime | None = None) -> Decision:
    """Consume `amount` of a daily metric (DAILY_METRICS) for the grant's subscription, or raise a LIMIT_REACHED Refusal."""
    return charge_all([(grant, metric, amount)], now=now)[0]


def charge_all(uses: Sequence[Use], *, now: datetime | None = None) -> list[Decision]:
    """Consume every use or none (one quota round trip); a LIMIT_REACHED Refusal names the metric that did not fit.

    An amount of 0 checks that the metric is not already over its limit.
    """
    charges = [
        Charge(grant.quota_subject, metric, amount, grant.limits.daily_limit(metric), Window.DAY)
        for grant, metric, amount in uses
    ]
    decisions = consume_all(charges, now=now)
    if decisions and not decisions[0].allowed:
        refused = next(
            (index for index, charge in enumerate(charges) if decisions[index].used + charge.amount > charge.limit), 0
        )
        raise quota_exceeded(charges[refused].metric, decisions[refused], now=now)
    return decisions


def meter(uses: Sequence[Use], *, now: datetime | None = None) -> None:
    """Count use that already happened (rows sent, bytes scanned): never refused, even past the limit.

    The limit then refuses the next `charge` of that metric, which checks it first.
    """
    _check_metrics(metric for _, metric, _ in uses)
    # Nothing to count for an amount of 0, and nothing can refuse it: no statement for it.
    charges = [
        Charge(grant.quota_subject, metric, amount, _NO_LIMIT, Window.DAY) for grant, metric, amount in uses if amount
    ]
    if charges:
        consume_all(charges, now=now)


def charges_roll_back() -> bool:
    """Whether a charge made in a database transaction is undone when it rolls back (the database backend),
    or must be refunded (Redis)."""
    return get_backend().charges_roll_back_with_the_transaction


def refund(grant: Grant, metric: str, amount: int, *, now: datetime | None = None) -> int:
    """Give back what was charged for work that did not happen; pass the `now` the charge used."""
    _check_metrics([metric])
    return refund_quota(grant.quota_subject, metric, amount, Window.DAY, now=now)


@contextmanager
def query_slot(grant: Grant, *, now: datetime | None = None) -> Iterator[Lease]:
    """Hold one of the subscription's concurrent query slots for the block, or raise a LIMIT_REACHED Refusal."""
    with _slot(grant.quota_subject, grant.limits.concurrent_queries, now=now) as lease:
        yield lease


@contextmanager
def institution_query_slot(institution_id: int, *, now: datetime | None = None):
    """Hold one of the institution's VITAMIN_QUERY_CONCURRENT_PER_INSTITUTION slots, or raise a LIMIT_REACHED Refusal.

    Whatever its subscriptions allow each, an institution runs at most this many queries at once.
    """
    subject = f"institution:{institution_id}"
    with _slot(subject, settings.QUERY_CONCURRENT_PER_INSTITUTION, now=now) as lease:
        yield lease


def hold_query_slots(institution_id: int, grants: Sequence[Grant], *, holder: str = "") -> list[Lease]:
    """The slots one query holds: the institution's, then each subscription's (`institution_query_slot`,
    `query_slot`), or a LIMIT_REACHED Refusal with none held. Give them back with `release_query_slots`.

    With `holder` (a query's id) the institution's lease is named `{holder}.0`, so that `query_alive` can
    tell later whether the query's process still holds it. A slot lasts while this process runs the query
    and streams its result (the keeper renews it), not a fixed time."""
    wanted = [(f"institution:{institution_id}", settings.QUERY_CONCURRENT_PER_INSTITUTION)]
    wanted += [(grant.quota_subject, grant.limits.concurrent_queries) for grant in grants]
    ttl_seconds = settings.QUERY_SLOT_LEASE_SECONDS
    held, refused, decision = reserve_leases(
        [(subject, limit, f"{holder}.{index}" if holder else None) for index, (subject, limit) in enumerate(wanted)],
        CONCURRENT_QUERIES,
        ttl_seconds,
    )
    if refused is not None:
        raise quota_exceeded(CONCURRENT_QUERIES, decision, scope=wanted[refused][0].partition(":")[0])
    keeper().keep(held, ttl_seconds)
    return held


def release_query_slots(leases: Sequence[Lease]) -> None:
    """Give back the slots `hold_query_slots` gave (one statement); harmless for any already gone."""
    _give_back(leases)


def query_alive(institution_id: int, holder: str) -> bool:
    """Whether the query `holder` (the id `hold_query_slots` got) still holds its institution slot: False once
    it gave its slots back or its process died (the lease lapsed unrenewed)."""
    lease = Lease(f"institution:{institution_id}", CONCURRENT_QUERIES, f"{holder}.0", expires_at=None)
    return bool(live_leases([lease]))


@contextmanager
def _slot(subject: str, limit: int, *, now: datetime | None) -> Iterator[Lease]:
    lease = _reserve_slot(subject, limit, now=now)
    try:
        yield lease
    finally:
        _give_back([lease])


def _reserve_slot(subject: str, limit: int, *, now: datetime | None = None, lease_id: str | None = None) -> Lease:
    """One concurrent query slot of `subject`, a short lease this process renews until it gives it back (so a
    killed process frees it within VITAMIN_QUERY_SLOT_LEASE_SECONDS), or a LIMIT_REACHED Refusal naming whose
    limit it is."""
    ttl_seconds = settings.QUERY_SLOT_LEASE_SECONDS
    lease, decision = reserve_lease(subject, CONCURRENT_QUERIES, limit, ttl_seconds, now=now, lease_id=lease_id)
    if lease is None:
        raise quota_exceeded(CONCURRENT_QUERIES, decision, now=now, scope=subject.partition(":")[0])
    keeper().keep([lease], ttl_seconds)
    return lease


def _give_back(leases: Sequence[Lease]) -> None:
    keeper().drop(leases)
    release_all(leases)


def quota_exceeded(
    metric: str, decision: Decision, *, now: datetime | None = None, scope: str = "subscription"
) -> Refusal:
    """The refusal for a denied quota decision: when to retry, and the limit, what is left and when it resets.

    `scope` says whose limit it is: the subscription's plan, or the institution's (concurrency).
    """
    if metric == CONCURRENT_QUERIES:
        message = f"All {decision.limit} concurrent query slots of your {scope} are in use; retry when one finishes."
    else:
        message = (
            f"The daily limit on {metric} ({decision.limit}) would be exceeded; "
            f"{decision.remaining} left, resets in {decision.retry_after_seconds} s."
        )
    return Refusal(
        message,
        code="quota_exceeded",
        kind=Kind.LIMIT_REACHED,
        retry_after=decision.retry_after_seconds,
        details={
            "metric": metric,
            "scope": scope,
            "limit": decision.limit,
            "remaining": decision.remaining,
            "reset_at": decision.reset_at.isoformat(),
        },
    )


def _check_metrics(metrics) -> None:
    for metric in metrics:
        if metric not in DAILY_METRICS:
            raise ValueError(f"{metric!r} is not a daily metric; known: {', '.join(DAILY_METRICS)}")
