"""Charging a grant's usage against its limits, through the quota service.

    decision = metering.charge(grant, "queries", 1)        # or ApiError 429
    with metering.query_slot(grant):                        # concurrent_queries, or ApiError 429
        ...
    metering.refund(grant, "rows_returned", unused)

Usage is counted per subscription (quota subject `subscription:{id}`): each
subscription has its own plan, so each has its own counters, and the same
subscription requested again keeps its counters for the day. Daily limits use
the quota service's DAY window (a calendar day in VITAMIN_TIME_ZONE).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from grants.limits import CONCURRENT_QUERIES, DAILY_METRICS
from grants.service import Grant
from quotas.service import Decision, Lease, QuotaExceeded, Window, consume, rate_limit_headers, reserved
from quotas.service import refund as refund_quota
from vitamin.errors import ApiError

# A query slot outlives the query time limit by this much, so a crashed process frees it soon after.
QUERY_SLOT_MARGIN_SECONDS = 30


def charge(grant: Grant, metric: str, amount: int, *, now: datetime | None = None) -> Decision:
    """Consume `amount` of a daily metric (DAILY_METRICS) for the grant's subscription, or raise a 429 ApiError."""
    decision = consume(grant.quota_subject, metric, amount, grant.limits.daily_limit(metric), Window.DAY, now=now)
    if not decision.allowed:
        raise quota_exceeded(metric, decision, now=now)
    return decision


def refund(grant: Grant, metric: str, amount: int, *, now: datetime | None = None) -> int:
    """Give back what was charged for work that did not happen; pass the `now` the charge used."""
    if metric not in DAILY_METRICS:
        raise ValueError(f"{metric!r} is not a daily metric; known: {', '.join(DAILY_METRICS)}")
    return refund_quota(grant.quota_subject, metric, amount, Window.DAY, now=now)


@contextmanager
def query_slot(grant: Grant, *, now: datetime | None = None) -> Iterator[Lease]:
    """Hold one of the subscription's concurrent query slots for the block, or raise a 429 ApiError."""
    ttl_seconds = grant.limits.max_query_seconds + QUERY_SLOT_MARGIN_SECONDS
    acquired = False
    try:
        with reserved(
            grant.quota_subject, CONCURRENT_QUERIES, grant.limits.concurrent_queries, ttl_seconds, now=now
        ) as lease:
            acquired = True
            yield lease
    except QuotaExceeded as exc:
        if acquired:  # raised inside the block by something else: not ours to translate
            raise
        raise quota_exceeded(CONCURRENT_QUERIES, exc.decision, now=now) from None


def quota_exceeded(metric: str, decision: Decision, *, now: datetime | None = None) -> ApiError:
    """The 429 for a denied quota decision, with Retry-After and RateLimit-* headers."""
    if metric == CONCURRENT_QUERIES:
        message = f"All {decision.limit} concurrent query slots are in use; retry when one finishes."
    else:
        message = (
            f"The daily limit on {metric} ({decision.limit}) would be exceeded; "
            f"{decision.remaining} left, resets in {decision.retry_after_seconds} s."
        )
    return ApiError(
        message,
        code="quota_exceeded",
        status_code=429,
        details={
            "metric": metric,
            "limit": decision.limit,
            "remaining": decision.remaining,
            "reset_at": decision.reset_at.isoformat(),
        },
        headers=rate_limit_headers(decision, now=now),
    )
