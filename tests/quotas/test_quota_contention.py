"""Under contention exactly the limit is granted: many threads, and several OS processes, on both backends.

Transactional tests: the competing threads and processes have their own
database connections, so the data must really be committed (SQLite file with
WAL, or PostgreSQL in the PostgreSQL pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from typing import TypeVar

import pytest
from django.conf import settings
from django.db import connection
from quota_support import in_threads

from quotas.service import (
    Charge,
    RedisBackend,
    Window,
    consume,
    consume_all,
    peek,
    release,
    reserve,
    rollup_usage,
    usage,
)
from quotas.windows import usage_day

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = Path(__file__).with_name("quota_worker.py")
Result = TypeVar("Result")


def test_threads_get_exactly_the_limit_of_a_counter(backend, subject, noon):
    def attempts() -> int:
        return sum(consume(subject, "queries", 1, 50, Window.DAY, backend=backend, now=noon).allowed for _ in range(20))

    granted = in_threads(8, attempts)

    assert sum(granted) == 50
    assert peek(subject, "queries", Window.DAY, backend=backend, now=noon) == 50
    rollup_usage(backend=backend, now=noon)
    assert [row.amount for row in usage(subject, usage_day(noon), usage_day(noon))] == [50]


def test_threads_never_get_more_than_the_limit_with_uneven_amounts(backend, subject, noon):
    def attempts() -> int:
        return sum(
            amount
            for amount in (3, 5, 2, 7, 1)
            if consume(subject, "rows", amount, 100, Window.MINUTE, backend=backend, now=noon).allowed
        )

    granted = in_threads(8, attempts)

    assert sum(granted) <= 100
    assert peek(subject, "rows", Window.MINUTE, backend=backend, now=noon) == sum(granted)


def test_threads_get_exactly_the_limit_of_leases(backend, subject, noon):
    def attempts() -> int:
        return sum(
            reserve(subject, "concurrent_queries", 5, 60, backend=backend, now=noon) is not None for _ in range(3)
        )

    assert sum(in_threads(8, attempts)) == 5


def test_threads_taking_and_releasing_leases_never_hold_more_than_the_limit(backend, subject):
    holding, most_held, acquired = 0, 0, 0
    tally = threading.Lock()

    def cycles() -> None:
        nonlocal holding, most_held, acquired
        for _ in range(15):
            lease = reserve(subject, "concurrent_queries", 3, 60, backend=backend)
            if lease is None:
                continue
            with tally:
                holding += 1
                acquired += 1
                most_held = max(most_held, holding)
            with tally:
                holding -= 1
            release(lease, backend=backend)

    in_threads(6, cycles)

    assert 0 < most_held <= 3
    assert acquired >= 15  # released slots were reused
    assert reserve(subject, "concurrent_queries", 3, 60, backend=backend) is not None


@pytest.mark.slow
def test_processes_get_exactly_the_limit(backend, subject, noon):
    job = {
        "database": dict(connection.settings_dict),
        "time_zone": settings.TIME_ZONE,
        "redis_url": backend.url if isinstance(backend, RedisBackend) else None,
        "subject": subject,
        "now": noon.isoformat(),
        "limit": 30,
        "attempts": 15,
        "lease_limit": 5,
        "lease_attempts": 3,
    }

    results = _run_workers(job, count=4)

    assert sum(result["consumed"] for result in results) == 30
    assert sum(result["leases"] for result in results) == 5
    assert peek(subject, "queries", Window.DAY, backend=backend, now=noon) == 30
    assert reserve(subject, "concurrent_queries", 5, 60, backend=backend, now=noon) is None
    rollup_usage(backend=backend, now=noon)
    assert [row.amount for row in usage(subject, date(2026, 3, 10), date(2026, 3, 10))] == [30]


def _run_workers(job: dict, *, count: int) -> list[dict]:
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(count)
    ]
    try:
        for worker in workers:
            worker.stdin.write(json.dumps(job, default=str) + "\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", "a worker failed to start; see its stderr above"
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert [worker.returncode for worker in workers] == [0] * count
    return [json.loads(output) for output in outputs]


def test_threads_charging_batches_never_split_one(backend, subject, noon):
    """Each batch takes 1 query and 7 rows: a split batch would leave rows != 7 x queries."""

    def attempts() -> int:
        batch = [Charge(subject, "queries", 1, 30, Window.DAY), Charge(subject, "rows", 7, 140, Window.DAY)]
        return sum(all(d.allowed for d in consume_all(batch, backend=backend, now=noon)) for _ in range(10))

    granted = in_threads(8, attempts)

    assert sum(granted) == 20  # 140 rows run out first
    assert peek(subject, "queries", Window.DAY, backend=backend, now=noon) == 20
    assert peek(subject, "rows", Window.DAY, backend=backend, now=noon) == 140
