"""The contract every quota backend fulfils; quotas.service is the only caller.

A backend does the atomic part (check-and-add, count-and-insert) and reports
raw numbers; the service validates input, works out windows and builds
Decisions, so both backends behave identically by construction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from quotas.decisions import Lease
from quotas.windows import Window, usage_day

# Counters outlive their window a little so a refund for work that started just
# before the window ended (refund(..., now=<when consumed>)) still finds them.
COUNTER_KEPT_AFTER_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class CounterKey:
    """One counter: a subject's use of a metric in one window, billed to one usage day."""

    subject: str
    metric: str
    window: Window
    window_start: datetime
    window_end: datetime
    day: date

    @classmethod
    def at(cls, subject: str, metric: str, window: Window, now: datetime) -> CounterKey:
        window_start, window_end = window.bounds(now)
        return cls(subject, metric, window, window_start, window_end, usage_day(now))


class Take(NamedTuple):
    """One counter of a `consume_all` batch: take `amount` (0 only checks) if the counter stays <= `limit`."""

    counter: CounterKey
    amount: int
    limit: int
    meter: bool  # also add the amount to the day's usage


class ConsumeResult(NamedTuple):
    granted: bool  # every take fitted and was taken; when False, nothing was
    used: tuple[int, ...]  # each counter after the call, in the order of the takes


class ReserveResult(NamedTuple):
    granted: bool
    # Refused: the live leases, and when the earliest lapses (None when none is held), for the refusal.
    # Granted: a backend may leave both unset (nothing reads them; counting would cost a statement).
    held: int | None = None
    first_expiry: datetime | None = None


class ReserveAllResult(NamedTuple):
    """`reserve_all`: every lease held (`refused` None), or none, and which was refused first, with its
    subject's live leases and when the earliest lapses (as `ReserveResult`)."""

    refused: int | None
    held: int | None = None
    first_expiry: datetime | None = None


class QuotaBackend(ABC):
    # True when each metered charge also writes the day's UsageDaily row (in the same transaction);
    # False when usage lives in the backend until `rollup_usage` copies it.
    usage_written_with_each_charge: bool = False
    # True when charges are writes in the caller's database transaction, undone when it rolls back.
    charges_roll_back_with_the_transaction: bool = False

    @abstractmethod
    def consume_all(self, takes: Sequence[Take], now: datetime) -> ConsumeResult:
        """Atomically: if every counter stays <= its limit with its amount added, add them all, else change nothing.

        The counters are distinct. A take with `meter` also adds its amount to the day's usage.
        """

    @abstractmethod
    def peek(self, counter: CounterKey) -> int:
        """The counter's current value (0 if it was never used)."""

    @abstractmethod
    def refund(self, counter: CounterKey, amount: int, *, meter: bool) -> int:
        """Subtract up to `amount`, never below 0; with `meter`, take the same off usage. Returns what was subtracted."""

    @abstractmethod
    def reserve(self, lease: Lease, limit: int, now: datetime) -> ReserveResult:
        """Hold `lease` if fewer than `limit` leases of its subject and metric are live at `now`."""

    def reserve_all(self, wanted: Sequence[tuple[Lease, int]], now: datetime) -> ReserveAllResult:
        """Hold every lease of `wanted` (each with its limit, as `reserve`), or none: the subjects and metrics
        are distinct. One lease at a time here, in order, the ones held given back at a refusal; a backend
        may do it in fewer statements or round trips."""
        held: list[Lease] = []
        try:
            for index, (lease, limit) in enumerate(wanted):
                result = self.reserve(lease, limit, now)
                if not result.granted:
                    self.release_all(held)
                    return ReserveAllResult(index, result.held, result.first_expiry)
                held.append(lease)
        except BaseException:
            self.release_all(held)
            raise
        return ReserveAllResult(None)

    @abstractmethod
    def renew_all(self, leases: Sequence[Lease], expires_at: datetime, now: datetime) -> int:
        """Move the expiry of each lease still live at `now` to `expires_at`; returns how many were. A lapsed
        lease stays lapsed: its slot may have gone to someone else."""

    @abstractmethod
    def live(self, leases: Sequence[Lease], now: datetime) -> set[str]:
        """The ids of those of `leases` still held at `now`."""

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Drop `lease`; releasing twice or after expiry is harmless."""

    def release_all(self, leases: Sequence[Lease]) -> None:
        """Drop every lease (one round trip where the backend can)."""
        for lease in leases:
            self.release(lease)

    @abstractmethod
    def rollup_usage(self, now: datetime) -> int:
        """Bring UsageDaily up to date with the backend's per-day totals; returns the rows written."""

    @abstractmethod
    def purge_expired(self, now: datetime) -> int:
        """Delete counters and leases that can no longer matter; returns how many were deleted."""
