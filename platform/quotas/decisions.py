"""What the quota service answers: a Decision, a Lease, or QuotaExceeded, and the HTTP headers for them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone


@dataclass(frozen=True)
class Decision:
    """The outcome of one quota check.

    `used` is the count after this call (unchanged when denied), `reset_at` is
    when the window ends (for leases: when the earliest live lease expires), and
    `retry_after_seconds` is 0 when allowed, otherwise the whole seconds until
    `reset_at`, at least 1.
    """

    allowed: bool
    used: int
    limit: int
    remaining: int
    reset_at: datetime
    retry_after_seconds: int


def decide(*, allowed: bool, used: int, limit: int, reset_at: datetime, now: datetime) -> Decision:
    """Build a Decision; the one place remaining and retry-after are derived."""
    retry_after_seconds = 0 if allowed else max(1, seconds_until(reset_at, now))
    return Decision(
        allowed=allowed,
        used=used,
        limit=limit,
        remaining=max(0, limit - used),
        reset_at=reset_at,
        retry_after_seconds=retry_after_seconds,
    )


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from `now` until `moment`, rounded up so a client never retries too early."""
    return max(0, math.ceil((moment - now).total_seconds()))


@dataclass(frozen=True)
class Lease:
    """One held concurrency slot; give it back with `release(lease)`, or it lapses at `expires_at`."""

    subject: str
    metric: str
    lease_id: str
    expires_at: datetime


class QuotaExceeded(Exception):
    """Raised by the raising variants (`consume_or_raise`, `reserved`); the API layer turns it into 429."""

    def __init__(self, metric: str, decision: Decision):
        self.metric = metric
        self.decision = decision
        super().__init__(
            f"Quota exceeded for {metric}: limit {decision.limit}, retry after {decision.retry_after_seconds} s"
        )

    @property
    def limit(self) -> int:
        return self.decision.limit

    @property
    def remaining(self) -> int:
        return self.decision.remaining

    @property
    def reset_at(self) -> datetime:
        return self.decision.reset_at

    @property
    def retry_after_seconds(self) -> int:
        return self.decision.retry_after_seconds


def rate_limit_headers(decision: Decision, *, now: datetime | None = None) -> dict[str, str]:
    """HTTP headers for a decision: the IETF draft RateLimit-* fields, and Retry-After when denied.

    RateLimit-Reset is delta-seconds until the window resets, per
    draft-ietf-httpapi-ratelimit-headers. Retry-After is only sent on a denial:
    RFC 9110 gives it meaning on 429/503, not on a success.
    """
    now = now or timezone.now()
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(seconds_until(decision.reset_at, now)),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_seconds)
    return headers
