"""consume_all: several counters taken in one round trip, all or nothing, on both backends."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotas.service import Charge, Window, consume, consume_all, peek, rollup_usage, usage
from quotas.windows import usage_day

pytestmark = pytest.mark.django_db


def test_a_batch_that_fits_takes_every_counter(backend, subject, noon):
    decisions = consume_all(
        [
            Charge(subject, "queries", 1, 10, Window.DAY),
            Charge(subject, "rows", 500, 1000, Window.DAY),
            Charge(subject, "queries", 1, 3, Window.MINUTE, meter=False),
        ],
        backend=backend,
        now=noon,
    )

    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.used for d in decisions] == [1, 500, 1]
    assert [d.remaining for d in decisions] == [9, 500, 2]
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 500
    rollup_usage(backend=backend, now=noon)
    metered = {row.metric: row.amount for row in usage(subject, usage_day(noon), usage_day(noon))}
    assert metered == {"queries": 1, "rows": 500}  # the per-minute counter is not metered


def test_one_counter_that_does_not_fit_takes_nothing_from_the_others(backend, subject, noon):
    consume(subject, "rows", 900, 1000, Window.DAY, backend=backend, now=noon)

    decisions = consume_all(
        [Charge(subject, "queries", 1, 10, Window.DAY), Charge(subject, "rows", 101, 1000, Window.DAY)],
        backend=backend,
        now=noon,
    )

    assert [d.allowed for d in decisions] == [False, False]
    assert [d.used for d in decisions] == [0, 900]
    assert decisions[1].retry_after_seconds > 0
    assert peek(subject, "queries", Window.DAY, backend=backend, now=noon) == 0
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 900
    rollup_usage(backend=backend, now=noon)
    assert {row.metric: row.amount for row in usage(subject, usage_day(noon), usage_day(noon))} == {"rows": 900}


def test_a_zero_amount_checks_that_a_counter_is_not_over_without_writing(backend, subject, noon):
    consume(subject, "rows", 10, 10, Window.DAY, backend=backend, now=noon)
    at_the_limit = [Charge(subject, "rows", 0, 10, Window.DAY), Charge(subject, "queries", 1, 5, Window.DAY)]
    over_the_limit = [Charge(subject, "rows", 0, 9, Window.DAY), Charge(subject, "queries", 1, 5, Window.DAY)]

    assert all(d.allowed for d in consume_all(at_the_limit, backend=backend, now=noon))
    assert not any(d.allowed for d in consume_all(over_the_limit, backend=backend, now=noon))
    assert peek(subject, "queries", Window.DAY, backend=backend, now=noon) == 1
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 10


def test_a_batch_of_one_new_counter_over_its_limit_is_refused(backend, subject, noon):
    [decision] = consume_all([Charge(subject, "rows", 11, 10, Window.DAY)], backend=backend, now=noon)

    assert not decision.allowed and decision.used == 0
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 0


def test_the_same_counter_twice_in_a_batch_is_a_programming_error(backend, subject, noon):
    with pytest.raises(ValueError, match="each counter once"):
        consume_all(
            [Charge(subject, "rows", 1, 10, Window.DAY), Charge(subject, "rows", 2, 10, Window.DAY)],
            backend=backend,
            now=noon,
        )
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 0


def test_an_empty_batch_decides_nothing(backend, noon):
    assert consume_all([], backend=backend, now=noon) == []


def test_a_bad_charge_is_refused_before_anything_is_taken(backend, subject, noon):
    with pytest.raises(ValueError, match="amount"):
        consume_all(
            [Charge(subject, "queries", 1, 10, Window.DAY), Charge(subject, "rows", -1, 10, Window.DAY)],
            backend=backend,
            now=noon,
        )
    assert peek(subject, "queries", Window.DAY, backend=backend, now=noon) == 0


# A query's charge: takes sharing one limit, and checks of 0 (on PostgreSQL the database backend does
# these in one statement), against a model of what consume_all promises, for any amounts and counters.
METRICS = ("queries", "rows", "bytes", "jobs")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=12),  # already used
            st.integers(min_value=0, max_value=6),  # amount: 0 checks
            st.integers(min_value=0, max_value=12),  # the check's own limit (a take's is shared)
            st.booleans(),  # metered
        ),
        min_size=1,
        max_size=4,
    ),
    shared_limit=st.integers(min_value=1, max_value=12),
)
def test_a_batch_is_taken_exactly_when_every_counter_fits(backend, noon, data, shared_limit):
    subject = f"subscription:{uuid.uuid4().hex[:8]}"
    charges, before = [], {}
    for (used, amount, own_limit, meter), metric in zip(data, METRICS, strict=False):
        if used:
            consume(subject, metric, used, 10**6, Window.DAY, backend=backend, now=noon)
        before[metric] = used
        limit = own_limit if amount == 0 else shared_limit
        charges.append(Charge(subject, metric, amount, limit, Window.DAY, meter=meter))
    fits = all(before[c.metric] + c.amount <= c.limit for c in charges)

    decisions = consume_all(charges, backend=backend, now=noon)

    assert [d.allowed for d in decisions] == [fits] * len(charges)
    for charge, decision in zip(charges, decisions, strict=True):
        expected = before[charge.metric] + (charge.amount if fits else 0)
        assert decision.used == expected
        assert peek(subject, charge.metric, Window.DAY, backend=backend, now=noon) == expected
    rollup_usage(backend=backend, now=noon)
    metered = {row.metric: row.amount for row in usage(subject, usage_day(noon), usage_day(noon))}
    for charge in charges:
        extra = charge.amount if fits and charge.meter else 0
        assert metered.get(charge.metric, 0) == before[charge.metric] + extra
