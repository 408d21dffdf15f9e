"""Helpers shared by the quota tests (tests/quotas)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connections

Result = TypeVar("Result")


def in_threads(count: int, work: Callable[[], Result]) -> list[Result]:
    """Run `work` in `count` threads released together, each with (and then closing) its own connection."""
    start_together = threading.Barrier(count)

    def run() -> Result:
        start_together.wait()
        try:
            return work()
        finally:
            connections.close_all()  # this thread's connections only

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(run) for _ in range(count)]
        return [future.result() for future in futures]
