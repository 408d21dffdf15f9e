"""One partner query, whatever it contains, cannot take the host down: queries run in worker processes.

Each bomb ends within its plan's time limit plus the kill grace, with a refusal
(400: a static rule may bound size arguments) or a limit code (408, 413), never
a success past the limit and never a 5xx; the worker's memory stays under the
ceiling; the next query works, and a query on another worker is not disturbed.
Some bombs no static rule can see (sizes and strings built from the data at run
time): they prove the isolation itself.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from catalog_support import approved, auth, bearer_token
from query_support import FUND, arrow_stream_batches

from datasets.query import formats
from datasets.query.errors import Code, QueryError, QueryFailed, QueryRejected
from datasets.query.isolation import IsolatedGateway
from datasets.query.limits import Limits
from datasets.query.sandbox import SandboxConfig
from datasets.spec import Mode

CEILING_BYTES = 512 * 1024**2
LIMIT_SECONDS = 2.0
GRACE_SECONDS = 1.0
# Scheduling slack on a busy 2-core machine, on top of limit + grace.
SLACK_SECONDS = 1.5
LIMIT_CODES = {Code.TIME_LIMIT_EXCEEDED, Code.MEMORY_LIMIT_EXCEEDED}
# 4xx answers a bomb may get: a limit, or DuckDB's own refusal (e.g. a vector over its maximum size).
BOMB_CODES = LIMIT_CODES | {Code.QUERY_ERROR}

BOMBS = {
    # Literal size arguments: a static rule on arguments could bound these.
    "list_resize": "SELECT len(list_resize([1], 400000000)) AS n FROM numbers LIMIT 1",
    "nested list_resize": (
        "SELECT len(list_transform(list_resize([1], 25000), lambda x: list_resize([x], 25000))) AS n"
        " FROM numbers LIMIT 1"
    ),
    "lpad": "SELECT length(lpad('x', 1500000000, 'y')) AS n FROM numbers LIMIT 1",
    "repeat": "SELECT length(repeat('x', 2000000000)) AS n FROM numbers LIMIT 1",
    # Built from the data at run time: no static rule on arguments can see these.
    "size from the data": "SELECT len(list_resize([1], max(n) * 10000)) AS n FROM numbers",
    "list aggregate over a cross join": "SELECT len(list(a.n)) AS n FROM numbers a, numbers b",
    "string aggregate over a cross join": "SELECT length(string_agg(a.n::VARCHAR, ',')) AS n FROM numbers a, numbers b",
    "uninterruptible scalar sized by the data": "SELECT length(lpad('x', (max(n) * 50000)::INT, 'y')) AS n FROM numbers",
    "quadratic scalar on an aggregated string": (
        "SELECT levenshtein(s, reverse(s)) AS d FROM (SELECT string_agg(n::VARCHAR, '') AS s FROM numbers) t"
    ),
    "cross join count": "SELECT count(*) AS n FROM numbers a, numbers b, numbers c",
}
# One scalar evaluation of several seconds in under 1 GB (`roomy` below): DuckDB checks for
# interrupts only between vectors, so only the kill can end it on time.
UNINTERRUPTIBLE = "SELECT length(lpad('x', (max(n) * 10000)::INT, 'y')) AS n FROM numbers"


def isolated_gateway(store_root, temp_directory, ceiling_bytes):
    return IsolatedGateway(
        SandboxConfig(
            store_root=str(store_root),
            temp_directory=str(temp_directory),
            memory_limit_bytes=ceiling_bytes,
            threads=2,
            max_temp_directory_bytes=256 * 1024**2,
            max_concurrent_queries=2,
            queue_timeout_seconds=20,
        ),
        kill_grace_seconds=GRACE_SECONDS,
    )


@pytest.fixture(scope="module")
def isolated(store_root, tmp_path_factory):
    gateway = isolated_gateway(store_root, tmp_path_factory.mktemp("isolated-tmp"), CEILING_BYTES)
    yield gateway
    gateway.close()


@pytest.fixture(scope="module")
def roomy(store_root, tmp_path_factory):
    """Workers whose ceiling is far above the uninterruptible scalar's needs, and which ran no bomb before:
    the address space a worker keeps from earlier queries cannot turn its timeout into an out-of-memory."""
    gateway = isolated_gateway(store_root, tmp_path_factory.mktemp("roomy-tmp"), 4 * CEILING_BYTES)
    yield gateway
    gateway.close()


def attempt(gateway, bindings, sql, *, limits=None, fmt="json", on_start=None):
    """Run and read one query: (seconds, body or None, the error or None, the result or None)."""
    limits = limits or Limits(max_query_seconds=LIMIT_SECONDS, max_result_rows=1000)
    started = time.monotonic()
    result = body = error = None
    try:
        result = gateway.run(sql, bindings, FUND.key, limits)
        if on_start is not None:
            on_start(result)
        body = b"".join(formats.stream(result, fmt))
        error = result.error
    except QueryError as exc:
        error = exc
    return time.monotonic() - started, body, error, result


def assert_healthy(gateway, bindings):
    seconds, body, error, _ = attempt(gateway, bindings, "SELECT count(*) AS n FROM numbers")
    assert error is None, error
    assert json.loads(body)["rows"] == [[30000]]


@pytest.mark.parametrize("sql", BOMBS.values(), ids=BOMBS.keys())
def test_a_bomb_ends_within_its_limits_and_the_next_query_runs(isolated, bindings, sql):
    assert_healthy(isolated, bindings)  # workers started: the clock below measures the bomb only
    seconds, body, error, result = attempt(isolated, bindings, sql)

    assert seconds <= LIMIT_SECONDS + GRACE_SECONDS + SLACK_SECONDS
    if error is None:  # an answer is fine, but only within the limit
        assert seconds <= LIMIT_SECONDS + SLACK_SECONDS
    else:
        assert isinstance(error, QueryRejected) or error.code in BOMB_CODES, error
    if result is not None and result.peak_rss_bytes is not None:
        assert result.peak_rss_bytes - result.baseline_rss_bytes <= CEILING_BYTES
    assert_healthy(isolated, bindings)


def test_the_bombs_that_need_isolation_are_stopped_by_it(isolated, bindings):
    # The runtime-only bombs are not refused: the limits stopped them (whatever the static rules do).
    for name in (
        "list aggregate over a cross join",
        "uninterruptible scalar sized by the data",
    ):
        _, _, error, _ = attempt(isolated, bindings, BOMBS[name])
        assert isinstance(error, QueryFailed) and error.code in LIMIT_CODES, (name, error)


def test_an_uninterruptible_query_is_killed_after_the_grace_and_its_worker_replaced(roomy, bindings):
    isolated = roomy
    assert_healthy(isolated, bindings)
    before = set(isolated.worker_pids())
    limit = 0.5
    seconds, _, error, result = attempt(
        isolated, bindings, UNINTERRUPTIBLE, limits=Limits(max_query_seconds=limit, max_result_rows=10)
    )
    assert error.code == Code.TIME_LIMIT_EXCEEDED
    assert limit + GRACE_SECONDS <= seconds <= limit + GRACE_SECONDS + SLACK_SECONDS
    # Charged in full (every dataset it reads), as any unfinished query: in process or isolated alike.
    assert result.bytes_scanned == bindings["numbers"].size_bytes
    assert result.worker_pid not in isolated.worker_pids() or result.worker_pid not in before
    assert_healthy(isolated, bindings)


@pytest.fixture
def fresh(store_root, tmp_path):
    """Workers that ran no query before: one that ran the bombs may keep enough address space from them
    that a later large result fails under its cap, which is not what a test of the bombs' neighbours is about."""
    gateway = isolated_gateway(store_root, tmp_path, CEILING_BYTES)
    yield gateway
    gateway.close()


def test_a_query_on_another_worker_is_not_disturbed_by_a_bomb(fresh, bindings):
    isolated = fresh
    assert_healthy(isolated, bindings)
    outcome = {}

    def slow_reader():
        # Read slowly, so the query is still streaming while the bomb is killed next to it.
        result = isolated.run(
            "SELECT a.n AS a, b.n AS b FROM numbers a, numbers b",
            bindings,
            FUND.key,
            Limits(max_query_seconds=30, max_result_rows=200_000),
        )
        rows = 0
        for batch in result.record_batches():
            rows += batch.num_rows
            time.sleep(0.8)
        outcome.update(rows=rows, truncated=result.truncated, pid=result.worker_pid)

    thread = threading.Thread(target=slow_reader)
    thread.start()
    time.sleep(0.3)
    _, _, error, result = attempt(isolated, bindings, BOMBS["lpad"])
    thread.join(60)
    assert isinstance(error, QueryRejected) or error.code in LIMIT_CODES
    assert outcome == {"rows": 200_000, "truncated": True, "pid": outcome["pid"]}
    assert result is None or result.worker_pid != outcome["pid"]


def test_cancel_stops_an_uninterruptible_query_within_about_a_second(roomy, bindings):
    isolated = roomy
    assert_healthy(isolated, bindings)
    cancel_at = {}

    def cancel_soon(result):
        def cancel():
            time.sleep(0.5)
            cancel_at["t"] = time.monotonic()
            result.cancel()

        threading.Thread(target=cancel).start()

    _, _, error, _ = attempt(
        isolated,
        bindings,
        UNINTERRUPTIBLE,
        limits=Limits(max_query_seconds=60, max_result_rows=10),
        on_start=cancel_soon,
    )
    stopped = time.monotonic()
    assert error.code == Code.QUERY_CANCELLED
    assert stopped - cancel_at["t"] <= 1.0 + SLACK_SECONDS
    assert_healthy(isolated, bindings)


def test_cancel_of_an_interruptible_query_keeps_its_worker(isolated, bindings):
    assert_healthy(isolated, bindings)
    holder = {}

    def cancel_soon(result):
        holder["result"] = result
        threading.Timer(0.3, result.cancel).start()

    seconds, _, error, result = attempt(
        isolated,
        bindings,
        BOMBS["cross join count"],
        limits=Limits(max_query_seconds=60, max_result_rows=10),
        on_start=cancel_soon,
    )
    assert error.code == Code.QUERY_CANCELLED
    assert seconds < 1.0 + SLACK_SECONDS
    assert result.worker_pid in isolated.worker_pids()  # interrupted, not killed


def test_a_result_closed_early_leaves_its_worker_reusable(isolated, bindings):
    assert_healthy(isolated, bindings)
    result = isolated.run(
        "SELECT a.n AS a, b.n AS b FROM numbers a, numbers b",
        bindings,
        FUND.key,
        Limits(max_query_seconds=30, max_result_rows=10**6),
    )
    batches = result.record_batches()
    next(batches)
    batches.close()  # the client went away
    assert result.rows > 0 and result.bytes_scanned is not None
    assert result.worker_pid in isolated.worker_pids()
    unread = isolated.run("SELECT n FROM numbers", bindings, FUND.key, Limits())
    unread.close()  # never read at all
    assert unread.worker_pid in isolated.worker_pids()
    assert_healthy(isolated, bindings)


def test_a_worker_that_dies_mid_query_answers_memory_exceeded_and_is_replaced(isolated, bindings):
    assert_healthy(isolated, bindings)

    def die_soon(result):
        threading.Timer(0.3, os.kill, (result.worker_pid, signal.SIGKILL)).start()

    _, _, error, result = attempt(
        isolated,
        bindings,
        BOMBS["cross join count"],
        limits=Limits(max_query_seconds=30, max_result_rows=10),
        on_start=die_soon,
    )
    assert error.code == Code.MEMORY_LIMIT_EXCEEDED
    assert result.worker_pid not in isolated.worker_pids()
    assert_healthy(isolated, bindings)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT province, count(*) AS n, sum(amount) AS total FROM cards GROUP BY province ORDER BY province",
        "SELECT customer, phone, city, balance FROM people ORDER BY balance",
        "SELECT [n, n + 1] AS pair, {'a': n} AS s, n / 0 AS inf, CAST('a' AS ENUM('a', 'b')) AS e"
        " FROM numbers ORDER BY n LIMIT 5",
    ],
)
@pytest.mark.parametrize("fmt", ["json", "csv", "arrow", "parquet"])
def test_results_are_the_same_as_in_process(isolated, gateway, bindings, sql, fmt):
    limits = Limits(max_query_seconds=10, max_result_rows=3)
    ours = isolated.run(sql, bindings, FUND.key, limits)
    theirs = gateway.run(sql, bindings, FUND.key, limits)
    if "ENUM" in sql and fmt in ("arrow", "parquet"):  # ENUMs cross the pipe as their strings
        assert ours.columns == theirs.columns
        if fmt == "arrow":  # still a valid stream, with the same values and the truncation flag
            batches = arrow_stream_batches(b"".join(formats.stream(ours, fmt)))
            assert [row["e"] for batch, _ in batches for row in batch.to_pylist()] == ["a", "a", "a"]
            assert batches[-1][1][b"vitamin.truncated"] == b"true"
        return
    assert b"".join(formats.stream(ours, fmt)) == b"".join(formats.stream(theirs, fmt))
    assert (ours.rows, ours.truncated, ours.columns) == (theirs.rows, theirs.truncated, theirs.columns)
    # Told how it will be read, the worker streams at once: the same bytes.
    told = isolated.execute(isolated.check(sql, bindings), FUND.key, limits, read=formats.READS[fmt])
    again = gateway.run(sql, bindings, FUND.key, limits)
    assert b"".join(formats.stream(told, fmt)) == b"".join(formats.stream(again, fmt))
    assert (told.rows, told.truncated) == (again.rows, again.truncated)


def test_a_result_told_its_read_is_read_that_way_or_closed_and_its_worker_stays(isolated, bindings):
    assert_healthy(isolated, bindings)
    limits = Limits(max_query_seconds=30, max_result_rows=10**6)
    checked = isolated.check("SELECT a.n AS a, b.n AS b FROM numbers a, numbers b", bindings)
    streaming = isolated.execute(checked, FUND.key, limits, read=formats.READS["arrow"])
    with pytest.raises(RuntimeError):
        streaming.json_rows(prefix=",")  # not the read the worker was told
    streaming.close()
    assert streaming.worker_pid in isolated.worker_pids()
    unread = isolated.execute(checked, FUND.key, limits, read=formats.READS["json"])
    unread.close()  # told, streaming already, and never read: cancelled, the worker kept
    assert unread.bytes_scanned is not None
    assert unread.worker_pid in isolated.worker_pids()
    assert_healthy(isolated, bindings)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, all threads) process `pid` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_used_within(pid: int, seconds: float, timeout: float) -> bool:
    """Whether `pid` uses `seconds` of CPU within `timeout` (not a measure of speed: a computing worker does)."""
    start, deadline = cpu_seconds(pid), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cpu_seconds(pid) - start >= seconds:
            return True
        time.sleep(0.05)
    return False


ENDLESS = "SELECT count(*) AS n FROM numbers a, numbers b, numbers c"  # 2.7e13 rows: it computes until stopped


def test_a_query_sent_without_its_read_computes_nothing_until_it_is_told_to_go(isolated, bindings):
    assert_healthy(isolated, bindings)
    limits = Limits(max_query_seconds=30, max_result_rows=10)
    submitted = isolated.submit(isolated.check(ENDLESS, bindings), FUND.key, limits, held=True)
    time.sleep(0.3)  # prepared by now: a connection taken, the views bound
    assert not cpu_used_within(submitted.worker_pid, 0.1, timeout=1.0)  # and nothing computed
    submitted.go(formats.READS["json"])
    assert cpu_used_within(submitted.worker_pid, 0.2, timeout=10.0)  # computing now
    result = submitted.started()
    result.cancel()
    with pytest.raises(QueryFailed) as cancelled:
        b"".join(formats.stream(result, "json"))
    assert cancelled.value.code == Code.QUERY_CANCELLED
    assert result.worker_pid in isolated.worker_pids()
    with pytest.raises(RuntimeError):
        submitted.go(formats.READS["json"])  # once, before it is started
    assert_healthy(isolated, bindings)


def test_a_query_sent_without_its_read_and_abandoned_never_computes_and_keeps_its_worker(isolated, bindings):
    assert_healthy(isolated, bindings)
    limits = Limits(max_query_seconds=30, max_result_rows=10)
    submitted = isolated.submit(isolated.check(ENDLESS, bindings), FUND.key, limits, held=True)
    pid, before = submitted.worker_pid, cpu_seconds(submitted.worker_pid)
    submitted.abandoned()  # its start was refused (a slot, the quota) or could not be recorded
    assert cpu_seconds(pid) - before < 0.1
    assert pid in isolated.worker_pids()
    assert_healthy(isolated, bindings)


@pytest.fixture(scope="module")
def crowd(store_root, bindings):
    """An aggregate dataset (cards' rules) large enough that building the groups of a self-join computes
    for seconds: an aggregate plan's first statements scan the data before the answer is bound."""
    rows = 20_000
    table = pa.table(
        {
            "province": [f"p{i % 50}" for i in range(rows)],
            "month": ["2024-01"] * rows,
            "category": ["food", "travel"] * (rows // 2),
            "buyer": [f"b{i}" for i in range(rows)],
            "phone": [f"phone-{i}" for i in range(rows)],
            "amount": [1.0] * rows,
        }
    )
    folder = store_root / "datasets" / "crowd" / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")
    files = (str(folder / "part-0.parquet"),)
    return {"crowd": replace(bindings["cards"], slug="crowd", files=files, size_bytes=os.path.getsize(files[0]))}


CROWD_SELF_JOIN = (
    "SELECT a.province, count(*) AS n FROM crowd a JOIN crowd b ON a.category = b.category GROUP BY a.province"
)


def test_a_held_aggregate_query_builds_no_group_until_it_is_told_to_go(isolated, bindings, crowd):
    limits = Limits(max_query_seconds=60, max_result_rows=100)
    checked = isolated.check(CROWD_SELF_JOIN, crowd)
    assert checked.prepare  # its plan computes before its answer is bound
    submitted = isolated.submit(checked, FUND.key, limits, held=True)
    assert not cpu_used_within(submitted.worker_pid, 0.1, timeout=1.0)
    submitted.go(formats.READS["json"])
    assert cpu_used_within(submitted.worker_pid, 0.2, timeout=20.0)
    result = submitted.started()
    result.cancel()
    with pytest.raises(QueryFailed):
        b"".join(formats.stream(result, "json"))
    held = isolated.submit(checked, FUND.key, limits, held=True)
    pid, before = held.worker_pid, cpu_seconds(held.worker_pid)
    with pytest.raises(RuntimeError):
        held.started()  # told to go, or abandoned, first
    time.sleep(0.3)
    held.abandoned()  # refused: never computed, and the worker is back
    assert cpu_seconds(pid) - before < 0.1
    assert pid in isolated.worker_pids()
    assert_healthy(isolated, bindings)


def test_a_prepared_query_counts_its_time_limit_from_go_not_from_when_it_was_sent(isolated, bindings):
    """A start's transaction that waits (a stalled database) longer than the plan's limit and the kill grace
    must not cost the partner the query: neither the worker's watchdog nor the parent's kill counts that wait."""
    assert_healthy(isolated, bindings)
    limit = 0.5
    limits = Limits(max_query_seconds=limit, max_result_rows=10)
    submitted = isolated.submit(
        isolated.check("SELECT count(*) AS n FROM numbers", bindings), FUND.key, limits, held=True
    )
    time.sleep(limit + GRACE_SECONDS + 1.0)  # past both clocks, had they started when it was sent
    submitted.go(formats.READS["json"])
    result = submitted.started()
    body = b"".join(formats.stream(result, "json"))
    assert result.error is None, result.error
    assert json.loads(body)["rows"] == [[30000]]
    assert result.worker_pid in isolated.worker_pids()


def test_a_prepared_query_still_ends_at_its_limit_counted_from_go(isolated, bindings):
    assert_healthy(isolated, bindings)
    limit = 1.0
    limits = Limits(max_query_seconds=limit, max_result_rows=10)
    submitted = isolated.submit(isolated.check(ENDLESS, bindings), FUND.key, limits, held=True)
    time.sleep(limit + GRACE_SECONDS + 0.5)
    told = time.monotonic()
    submitted.go(formats.READS["json"])
    result = submitted.started()
    with pytest.raises(QueryFailed) as ended:
        b"".join(formats.stream(result, "json"))
    seconds = time.monotonic() - told
    assert ended.value.code == Code.TIME_LIMIT_EXCEEDED
    assert limit <= seconds <= limit + GRACE_SECONDS + SLACK_SECONDS
    # Ended by its worker's watchdog (restarted at go), not by the kill: the worker lives on.
    assert result.worker_pid in isolated.worker_pids()
    assert_healthy(isolated, bindings)


def test_refusals_come_back_as_the_engine_raised_them(isolated, bindings):
    with pytest.raises(QueryRejected) as refused:
        isolated.run("SELECT * FROM read_text('/etc/hostname')", bindings, FUND.key, Limits())
    assert refused.value.code == Code.TABLE_FUNCTION_NOT_ALLOWED
    with pytest.raises(QueryFailed) as failed:
        list(isolated.run("SELECT CAST('x' AS INTEGER) AS n FROM numbers", bindings, FUND.key, Limits()).json_rows())
    assert failed.value.code == Code.QUERY_ERROR
    assert_healthy(isolated, bindings)


# --- through the live API -------------------------------------------------------------------------


@pytest.fixture
def small_limits(settings, plan):
    settings.QUERY_MEMORY_LIMIT_MB = CEILING_BYTES // 1024**2
    settings.QUERY_KILL_GRACE_SECONDS = 1
    settings.QUERY_POOL_SIZE = 2
    plan.max_query_seconds = 3
    plan.save()
    return plan


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT len(list_resize([1], 400000000)) AS n FROM industry_prosperity_monthly LIMIT 1",
        "SELECT length(lpad('x', 1500000000, 'y')) AS n FROM industry_prosperity_monthly LIMIT 1",
        "SELECT length(lpad('x', least(count(*) * 100000000, 1500000000)::INT, 'y')) AS n"
        " FROM industry_prosperity_monthly",
    ],
    ids=["list_resize", "lpad", "lpad sized by the data"],
)
def test_a_bomb_through_the_api_is_a_4xx_within_the_limit_and_the_next_query_runs(
    client, fund, catalog, small_limits, sql
):
    approved(fund, catalog.industry, small_limits, [Mode.QUERY])
    headers = auth(bearer_token(fund))

    def post(text):
        started = time.monotonic()
        response = client.post("/api/v1/query", {"sql": text}, content_type="application/json", **headers)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, body, time.monotonic() - started

    post("SELECT count(*) AS n FROM industry_prosperity_monthly")  # workers started
    status, body, seconds = post(sql)
    assert status in (400, 408, 413), body
    assert seconds <= 3 + 1 + SLACK_SECONDS
    status, body, _ = post("SELECT count(*) AS n FROM industry_prosperity_monthly")
    assert status == 200, body


def test_a_query_whose_start_waits_longer_than_its_limit_still_runs_in_full(
    client, fund, catalog, small_limits, monkeypatch
):
    """The start's transaction (slots, charge, `query.start`) stalls past the plan's limit and the kill
    grace, as a slow database could: the query, prepared in a worker meanwhile, is charged and must run."""
    from access import metering
    from query.service import get_gateway

    small_limits.max_query_seconds = 1
    small_limits.save()
    approved(fund, catalog.industry, small_limits, [Mode.QUERY])
    headers = auth(bearer_token(fund))
    sql = "SELECT count(*) AS n FROM industry_prosperity_monthly"

    def post():
        response = client.post("/api/v1/query", {"sql": sql}, content_type="application/json", **headers)
        return response.status_code, b"".join(response.streaming_content) if response.streaming else response.content

    status, expected = post()  # the workers are up: the next query is prepared before its start
    assert status == 200, expected
    pids = set(get_gateway().worker_pids())
    real_hold = metering.hold_query_slots

    def stalled_hold(*args, **kwargs):
        time.sleep(1 + 1 + 1.0)  # past the limit and the grace, counted from when the query was prepared
        return real_hold(*args, **kwargs)

    monkeypatch.setattr(metering, "hold_query_slots", stalled_hold)
    status, body = post()
    assert status == 200, body
    assert json.loads(body)["rows"] == json.loads(expected)["rows"]
    assert set(get_gateway().worker_pids()) == pids  # and no worker was killed for the wait
