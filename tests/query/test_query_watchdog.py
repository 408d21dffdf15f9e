"""The watchdog that ends queries at their time limit (datasets/query/watchdog.py), on its own.

Its thread sleeps until the earliest deadline and is woken only by an earlier one; deadlines of
queries that ended are dropped. These tests break each half: an earlier deadline armed while the
thread sleeps until a later one must still fire, a cancelled one must never fire, and the heap
must not keep every deadline a long limit ever armed. A restarted deadline (a query prepared before
it was charged, then told to run) must fire a whole limit after its restart, never at its first time.
"""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.query.watchdog import Watchdog

WAIT_SECONDS = 10  # how long a test waits for a deadline that is due (not a measure of speed)


class Cursor:
    """What the watchdog calls: `interrupt()`, noted."""

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self.at: float | None = None  # when it was first interrupted

    def interrupt(self) -> None:
        if self.at is None:
            self.at = time.monotonic()
        self.interrupted.set()


def test_an_earlier_deadline_armed_while_the_thread_sleeps_until_a_later_one_fires():
    watchdog = Watchdog()
    late, early = Cursor(), Cursor()
    late_deadline = watchdog.arm(late, 3600)  # the thread now sleeps until this one
    time.sleep(0.05)
    early_deadline = watchdog.arm(early, 0.05)
    assert early.interrupted.wait(WAIT_SECONDS)
    assert early_deadline.fired and not late_deadline.fired and not late.interrupted.is_set()
    late_deadline.cancel()


def test_a_later_deadline_does_not_delay_an_earlier_one():
    watchdog = Watchdog()
    first, second = Cursor(), Cursor()
    watchdog.arm(first, 0.1)
    watchdog.arm(second, 3600)
    assert first.interrupted.wait(WAIT_SECONDS)
    assert not second.interrupted.is_set()


def test_a_cancelled_deadline_never_fires():
    watchdog = Watchdog()
    cancelled, kept = Cursor(), Cursor()
    deadline = watchdog.arm(cancelled, 0.05)
    deadline.cancel()
    watchdog.arm(kept, 0.1)  # fires after the cancelled one was due
    assert kept.interrupted.wait(WAIT_SECONDS)
    assert not cancelled.interrupted.is_set() and not deadline.fired


def test_deadlines_of_ended_queries_do_not_pile_up_under_long_limits():
    watchdog = Watchdog()
    running = [watchdog.arm(Cursor(), 86_400) for _ in range(3)]  # three queries still running
    for _ in range(10_000):  # ten thousand that ended, each with a day's limit
        watchdog.arm(Cursor(), 86_400).cancel()
    assert watchdog.pending() <= 2 * 64 + len(running)
    for deadline in running:
        assert deadline.active


def test_deadlines_of_ended_queries_are_dropped_even_behind_a_long_running_one():
    watchdog = Watchdog()
    long_running = watchdog.arm(Cursor(), 60)  # at the top of the heap, for a minute
    for _ in range(5_000):
        watchdog.arm(Cursor(), 600).cancel()
    assert watchdog.pending() <= 2 * 64 + 1
    assert long_running.active


def test_a_restarted_deadline_fires_a_whole_limit_after_its_restart_not_at_its_first_time():
    watchdog = Watchdog()
    cursor = Cursor()
    deadline = watchdog.arm(cursor, 0.3)
    time.sleep(0.2)
    restarted_at = time.monotonic()
    deadline.restart()
    assert cursor.interrupted.wait(WAIT_SECONDS)
    assert cursor.at >= restarted_at + 0.3
    assert deadline.fired


def test_a_deadline_that_fired_before_its_query_ran_is_live_again_once_restarted():
    watchdog = Watchdog()
    cursor = Cursor()
    deadline = watchdog.arm(cursor, 0.05)
    assert cursor.interrupted.wait(WAIT_SECONDS) and deadline.fired  # a charge that took longer than the limit
    cursor.interrupted.clear()
    deadline.restart()
    assert deadline.active and not deadline.fired
    assert cursor.interrupted.wait(WAIT_SECONDS)  # and it still ends the query a limit later
    assert deadline.fired


def test_a_cancelled_deadline_cannot_be_restarted():
    watchdog = Watchdog()
    cursor = Cursor()
    deadline = watchdog.arm(cursor, 0.05)
    deadline.cancel()
    with pytest.raises(RuntimeError):
        deadline.restart()
    time.sleep(0.15)
    assert not cursor.interrupted.is_set()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from([0.0, 0.01, 0.03, 0.06, 3600.0]), st.just(False)),
            st.tuples(st.sampled_from([0.2, 3600.0]), st.just(True)),  # cancelled well before it is due
            st.tuples(st.sampled_from([0.02, 0.05, 0.1]), st.just("restart")),  # restarted once, at once
        ),
        min_size=1,
        max_size=40,
    )
)
def test_every_due_deadline_fires_and_no_cancelled_one_does(plan):
    """Any order of limits, short and long, some cancelled before they are due, some restarted: every
    due one fires, none before its limit counted from its (last) start."""
    watchdog = Watchdog()
    armed = []
    started = time.monotonic()
    for seconds, action in plan:
        cursor = Cursor()
        counted_from = time.monotonic()
        deadline = watchdog.arm(cursor, seconds)
        if action == "restart":
            counted_from = time.monotonic()
            deadline.restart()
        cancel = action is True
        if cancel:
            deadline.cancel()
        armed.append((seconds, cancel, cursor, deadline, counted_from))
    for seconds, cancel, cursor, deadline, counted_from in armed:
        if not cancel and seconds < 3600:
            assert cursor.interrupted.wait(WAIT_SECONDS), f"a {seconds} s deadline did not fire"
            assert deadline.fired
            assert cursor.at >= counted_from + seconds, "a deadline fired before its limit"
    time.sleep(max(0.0, started + 0.3 - time.monotonic()))  # past every cancelled short deadline
    for seconds, cancel, cursor, deadline, _ in armed:
        if cancel or seconds == 3600:
            assert not cursor.interrupted.is_set() and not deadline.fired
            deadline.cancel()
