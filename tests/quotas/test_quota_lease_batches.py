"""Several subjects' leases held at once (`reserve_leases`: a query's institution slot and its subscriptions'),
on both backends: all of them or none, the first refused named, and never more than a limit under contention.

The database backend does a batch in two statements (one on SQLite) rather than two per lease; these tests
try to break what the one-lease-at-a-time path guaranteed by construction.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quota_support import in_threads

from quotas.service import live_leases, release_all, reserve, reserve_leases

METRIC = "concurrent_queries"


def fresh(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex[:8]}"


@pytest.mark.django_db
def test_a_batch_is_held_whole_with_the_ids_asked_for(backend, noon):
    institution, subscription = fresh("institution"), fresh("subscription")
    leases, refused, decision = reserve_leases(
        [(institution, 2, "q1.0"), (subscription, 1, None)], METRIC, 60, backend=backend, now=noon
    )
    assert refused is None and decision is None
    assert [lease.subject for lease in leases] == [institution, subscription]
    assert leases[0].lease_id == "q1.0" and leases[1].lease_id
    assert all(lease.expires_at == noon + timedelta(seconds=60) for lease in leases)
    assert live_leases(leases, backend=backend, now=noon) == {lease.lease_id for lease in leases}


@pytest.mark.django_db
@pytest.mark.parametrize("full", [0, 1, 2])
def test_a_refused_batch_holds_nothing_and_names_the_first_refused(backend, noon, full):
    subjects = [fresh("institution"), fresh("subscription"), fresh("subscription")]
    taken = reserve(subjects[full], METRIC, 1, 60, backend=backend, now=noon)  # that one is full
    leases, refused, decision = reserve_leases(
        [(subject, 1, None) for subject in subjects], METRIC, 60, backend=backend, now=noon
    )
    assert leases == [] and refused == full
    assert decision is not None and not decision.allowed and decision.limit == 1 and decision.remaining == 0
    assert decision.reset_at == taken.expires_at  # when the slot that refused it frees up
    # Nothing of the batch is held: each other subject still has its one slot free.
    for index, subject in enumerate(subjects):
        if index != full:
            assert reserve(subject, METRIC, 1, 60, backend=backend, now=noon) is not None


@pytest.mark.django_db
def test_a_batch_naming_a_subject_twice_is_an_error(backend, noon):
    subject = fresh("institution")
    with pytest.raises(ValueError, match="each subject once"):
        reserve_leases([(subject, 5, None), (subject, 5, None)], METRIC, 60, backend=backend, now=noon)


@pytest.mark.django_db
def test_expired_leases_do_not_count_against_a_batch(backend, noon):
    subjects = [fresh("institution"), fresh("subscription")]
    reserve(subjects[1], METRIC, 1, 10, backend=backend, now=noon - timedelta(seconds=30))  # lapsed by noon
    leases, refused, _ = reserve_leases([(s, 1, None) for s in subjects], METRIC, 60, backend=backend, now=noon)
    assert refused is None and len(leases) == 2


@pytest.mark.django_db(transaction=True)
def test_threads_holding_batches_never_pass_any_subjects_limit(backend):
    """Eight threads, each a query of one institution (limit 3) through one of two subscriptions (limit 2):
    batches held and given back over and over, the largest number held at once counted per subject."""
    institution = fresh("institution")
    subscriptions = [fresh("subscription"), fresh("subscription")]
    limits = {institution: 3, subscriptions[0]: 2, subscriptions[1]: 2}
    holding = dict.fromkeys(limits, 0)
    most = dict.fromkeys(limits, 0)
    held_batches = 0
    tally = threading.Lock()
    turn = iter(range(8))

    def cycles() -> None:
        nonlocal held_batches
        with tally:
            subscription = subscriptions[next(turn) % 2]
        for _ in range(12):
            wanted = [(institution, limits[institution], None), (subscription, limits[subscription], None)]
            leases, refused, _ = reserve_leases(wanted, METRIC, 60, backend=backend)
            if refused is not None:
                continue
            with tally:
                held_batches += 1
                for lease in leases:
                    holding[lease.subject] += 1
                    most[lease.subject] = max(most[lease.subject], holding[lease.subject])
            with tally:
                for lease in leases:
                    holding[lease.subject] -= 1
            release_all(leases, backend=backend)

    in_threads(8, cycles)

    assert all(most[subject] <= limits[subject] for subject in limits), most
    assert held_batches >= 12  # slots given back were held again
    # Nothing is left held: a full batch at each limit still fits.
    for subject, limit in limits.items():
        assert len([reserve(subject, METRIC, limit, 60, backend=backend) for _ in range(limit)]) == limit


@pytest.mark.django_db(transaction=True)
def test_threads_racing_for_the_last_slots_get_exactly_the_limit(backend, noon):
    institution = fresh("institution")
    subscriptions = [fresh("subscription") for _ in range(8)]
    turn = iter(range(8))
    lock = threading.Lock()

    def attempt() -> int:
        with lock:
            subscription = subscriptions[next(turn)]
        leases, refused, _ = reserve_leases(
            [(institution, 5, None), (subscription, 1, None)], METRIC, 60, backend=backend, now=noon
        )
        return 0 if refused is not None else len(leases)

    assert sum(in_threads(8, attempt)) == 5 * 2  # five batches of two
    assert reserve(institution, METRIC, 5, 60, backend=backend, now=noon) is None  # five held, not more
    assert reserve(institution, METRIC, 6, 60, backend=backend, now=noon) is not None


@pytest.mark.django_db
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limits=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4),
    already=st.lists(st.integers(min_value=0, max_value=4), min_size=4, max_size=4),
)
def test_a_batch_is_held_exactly_when_every_subject_has_room(backend, noon, limits, already):
    """Any limits, any number already held per subject: all held iff each has room, else none, and the
    first refused is the first without room."""
    subjects = [fresh("subject") for _ in limits]
    for subject, count in zip(subjects, already, strict=False):
        for _ in range(count):
            reserve(subject, METRIC, 10, 60, backend=backend, now=noon)
    held_before = dict(zip(subjects, already, strict=False))
    leases, refused, decision = reserve_leases(
        [(subject, limit, None) for subject, limit in zip(subjects, limits, strict=True)],
        METRIC,
        60,
        backend=backend,
        now=noon,
    )
    without_room = [i for i, (s, limit) in enumerate(zip(subjects, limits, strict=True)) if held_before[s] >= limit]
    if without_room:
        assert refused == without_room[0] and leases == []
        assert decision.used == held_before[subjects[refused]]
    else:
        assert refused is None and len(leases) == len(subjects)
    # Held now: what was held before, plus one each if the batch was held.
    for subject in subjects:
        now_held = held_before[subject] + (0 if without_room else 1)
        assert reserve(subject, METRIC, now_held, 60, backend=backend, now=noon) is None
        assert reserve(subject, METRIC, now_held + 1, 60, backend=backend, now=noon) is not None
