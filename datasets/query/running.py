"""How many partner queries are running on this node, counted across processes, and how many threads one gets.

    running = RunningQueries("/var/lib/vitamin/query-tmp/running-queries")
    n = running.enter()          # this query now counts; n: the queries running, this one included
    threads = threads_for(n, configured=2, cores=2)
    ...
    running.leave()

Every query worker process of the node (those of every gunicorn and Celery process) opens the same
file. A running query holds a POSIX record lock on one byte of it; a query starting counts the bytes
others hold (F_GETLK, which never takes a lock) and locks the first free one. The kernel drops a
process's locks when it exits, so a worker that is killed mid-query stops counting at once: nothing
needs cleaning up, and no count can drift.

Why: each worker has its own DuckDB, whose threads do not know of the other workers'. A query alone
is fastest with several threads; eight at once on two cores, each with two, make sixteen threads
that slow each other (docs/query-internals.md, "Threads by load", has the figures).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

SLOTS = 256  # more running queries than this on one node count as this many (and `_held` recurses at most this deep)
_FLOCK = "hhqqi4x"  # struct flock on Linux (64-bit off_t): type, whence, start, len, pid
_BUSY = (errno.EACCES, errno.EAGAIN)


def threads_for(running: int, *, configured: int, cores: int) -> int:
    """A query's DuckDB threads: `configured` while the node's running queries (`running`, this one
    included) would not ask for more threads than it has cores, else one."""
    return configured if running * configured <= cores else 1


def node_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's)."""
    return len(os.sched_getaffinity(0))


class RunningQueries:
    """This process's view of the node's running queries (one query at a time per process)."""

    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._slot: int | None = None

    def enter(self) -> int:
        """Count this process's query as running until `leave`; the number running, this one included."""
        if self._slot is not None:
            raise RuntimeError("this process's query is counted already")
        while True:
            held = self._held(0, SLOTS)
            if len(held) >= SLOTS:
                return SLOTS
            free = next(slot for slot in range(len(held) + 1) if slot not in held)  # one of these is free
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, free, os.SEEK_SET)
            except OSError as exc:
                if exc.errno in _BUSY:
                    continue  # another process took it between the count and the lock: count again
                raise
            self._slot = free
            return len(held) + 1

    def leave(self) -> None:
        if self._slot is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._slot, os.SEEK_SET)
            self._slot = None

    def count(self) -> int:
        """The queries other processes are running now (for tests and operations)."""
        return len(self._held(0, SLOTS))

    def close(self) -> None:
        self.leave()
        os.close(self._fd)

    def _held(self, start: int, end: int) -> set[int]:
        """The slots in [start, end) that other processes hold: one F_GETLK per slot held, and one per gap."""
        if start >= end:
            return set()
        probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start, end - start, 0)
        kind, _, lock_start, lock_length, _ = struct.unpack(_FLOCK, fcntl.fcntl(self._fd, fcntl.F_GETLK, probe))
        if kind == fcntl.F_UNLCK:
            return set()
        # The kernel names one conflicting lock, not necessarily the lowest: look on both sides of it.
        first = max(start, lock_start)
        last = min(end, lock_start + lock_length) if lock_length else end
        return self._held(start, first) | set(range(first, last)) | self._held(last, end)
