"""The node's count of running queries (datasets.query.running) and the threads a query gets from it.

The count is kept by POSIX record locks that separate processes hold, so it is tried from separate
processes: several holding at once, one killed mid-hold, and query worker processes themselves.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from query_support import FUND

from datasets.query import formats
from datasets.query.errors import QueryError
from datasets.query.isolation import RUNNING_QUERIES_FILE, IsolatedGateway
from datasets.query.limits import Limits
from datasets.query.running import SLOTS, RunningQueries, node_cores, threads_for
from datasets.query.sandbox import SandboxConfig

REPO = Path(__file__).resolve().parents[2]
# A process that counts itself in, prints the count it got, and holds its slot until stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from datasets.query.running import RunningQueries
    running = RunningQueries(sys.argv[1])
    print(running.enter(), flush=True)
    sys.stdin.read()
    running.leave()
    print("left", flush=True)
    """
)


def holder(path: Path) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@given(running=st.integers(1, 10_000), configured=st.integers(1, 64), cores=st.integers(1, 256))
def test_a_query_gets_its_threads_only_while_the_node_has_the_cores_for_them(running, configured, cores):
    threads = threads_for(running, configured=configured, cores=cores)
    assert threads == (configured if running * configured <= cores else 1)
    # More queries running never give a query more threads.
    assert threads_for(running + 1, configured=configured, cores=cores) <= threads


def test_processes_holding_slots_are_counted_and_a_killed_one_stops_counting_at_once(tmp_path):
    path = tmp_path / "running"
    looker = RunningQueries(str(path))
    holders = [holder(path) for _ in range(5)]
    try:
        counts = [int(process.stdout.readline()) for process in holders]
        assert all(1 <= count <= 5 for count in counts)
        assert looker.count() == 5
        # A killed holder cannot leave; the kernel drops its lock with the process.
        holders[2].send_signal(signal.SIGKILL)
        holders[2].wait(timeout=10)
        assert looker.count() == 4
        # One that leaves stops counting; the next one to come in takes a free slot and counts the others.
        holders[0].stdin.close()
        assert holders[0].stdout.readline().strip() == "left"
        assert looker.count() == 3
        newcomer = holder(path)
        holders.append(newcomer)
        assert int(newcomer.stdout.readline()) == 4
        assert looker.count() == 4
    finally:
        for process in holders:
            process.kill()
            process.wait(timeout=10)
    assert looker.count() == 0
    looker.close()


def test_many_processes_coming_in_at_once_each_get_a_slot_of_their_own(tmp_path):
    path = tmp_path / "running"
    holders = [holder(path) for _ in range(12)]
    try:
        counts = [int(process.stdout.readline()) for process in holders]
        assert RunningQueries(str(path)).count() == 12  # twelve distinct slots held, none shared
        assert max(counts) == 12 and min(counts) >= 1
    finally:
        for process in holders:
            process.kill()
            process.wait(timeout=10)


def test_a_process_counts_one_query_at_a_time(tmp_path):
    running = RunningQueries(str(tmp_path / "running"))
    assert running.enter() == 1
    with pytest.raises(RuntimeError):
        running.enter()
    running.leave()
    running.leave()  # leaving twice is harmless
    assert running.enter() == 1
    running.close()


@pytest.fixture
def workers(store_root, tmp_path):
    gateway = IsolatedGateway(
        SandboxConfig(
            store_root=str(store_root),
            temp_directory=str(tmp_path),
            memory_limit_bytes=256 * 1024**2,
            threads=2,
            max_temp_directory_bytes=256 * 1024**2,
            max_concurrent_queries=2,
        )
    )
    yield gateway, tmp_path / RUNNING_QUERIES_FILE
    gateway.close()


def run(gateway, bindings, sql="SELECT category, count(*) AS n FROM cards GROUP BY category ORDER BY category"):
    result = gateway.run(sql, bindings, FUND.key, Limits(max_query_seconds=10, max_result_rows=1000))
    body = json.loads(b"".join(formats.stream(result, "json")))
    return result, body


def test_a_worker_runs_a_query_alone_on_its_threads_and_on_one_while_the_node_is_busy(workers, bindings):
    gateway, path = workers
    alone, alone_body = run(gateway, bindings)
    assert alone.threads == threads_for(1, configured=2, cores=node_cores())
    assert RunningQueries(str(path)).count() == 0  # the slot was given back with the result

    # Other queries of the node (here: this process holding as many slots as the node has cores).
    with open(path, "r+b") as busy:
        fcntl.lockf(busy, fcntl.LOCK_EX | fcntl.LOCK_NB, node_cores(), 0, os.SEEK_SET)
        crowded, crowded_body = run(gateway, bindings)
        fcntl.lockf(busy, fcntl.LOCK_UN, node_cores(), 0, os.SEEK_SET)
    assert crowded.threads == 1
    assert crowded_body["rows"] == alone_body["rows"]  # one thread or two, the same answer

    again, _ = run(gateway, bindings)
    assert again.threads == alone.threads


def test_a_query_cut_short_or_refused_gives_its_slot_back(workers, bindings):
    gateway, path = workers
    result = gateway.run("SELECT n FROM numbers", bindings, FUND.key, Limits(max_query_seconds=10, max_result_rows=10))
    assert RunningQueries(str(path)).count() == 1  # started, not read yet
    result.close()
    assert RunningQueries(str(path)).count() == 0
    with pytest.raises(QueryError):  # an error DuckDB finds only while running it
        run(gateway, bindings, "SELECT CAST('x' || n AS INTEGER) AS m FROM numbers")
    assert RunningQueries(str(path)).count() == 0


def test_a_node_with_every_slot_taken_counts_as_full_and_runs_the_query_on_one_thread(tmp_path):
    path = tmp_path / "running"
    script = textwrap.dedent(
        f"""
        import fcntl, os, sys
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.lockf(fd, fcntl.LOCK_EX, {SLOTS}, 0, os.SEEK_SET)
        print("held", flush=True)
        sys.stdin.read()
        """
    )
    hog = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert hog.stdout.readline().strip() == "held"
        running = RunningQueries(str(path))
        assert running.count() == SLOTS
        assert running.enter() == SLOTS  # counted as full, holding nothing
        assert threads_for(SLOTS, configured=2, cores=node_cores()) == 1
        running.close()
    finally:
        hog.kill()
        hog.wait(timeout=10)


def test_a_node_whose_count_cannot_be_kept_still_answers_queries_on_the_configured_threads(
    store_root, tmp_path, bindings, gateway
):
    (tmp_path / RUNNING_QUERIES_FILE).mkdir()  # where the file should be, something that cannot be locked
    uncounted = IsolatedGateway(
        SandboxConfig(store_root=str(store_root), temp_directory=str(tmp_path), threads=2, max_concurrent_queries=1)
    )
    try:
        result, body = run(uncounted, bindings)
        _, in_process = run(gateway, bindings)
        assert result.threads == 2
        assert body["rows"] == in_process["rows"]
    finally:
        uncounted.close()
