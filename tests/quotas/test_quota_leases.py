"""Concurrency leases, on both backends: at most `limit` held, released or expired slots come back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from quotas.models import QuotaCounter, QuotaLease, QuotaLeaseGuard
from quotas.service import (
    DatabaseBackend,
    Lease,
    QuotaExceeded,
    Window,
    consume,
    peek,
    purge_expired,
    release,
    release_all,
    reserve,
    reserved,
)

pytestmark = pytest.mark.django_db


def test_at_most_limit_leases_are_held(backend, subject, noon):
    leases = [reserve(subject, "concurrent_queries", 2, 60, backend=backend, now=noon) for _ in range(3)]

    assert leases[0] is not None and leases[1] is not None
    assert leases[2] is None
    assert leases[0].lease_id != leases[1].lease_id
    assert leases[0].expires_at == noon + timedelta(seconds=60)


def test_a_released_slot_can_be_taken_again(backend, subject, noon):
    first = reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon)
    assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is None

    release(first, backend=backend)
    release(first, backend=backend)  # twice is harmless

    assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is not None
    assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is None


def test_a_crashed_holder_loses_its_slot_when_the_lease_expires(backend, subject, noon):
    reserve(subject, "concurrent_queries", 1, 30, backend=backend, now=noon)  # never released

    just_before = noon + timedelta(seconds=30) - timedelta(milliseconds=1)
    assert reserve(subject, "concurrent_queries", 1, 30, backend=backend, now=just_before) is None
    assert reserve(subject, "concurrent_queries", 1, 30, backend=backend, now=noon + timedelta(seconds=30)) is not None


def test_releasing_another_subjects_lease_id_frees_nothing(backend, subject, noon):
    mine = reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon)
    theirs = reserve("someone-else", "concurrent_queries", 1, 60, backend=backend, now=noon)

    release(Lease(subject, "concurrent_queries", theirs.lease_id, theirs.expires_at), backend=backend)
    release(Lease("someone-else", "concurrent_queries", mine.lease_id, mine.expires_at), backend=backend)

    assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is None
    assert reserve("someone-else", "concurrent_queries", 1, 60, backend=backend, now=noon) is None


def test_release_all_frees_exactly_the_leases_given(backend, subject, noon):
    first = reserve(subject, "concurrent_queries", 2, 60, backend=backend, now=noon)
    second = reserve(subject, "concurrent_queries", 2, 60, backend=backend, now=noon)
    other = reserve("someone-else", "concurrent_queries", 1, 60, backend=backend, now=noon)
    stranger = Lease("someone-else", "concurrent_queries", first.lease_id, first.expires_at)  # another subject's id

    release_all([first, stranger], backend=backend)

    assert reserve("someone-else", "concurrent_queries", 1, 60, backend=backend, now=noon) is None  # still held
    assert reserve(subject, "concurrent_queries", 2, 60, backend=backend, now=noon) is not None  # first's slot
    assert reserve(subject, "concurrent_queries", 2, 60, backend=backend, now=noon) is None
    release_all([second, other, second], backend=backend)  # twice in one call, and nothing: harmless
    release_all([], backend=backend)
    assert reserve("someone-else", "concurrent_queries", 1, 60, backend=backend, now=noon) is not None


def test_reserved_holds_the_slot_for_the_block_only(backend, subject, noon):
    with reserved(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) as lease:
        assert lease.subject == subject
        assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is None

    assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is not None


def test_reserved_releases_when_the_block_fails(backend, subject, noon):
    with pytest.raises(RuntimeError), reserved(subject, "concurrent_queries", 1, 60, backend=backend, now=noon):
        raise RuntimeError("query crashed")

    assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is not None


def test_reserved_raises_with_the_time_the_first_slot_frees_up(backend, subject, noon):
    reserve(subject, "concurrent_queries", 2, 50, backend=backend, now=noon)
    reserve(subject, "concurrent_queries", 2, 90, backend=backend, now=noon + timedelta(seconds=5))

    later = noon + timedelta(seconds=10)
    with (
        pytest.raises(QuotaExceeded) as raised,
        reserved(subject, "concurrent_queries", 2, 60, backend=backend, now=later),
    ):
        pytest.fail("must not enter the block")

    error = raised.value
    assert (error.metric, error.limit, error.remaining) == ("concurrent_queries", 2, 0)
    assert error.decision.used == 2
    assert error.reset_at == noon + timedelta(seconds=50)
    assert error.retry_after_seconds == 40


def test_a_zero_limit_never_grants_and_suggests_a_lease_lifetime(backend, subject, noon):
    with pytest.raises(QuotaExceeded) as raised, reserved(subject, "exports", 0, 120, backend=backend, now=noon):
        pytest.fail("must not enter the block")

    assert raised.value.retry_after_seconds == 120


def test_leases_and_counters_of_one_metric_do_not_interfere(backend, subject, noon):
    consume(subject, "queries", 5, 5, Window.DAY, backend=backend, now=noon)

    assert reserve(subject, "queries", 1, 60, backend=backend, now=noon) is not None
    assert peek(subject, "queries", Window.DAY, backend=backend, now=noon) == 5


def test_purge_expired_deletes_only_what_can_no_longer_matter(subject, noon):
    backend = DatabaseBackend()
    consume(subject, "queries", 1, 10, Window.MINUTE, backend=backend, now=noon - timedelta(hours=1))
    consume(subject, "queries", 1, 10, Window.MINUTE, backend=backend, now=noon)
    consume(subject, "queries", 1, 10, Window.DAY, backend=backend, now=noon)
    reserve(subject, "concurrent_queries", 5, 10, backend=backend, now=noon - timedelta(minutes=1))
    live = reserve(subject, "concurrent_queries", 5, 60, backend=backend, now=noon)
    reserve("idle", "concurrent_queries", 5, 10, backend=backend, now=noon - timedelta(minutes=1))

    # Guards are PostgreSQL's row locks (SQLite's IMMEDIATE transactions need none): one per subject used.
    guarded = connection.vendor != "sqlite"
    assert QuotaLeaseGuard.objects.count() == (2 if guarded else 0)

    purged = purge_expired(backend=backend, now=noon)

    # the hour-old minute counter, two expired leases, and (PostgreSQL) the idle subject's guard
    assert purged == (4 if guarded else 3)
    assert QuotaCounter.objects.filter(subject=subject).count() == 2
    assert list(QuotaLease.objects.values_list("lease_id", flat=True)) == [live.lease_id]
    assert list(QuotaLeaseGuard.objects.values_list("subject", flat=True)) == ([subject] if guarded else [])
    assert peek(subject, "queries", Window.MINUTE, backend=backend, now=noon) == 1
    assert purge_expired(backend=backend, now=noon) == 0


def test_a_reserve_after_its_guard_was_purged_still_counts_live_leases(subject, noon):
    backend = DatabaseBackend()
    reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon)
    QuotaLeaseGuard.objects.all().delete()

    assert reserve(subject, "concurrent_queries", 1, 60, backend=backend, now=noon) is None
