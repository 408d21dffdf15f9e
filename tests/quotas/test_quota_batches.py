"""consume_all: several counters taken in one round trip, all or nothing, on both backends."""

from __future__ import annotations

import pytest

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
