"""Leases that belong to a live holder: short leases, renewed from a thread of the process that holds them.

    keeper().keep(leases, ttl_seconds)   # after reserving them for `ttl_seconds`
    ...                                  # the work; every ttl/3 the keeper renews them (one statement)
    keeper().drop(leases)                # before releasing them

A lease as long as the work it guards (a query's time limit plus a margin) outlives a process killed in
the middle by that whole time: its slot stays taken for minutes. A short lease the holder renews is given
back within its lifetime once the holder is gone (killed, out of memory, its host lost), whatever the
backend and wherever the holder ran; a live holder keeps it as long as it works.

One keeper per process, started on first use (a forked child starts its own: the parent's thread and
leases do not belong to it). A renewal that fails is logged and
tried again at the next tick; a lease it could not renew within its lifetime lapses, as a dead holder's would.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from django.db import connection

from quotas.decisions import Lease
from quotas.service import renew

log = logging.getLogger("vitamin.quotas.keeper")


class LeaseKeeper:
    def __init__(self) -> None:
        self._held: dict[str, tuple[Lease, float]] = {}  # lease id -> (lease, its lifetime in seconds)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, leases: Sequence[Lease], ttl_seconds: float) -> None:
        """Renew `leases` (each reserved for `ttl_seconds`) every third of that until they are dropped."""
        with self._lock:
            for lease in leases:
                self._held[lease.lease_id] = (lease, ttl_seconds)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="quota-lease-keeper", daemon=True)
                self._thread.start()

    def drop(self, leases: Sequence[Lease]) -> None:
        """Stop renewing `leases` (the holder releases them, or lets them lapse)."""
        with self._lock:
            for lease in leases:
                self._held.pop(lease.lease_id, None)

    def held(self) -> list[Lease]:
        with self._lock:
            return [lease for lease, _ in self._held.values()]

    def renew_now(self) -> None:
        """One renewal of every lease kept: each group of one lifetime in one statement or script."""
        with self._lock:
            by_ttl: dict[float, list[Lease]] = {}
            for lease, ttl in self._held.values():
                by_ttl.setdefault(ttl, []).append(lease)
        for ttl, leases in by_ttl.items():
            renew(leases, ttl)

    def _period(self) -> float:
        with self._lock:
            shortest = min((ttl for _, ttl in self._held.values()), default=None)
        return 1.0 if shortest is None else shortest / 3

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._period())
            self._wake.clear()
            try:
                self.renew_now()
            except Exception:  # noqa: BLE001 - try again at the next tick; an unrenewed lease lapses, as a dead one's
                log.exception("renewing the quota leases of this process failed")
                connection.close()


_keeper: LeaseKeeper | None = None
_create_lock = threading.Lock()


def keeper() -> LeaseKeeper:
    """This process's keeper."""
    global _keeper
    with _create_lock:
        if _keeper is None:
            _keeper = LeaseKeeper()
        return _keeper


def _forget_after_fork() -> None:
    global _keeper, _create_lock
    _keeper, _create_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
