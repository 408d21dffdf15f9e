"""The time limit of each query: one thread per gateway that interrupts queries past their deadline.

DuckDB's `max_execution_time` only counts execution, not the time a client
takes to read a streaming result, and it is one global setting; so each query
gets its own deadline from its plan, and `cursor.interrupt()` ends it when the
deadline passes, whether DuckDB is computing or waiting for the client to read.
One thread and a heap of deadlines, rather than a timer thread per query
(starting a thread costs ~1 ms).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

import duckdb


class Deadline:
    """One query's time limit: interrupts its connection when the time is up, unless cancelled first."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, at: float):
        self.at = at
        self.fired = False
        self._cursor = cursor
        self._lock = threading.Lock()
        self._active = True

    def fire(self) -> None:
        """The time is up: interrupt the query, and say so in `fired`."""
        self.interrupt(timed_out=True)

    def interrupt(self, *, timed_out: bool = False) -> None:
        """Stop the query now, from any thread (a cancelled job); harmless once it has ended."""
        # Under the lock, so a query that just ended (and its connection given back) is never interrupted.
        with self._lock:
            if self._active:
                self.fired = self.fired or timed_out
                self._cursor.interrupt()

    def cancel(self) -> None:
        with self._lock:
            self._active = False


class Watchdog:
    """One thread per gateway that interrupts queries past their deadline (cheaper than a timer per query)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._deadlines: list[tuple[float, int, Deadline]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> Deadline:
        deadline = Deadline(cursor, time.monotonic() + seconds)
        with self._condition:
            heapq.heappush(self._deadlines, (deadline.at, next(self._sequence), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="query-watchdog", daemon=True)
                self._thread.start()
            self._condition.notify()
        return deadline

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._deadlines or self._deadlines[0][0] > time.monotonic():
                    timeout = self._deadlines[0][0] - time.monotonic() if self._deadlines else None
                    self._condition.wait(timeout)
                _, _, deadline = heapq.heappop(self._deadlines)
            deadline.fire()  # a no-op for a deadline cancelled meanwhile
