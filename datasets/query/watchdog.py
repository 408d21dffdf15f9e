"""The time limit of each query: one thread per gateway that interrupts queries past their deadline.

DuckDB's `max_execution_time` only counts execution, not the time a client
takes to read a streaming result, and it is one global setting; so each query
gets its own deadline from its plan, and `cursor.interrupt()` ends it when the
deadline passes, whether DuckDB is computing or waiting for the client to read.
One thread and a heap of deadlines, rather than a timer thread per query
(starting a thread costs ~1 ms). The thread sleeps until the earliest deadline and is woken only
by an earlier one, not by every query; deadlines cancelled (queries that ended) are dropped from
the heap as they reach its top, and all at once when it has grown to twice its size after the last
such sweep, so it holds about the queries running, however long their limits.

A deadline can be restarted (`Deadline.restart`): a query prepared before it was charged counts its
limit from when it is told to run. Its entry moves to the new time; the old one, reached first, is skipped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

import duckdb


class Deadline:
    """One query's time limit: interrupts its connection when the time is up, unless cancelled first."""

    def __init__(self, watchdog: Watchdog, cursor: duckdb.DuckDBPyConnection, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.fired = False
        self._watchdog = watchdog
        self._cursor = cursor
        self._lock = threading.Lock()
        self._active = True

    def fire(self, at: float) -> None:
        """The time `at` is up: interrupt the query, and say so in `fired` (unless restarted since)."""
        with self._lock:
            if self._active and at == self.at:
                self.fired = True
                self._cursor.interrupt()

    def interrupt(self) -> None:
        """Stop the query now, from any thread (a cancelled job); harmless once it has ended."""
        # Under the lock, so a query that just ended (and its connection given back) is never interrupted.
        with self._lock:
            if self._active:
                self._cursor.interrupt()

    def cancel(self) -> None:
        with self._lock:
            self._active = False

    def restart(self) -> None:
        """Count the whole limit again from now (a query prepared, then told to run). A deadline that fired
        meanwhile interrupted nothing (DuckDB forgets an interrupt when nothing runs): it is live again."""
        with self._lock:
            if not self._active:
                raise RuntimeError("a cancelled deadline cannot be restarted")
            self.fired = False
            self.at = time.monotonic() + self.seconds
        self._watchdog._push(self)  # noqa: SLF001 - the old entry is skipped when the thread reaches it

    @property
    def active(self) -> bool:
        """Not cancelled and not fired yet."""
        return self._active and not self.fired


_FIRST_SWEEP = 64


class Watchdog:
    """One thread per gateway that interrupts queries past their deadline (cheaper than a timer per query)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._deadlines: list[tuple[float, int, Deadline]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        self._sweep_at = _FIRST_SWEEP  # the heap's size at which cancelled deadlines are swept out

    def arm(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> Deadline:
        deadline = Deadline(self, cursor, seconds)
        self._push(deadline)
        return deadline

    def _push(self, deadline: Deadline) -> None:
        with self._condition:
            heap = self._deadlines
            while heap and not heap[0][2].active:
                heapq.heappop(heap)
            if len(heap) >= self._sweep_at:
                heap[:] = [entry for entry in heap if entry[2].active]
                heapq.heapify(heap)
                self._sweep_at = max(_FIRST_SWEEP, 2 * len(heap))
            wakes_at = heap[0][0] if heap else None  # when the thread wakes next (None: when told)
            heapq.heappush(heap, (deadline.at, next(self._sequence), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="query-watchdog", daemon=True)
                self._thread.start()
            elif wakes_at is None or deadline.at < wakes_at:
                self._condition.notify()

    def pending(self) -> int:
        """How many deadlines the heap holds (running queries', and cancelled ones not swept out yet)."""
        with self._condition:
            return len(self._deadlines)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._deadlines or self._deadlines[0][0] > time.monotonic():
                    timeout = self._deadlines[0][0] - time.monotonic() if self._deadlines else None
                    self._condition.wait(timeout)
                at, _, deadline = heapq.heappop(self._deadlines)
            deadline.fire(at)  # a no-op for a deadline cancelled or restarted meanwhile
