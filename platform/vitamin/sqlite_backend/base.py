"""Django's SQLite backend, with writers queued on a lock file instead of SQLite's busy handler.

SQLite lets one transaction write at a time. A connection that finds the write lock taken runs
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25, ... 100 ms between tries: under eight
concurrent partners each query's two write transactions waited up to half a second for a lock
held a millisecond (bench/profile_query_api.py --clients 8: BEGIN's p99 113 ms, at most 537 ms).

Here every write transaction (settings: BEGIN IMMEDIATE) first takes an exclusive `flock` on
`<database>.writers`, shared by every thread and process using the database, and gives it back
when it commits or rolls back. A waiter tries again every few hundred microseconds, so it
starts within that of the lock being free; after the connection's `timeout` (the same setting
SQLite's handler uses) it fails as SQLite would ("database is locked"). Statements outside a
transaction (autocommit) still meet SQLite's own lock, briefly.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time

from django.db.backends.sqlite3 import base

# How often a waiting writer tries the lock again: short, since a transaction holds it ~1 ms.
POLL_SECONDS = (0.0002, 0.0005, 0.001)
DEFAULT_TIMEOUT_SECONDS = 5.0  # sqlite3.connect's default


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._writers_fd: int | None = None
        self._writing = False

    def _writers_lock(self) -> int | None:
        """This connection's descriptor of the lock file (flock locks belong to an open file), None in memory."""
        if self.is_in_memory_db():
            return None
        if self._writers_fd is None:
            path = f"{self.settings_dict['NAME']}.writers"
            self._writers_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._writers_fd

    def _take_writers_lock(self) -> None:
        fd = self._writers_lock()
        if fd is None or self._writing:
            return
        timeout = float(self.settings_dict["OPTIONS"].get("timeout", DEFAULT_TIMEOUT_SECONDS))
        give_up = time.monotonic() + timeout
        tries = 0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= give_up:
                    with self.wrap_database_errors:
                        raise sqlite3.OperationalError("database is locked") from None
                time.sleep(POLL_SECONDS[min(tries, len(POLL_SECONDS) - 1)])
                tries += 1
        self._writing = True

    def _give_back_writers_lock(self) -> None:
        if self._writing:
            self._writing = False
            fcntl.flock(self._writers_fd, fcntl.LOCK_UN)

    def _start_transaction_under_autocommit(self):
        self._take_writers_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._give_back_writers_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._give_back_writers_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._give_back_writers_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._give_back_writers_lock()
            if self._writers_fd is not None:
                os.close(self._writers_fd)
                self._writers_fd = None
