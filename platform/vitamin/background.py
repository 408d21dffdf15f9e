"""A thread that does something every few seconds while a block of code runs.

    with every(5.0, heartbeat.beat, name="refresh-heartbeat-42"):
        build()

Used for a refresh's heartbeat and for watching a query job for cancellation:
work that must go on beside a long call that does not return in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection

log = logging.getLogger("vitamin.background")


@contextmanager
def every(seconds: float, tick: Callable[[], None], *, name: str) -> Iterator[None]:
    """Call `tick` every `seconds` from a thread of its own until the block ends (not once more after).

    A tick that raises is logged and the next one still comes, on a fresh database
    connection; the thread's connection is closed when it ends.
    """
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(seconds):
                try:
                    tick()
                except Exception:  # noqa: BLE001 - best effort beside the real work; try again next time
                    log.exception("%s failed", name)
                    connection.close()
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
