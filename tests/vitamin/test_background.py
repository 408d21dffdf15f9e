"""`every`: work beside a long call, which a failing tick does not stop and which ends with the block."""

from __future__ import annotations

import threading
import time

from vitamin.background import every


def test_ticks_come_while_the_block_runs_and_stop_with_it():
    ticks: list[float] = []
    with every(0.01, lambda: ticks.append(time.monotonic()), name="test-ticks"):
        while len(ticks) < 3:
            time.sleep(0.005)
    ended = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == ended >= 3
    assert not any(thread.name == "test-ticks" for thread in threading.enumerate())


def test_a_failing_tick_is_logged_and_the_next_still_comes(caplog):
    calls = []

    def tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")

    with every(0.01, tick, name="test-failing"):
        while len(calls) < 3:
            time.sleep(0.005)
    assert "test-failing failed" in caplog.text
