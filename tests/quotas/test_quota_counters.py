"""Counters in fixed windows, on both backends: allow to the limit, deny without consuming, reset, refund."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, strategies
from hypothesis import settings as hypothesis_settings

from quotas.service import (
    QuotaExceeded,
    Window,
    consume,
    consume_or_raise,
    peek,
    rate_limit_headers,
    refund,
    reserve,
)

pytestmark = pytest.mark.django_db


def test_allows_until_the_limit_then_denies(backend, subject, noon):
    decisions = [consume(subject, "queries", 1, 3, Window.MINUTE, backend=backend, now=noon) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.used for d in decisions] == [1, 2, 3, 3]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert {d.reset_at for d in decisions} == {datetime(2026, 3, 10, 12, 1, tzinfo=UTC)}
    assert [d.retry_after_seconds for d in decisions] == [0, 0, 0, 30]
    assert decisions[0].limit == 3


def test_a_denial_consumes_nothing(backend, subject, noon):
    assert consume(subject, "rows", 7, 10, Window.DAY, backend=backend, now=noon).allowed

    too_much = consume(subject, "rows", 4, 10, Window.DAY, backend=backend, now=noon)

    assert not too_much.allowed
    assert too_much.used == 7
    assert too_much.remaining == 3
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 7
    exactly_enough = consume(subject, "rows", 3, 10, Window.DAY, backend=backend, now=noon)
    assert exactly_enough.allowed and exactly_enough.used == 10


def test_more_than_the_limit_is_denied_on_a_fresh_counter(backend, subject, noon):
    decision = consume(subject, "rows", 11, 10, Window.DAY, backend=backend, now=noon)

    assert not decision.allowed
    assert decision.used == 0 and decision.remaining == 10
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 0


def test_a_zero_limit_denies_everything(backend, subject, noon):
    decision = consume(subject, "exports", 1, 0, Window.DAY, backend=backend, now=noon)

    assert not decision.allowed and decision.remaining == 0


def test_amount_zero_is_a_pure_check(backend, subject, noon):
    fresh = consume(subject, "queries", 0, 2, Window.MINUTE, backend=backend, now=noon)
    assert fresh.allowed and fresh.used == 0 and fresh.remaining == 2

    consume(subject, "queries", 2, 2, Window.MINUTE, backend=backend, now=noon)
    at_limit = consume(subject, "queries", 0, 2, Window.MINUTE, backend=backend, now=noon)
    assert at_limit.allowed and at_limit.remaining == 0 and at_limit.used == 2

    # The limit was lowered below what is already used: even a check is denied.
    over_limit = consume(subject, "queries", 0, 1, Window.MINUTE, backend=backend, now=noon)
    assert not over_limit.allowed and over_limit.retry_after_seconds == 30
    assert peek(subject, "queries", Window.MINUTE, backend=backend, now=noon) == 2


def test_minute_window_rolls_over_on_the_utc_minute(backend, subject):
    last_moment = datetime(2026, 3, 10, 12, 0, 59, 999_999, tzinfo=UTC)
    next_minute = datetime(2026, 3, 10, 12, 1, tzinfo=UTC)
    consume(subject, "queries", 5, 5, Window.MINUTE, backend=backend, now=last_moment)

    denied = consume(subject, "queries", 1, 5, Window.MINUTE, backend=backend, now=last_moment)
    fresh = consume(subject, "queries", 1, 5, Window.MINUTE, backend=backend, now=next_minute)

    assert not denied.allowed and denied.retry_after_seconds == 1 and denied.reset_at == next_minute
    assert fresh.allowed and fresh.used == 1
    assert fresh.reset_at == datetime(2026, 3, 10, 12, 2, tzinfo=UTC)
    assert peek(subject, "queries", Window.MINUTE, backend=backend, now=last_moment) == 5


def test_day_window_resets_at_midnight_in_the_platform_time_zone(backend, subject):
    # 23:59:59 in Shanghai (UTC+8) is 15:59:59 UTC.
    before_midnight = datetime(2026, 3, 10, 15, 59, 59, tzinfo=UTC)
    midnight = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)
    consume(subject, "queries", 100, 100, Window.DAY, backend=backend, now=datetime(2026, 3, 9, 16, 0, tzinfo=UTC))

    denied = consume(subject, "queries", 1, 100, Window.DAY, backend=backend, now=before_midnight)
    next_day = consume(subject, "queries", 1, 100, Window.DAY, backend=backend, now=midnight)

    assert not denied.allowed
    assert denied.reset_at == midnight and denied.retry_after_seconds == 1
    assert next_day.allowed and next_day.used == 1
    assert next_day.reset_at == midnight + timedelta(days=1)


def test_a_day_spans_23_hours_on_a_spring_forward(settings):
    settings.TIME_ZONE = "Europe/Berlin"  # clocks jump 02:00 -> 03:00 on 2026-03-29

    start, end = Window.DAY.bounds(datetime(2026, 3, 29, 12, 0, tzinfo=UTC))

    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 00:00 CEST
    assert end - start == timedelta(hours=23)


def test_minute_and_day_counters_are_separate_even_where_they_start_together(backend, subject):
    local_midnight = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)
    assert Window.MINUTE.bounds(local_midnight)[0] == Window.DAY.bounds(local_midnight)[0]

    consume(subject, "queries", 3, 10, Window.MINUTE, meter=False, backend=backend, now=local_midnight)

    assert peek(subject, "queries", Window.DAY, backend=backend, now=local_midnight) == 0
    assert peek(subject, "queries", Window.MINUTE, backend=backend, now=local_midnight) == 3


def test_subjects_and_metrics_are_counted_apart(backend, noon):
    # A subject may contain colons; metrics may not, so keys cannot collide.
    consume("tenant:1", "queries", 2, 10, Window.DAY, backend=backend, now=noon)
    consume("tenant:1:queries", "rows", 5, 10, Window.DAY, backend=backend, now=noon)

    assert peek("tenant:1", "queries", Window.DAY, backend=backend, now=noon) == 2
    assert peek("tenant:1", "rows", Window.DAY, backend=backend, now=noon) == 0
    assert peek("tenant:1:queries", "rows", Window.DAY, backend=backend, now=noon) == 5
    assert peek("tenant:2", "queries", Window.DAY, backend=backend, now=noon) == 0


def test_refund_gives_back_and_never_goes_below_zero(backend, subject, noon):
    consume(subject, "rows", 10, 10, Window.DAY, backend=backend, now=noon)

    assert refund(subject, "rows", 4, Window.DAY, backend=backend, now=noon) == 4
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 6
    assert consume(subject, "rows", 4, 10, Window.DAY, backend=backend, now=noon).allowed
    assert refund(subject, "rows", 25, Window.DAY, backend=backend, now=noon) == 10
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 0
    assert refund(subject, "rows", 1, Window.DAY, backend=backend, now=noon) == 0
    assert refund("never-seen", "rows", 3, Window.DAY, backend=backend, now=noon) == 0


def test_refund_applies_to_the_window_it_is_told(backend, subject, noon):
    consume(subject, "queries", 1, 1, Window.MINUTE, backend=backend, now=noon)
    next_minute = noon + timedelta(minutes=1)

    assert refund(subject, "queries", 1, Window.MINUTE, backend=backend, now=next_minute) == 0
    assert refund(subject, "queries", 1, Window.MINUTE, backend=backend, now=noon) == 1


def test_amounts_beyond_float_precision_of_lua_printing(backend, subject, noon):
    # Lua prints numbers above 1e14 in exponent form; the Redis scripts must not pass those on.
    petabyte = 10**15

    assert consume(subject, "bytes_scanned", petabyte, 10**16, Window.DAY, backend=backend, now=noon).used == petabyte
    assert consume(subject, "bytes_scanned", petabyte + 7, 10**16, Window.DAY, backend=backend, now=noon).allowed
    assert refund(subject, "bytes_scanned", petabyte + 3, Window.DAY, backend=backend, now=noon) == petabyte + 3
    assert peek(subject, "bytes_scanned", Window.DAY, backend=backend, now=noon) == petabyte + 4


def test_consume_or_raise_carries_what_a_429_needs(backend, subject, noon):
    consume_or_raise(subject, "queries", 2, 2, Window.MINUTE, backend=backend, now=noon)

    with pytest.raises(QuotaExceeded) as raised:
        consume_or_raise(subject, "queries", 1, 2, Window.MINUTE, backend=backend, now=noon)

    error = raised.value
    assert (error.metric, error.limit, error.remaining) == ("queries", 2, 0)
    assert error.reset_at == datetime(2026, 3, 10, 12, 1, tzinfo=UTC)
    assert error.retry_after_seconds == 30
    assert not error.decision.allowed


@pytest.mark.parametrize(
    "bad_call",
    [
        lambda now: consume("", "queries", 1, 1, Window.DAY, now=now),
        lambda now: consume("s" * 201, "queries", 1, 1, Window.DAY, now=now),
        lambda now: consume("fund", "has:colon", 1, 1, Window.DAY, now=now),
        lambda now: consume("fund", "", 1, 1, Window.DAY, now=now),
        lambda now: consume("fund", "queries", -1, 1, Window.DAY, now=now),
        lambda now: consume("fund", "queries", 1, -1, Window.DAY, now=now),
        lambda now: consume("fund", "queries", True, 1, Window.DAY, now=now),
        lambda now: consume("fund", "queries", 1.5, 2, Window.DAY, now=now),
        lambda now: consume("fund", "queries", 1, 1, "week", now=now),
        lambda now: consume("fund", "queries", 1, 1, Window.DAY, now=now.replace(tzinfo=None)),
        lambda now: refund("fund", "queries", -2, Window.DAY, now=now),
        lambda now: reserve("fund", "queries", 1, 0, now=now),
    ],
)
def test_bad_arguments_are_refused_before_touching_a_counter(bad_call, noon):
    with pytest.raises(ValueError):
        bad_call(noon)
    assert peek("fund", "queries", Window.DAY, now=noon) == 0


def test_rate_limit_headers_of_an_allowed_call_have_no_retry_after(backend, subject, noon):
    decision = consume(subject, "queries", 1, 60, Window.MINUTE, backend=backend, now=noon)

    assert rate_limit_headers(decision, now=noon) == {
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "59",
        "RateLimit-Reset": "30",
    }


def test_rate_limit_headers_of_a_denial(backend, subject):
    now = datetime(2026, 3, 10, 12, 0, 29, 400_000, tzinfo=UTC)
    consume(subject, "queries", 1, 1, Window.MINUTE, backend=backend, now=now)
    decision = consume(subject, "queries", 1, 1, Window.MINUTE, backend=backend, now=now)

    # 30.6 s to the reset, rounded up so a client never comes back too early.
    assert rate_limit_headers(decision, now=now) == {
        "RateLimit-Limit": "1",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "31",
        "Retry-After": "31",
    }


def test_rate_limit_reset_counts_down_from_when_the_headers_are_made(backend, subject, noon):
    decision = consume(subject, "queries", 1, 5, Window.MINUTE, backend=backend, now=noon)

    assert rate_limit_headers(decision, now=noon + timedelta(seconds=10))["RateLimit-Reset"] == "20"
    assert rate_limit_headers(decision, now=noon + timedelta(minutes=5))["RateLimit-Reset"] == "0"


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operations=strategies.lists(
        strategies.tuples(strategies.sampled_from(["consume", "refund"]), strategies.integers(0, 6)), max_size=25
    )
)
def test_counters_match_a_simple_model(backend, noon, operations):
    """Any sequence of consumes and refunds leaves the counter where plain arithmetic says."""
    subject, limit, used = f"model:{uuid.uuid4().hex}", 10, 0
    for operation, amount in operations:
        if operation == "consume":
            decision = consume(subject, "rows", amount, limit, Window.DAY, backend=backend, now=noon)
            assert decision.allowed == (used + amount <= limit)
            used += amount if decision.allowed else 0
            assert decision.used == used
        else:
            assert refund(subject, "rows", amount, Window.DAY, backend=backend, now=noon) == min(amount, used)
            used -= min(amount, used)
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == used
