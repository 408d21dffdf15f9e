"""The DuckDB sandbox: locked down even if the checker were bypassed, limits that end runaway queries,
a bounded pool, bytes scanned, and error messages that never show the server's paths or settings."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from query_support import FUND

from datasets.query import formats
from datasets.query.errors import Code, QueryFailed, sanitize_message
from datasets.query.gateway import Gateway
from datasets.query.limits import Limits
from datasets.query.sandbox import SandboxConfig

# -- defence in depth: the instance itself refuses what the checker refuses --------------------


@pytest.fixture
def raw_cursor(gateway, bindings):
    """A pooled connection used directly, as if partner SQL had slipped past the checker."""
    session = gateway._sandbox.acquire()
    session.bind([bindings["people"]], FUND.key)
    yield session.cursor
    gateway._sandbox.release(session)


BYPASS_ATTEMPTS = [
    "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM glob('/etc/*')",
    "SET memory_limit = '100GB'",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
    "RESET threads",
    "INSTALL httpfs",
    "LOAD httpfs",
    "ATTACH '/tmp/vitamin-sandbox-escape.duckdb' AS escape",
    "COPY (SELECT 1) TO '/tmp/vitamin-sandbox-escape.csv'",
    "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
    "SELECT * FROM python_secret_frame",
]


@pytest.mark.parametrize("sql", BYPASS_ATTEMPTS)
def test_the_instance_refuses_what_the_checker_would(raw_cursor, sql):
    python_secret_frame = pa.table({"secret": ["in the caller's frame"]})  # a replacement scan would find it
    assert python_secret_frame.num_rows == 1
    with pytest.raises(duckdb.Error):
        raw_cursor.sql(sql).fetchall()
    assert not Path("/tmp/vitamin-sandbox-escape.csv").exists()
    assert not Path("/tmp/vitamin-sandbox-escape.duckdb").exists()


def test_the_instance_reads_the_bound_datasets_and_keeps_its_limits(raw_cursor):
    assert raw_cursor.sql("SELECT count(*) FROM people").fetchall() == [(20,)]
    settings = dict(
        raw_cursor.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('enable_external_access', 'lock_configuration', 'autoload_known_extensions', "
            "'autoinstall_known_extensions', 'python_enable_replacements', 'memory_limit')"
        ).fetchall()
    )
    assert settings["enable_external_access"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["autoload_known_extensions"] == settings["autoinstall_known_extensions"] == "false"
    assert settings["python_enable_replacements"] == "false"
    assert settings["memory_limit"].startswith("256")


def test_every_pooled_connection_has_the_instances_session_settings(gateway):
    """A plain SET holds for one session only: each pooled connection is its own session, and must still
    keep the Parquet metadata cache and the execution-time backstop set on the instance."""
    sandbox = gateway._sandbox
    sessions = [sandbox.acquire() for _ in range(sandbox.config.max_concurrent_queries)]
    try:
        for session in sessions:
            cache, backstop = session.cursor.execute(
                "SELECT current_setting('parquet_metadata_cache'), current_setting('max_execution_time')"
            ).fetchone()
            assert cache is True
            assert backstop == int(sandbox.config.max_execution_seconds * 1000) > 0
    finally:
        for session in sessions:
            sandbox.release(session)


# -- runaway queries end, and the engine stays usable ------------------------------------------

RUNAWAYS = [
    "SELECT count(*) FROM numbers a, numbers b, numbers c WHERE a.n + b.n + c.n = 7",
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT max(i) FROM r",
    "SELECT a.n, b.n FROM numbers a, numbers b ORDER BY (a.n * 7919 + b.n) % 1000003 LIMIT 5",
]


@pytest.mark.parametrize("sql", RUNAWAYS)
def test_a_runaway_query_hits_the_time_limit_and_frees_its_connection(gateway, bindings, run, sql):
    with pytest.raises(QueryFailed) as failed:
        result = gateway.run(sql, bindings, FUND.key, Limits(max_query_seconds=1))
        list(result.record_batches())
    assert failed.value.code == Code.TIME_LIMIT_EXCEEDED
    for _ in range(3):  # more queries than the pool has connections: none was kept
        assert run("SELECT 42 AS answer")[1] == [(42,)]


def test_a_query_cancelled_from_another_thread_stops_mid_computation(gateway, bindings, run):
    result = gateway.run(RUNAWAYS[1], bindings, FUND.key, Limits(max_query_seconds=60))
    canceller = threading.Timer(0.5, result.cancel)
    canceller.start()
    with pytest.raises(QueryFailed) as failed:
        list(result.record_batches())
    canceller.join()
    assert failed.value.code == Code.QUERY_CANCELLED  # not the 60 s time limit
    for _ in range(3):
        assert run("SELECT 42 AS answer")[1] == [(42,)]


def test_a_query_cancelled_before_it_started_never_runs(gateway, bindings, run):
    # DuckDB ignores an interrupt while nothing executes: the cancel must stick until reading starts.
    result = gateway.run(RUNAWAYS[1], bindings, FUND.key, Limits(max_query_seconds=60))
    result.cancel()
    with pytest.raises(QueryFailed) as failed:
        list(result.record_batches())
    assert failed.value.code == Code.QUERY_CANCELLED
    assert run("SELECT 42 AS answer")[1] == [(42,)]


def test_a_client_that_reads_too_slowly_is_cut_off_at_the_time_limit(gateway, bindings, run):
    result = gateway.run(
        "SELECT a.n, b.n FROM numbers a, numbers b",
        bindings,
        FUND.key,
        Limits(max_query_seconds=1, max_result_rows=10**9),
    )
    batches = result.record_batches()
    next(batches)
    time.sleep(1.2)
    with pytest.raises(QueryFailed) as failed:
        for _ in batches:
            pass
    assert failed.value.code == Code.TIME_LIMIT_EXCEEDED
    assert result.bytes_scanned == bindings["numbers"].size_bytes  # an unfinished query is charged in full
    assert run("SELECT 1 AS one")[1] == [(1,)]


def test_a_query_needing_too_much_memory_fails_cleanly(gateway, bindings, run):
    sql = "SELECT string_agg(a.n::VARCHAR || b.n::VARCHAR, ',') FROM numbers a, numbers b"
    with pytest.raises(QueryFailed) as failed:
        list(gateway.run(sql, bindings, FUND.key, Limits(max_query_seconds=60)).record_batches())
    assert failed.value.code == Code.MEMORY_LIMIT_EXCEEDED
    assert "memory_limit" not in failed.value.message and "SET" not in failed.value.message
    assert run("SELECT count(*) FROM numbers")[1] == [(30_000,)]


def test_the_row_cap_truncates_and_says_so(run, gateway, bindings):
    result = gateway.run("SELECT n FROM numbers ORDER BY n DESC", bindings, FUND.key, Limits(max_result_rows=7))
    rows = [n for batch in result.record_batches() for n in batch.column(0).to_pylist()]
    assert rows == list(range(29_999, 29_992, -1)) and result.truncated and result.rows == 7
    exact = gateway.run("SELECT n FROM numbers WHERE n < 7", bindings, FUND.key, Limits(max_result_rows=7))
    assert sum(b.num_rows for b in exact.record_batches()) == 7 and not exact.truncated


@pytest.mark.parametrize(
    ("limit", "rows", "truncated"),
    [("LIMIT 7", 7, False), ("LIMIT 3", 3, False), ("LIMIT 8", 7, True), ("LIMIT 50 PERCENT", 7, True), ("", 7, True)],
)
def test_the_partners_own_limit_and_the_cap_combine(gateway, bindings, limit, rows, truncated):
    with gateway.run(f"SELECT n FROM numbers {limit}", bindings, FUND.key, Limits(max_result_rows=7)) as result:
        assert sum(b.num_rows for b in result.record_batches()) == rows
    assert result.truncated is truncated


# -- the pool ------------------------------------------------------------------------------------


@pytest.fixture
def small_gateway(store_root, tmp_path):
    gateway = Gateway(
        SandboxConfig(
            store_root=str(store_root),
            temp_directory=str(tmp_path),
            memory_limit_bytes=128 * 1024**2,
            threads=1,
            max_concurrent_queries=1,
            queue_timeout_seconds=0.2,
        )
    )
    yield gateway
    gateway.close()


def test_queries_beyond_the_process_limit_wait_then_are_refused(small_gateway, bindings):
    first = small_gateway.run("SELECT * FROM people", bindings, FUND.key, Limits())
    with pytest.raises(QueryFailed) as busy:
        small_gateway.run("SELECT * FROM people", bindings, FUND.key, Limits())
    assert busy.value.code == Code.SERVER_BUSY
    first.close()  # closing without reading gives the connection back
    with small_gateway.run("SELECT count(*) FROM people", bindings, FUND.key, Limits()) as second:
        assert [b.column(0).to_pylist() for b in second.record_batches()] == [[20]]


def test_a_waiting_query_runs_as_soon_as_a_connection_is_free(small_gateway, bindings):
    first = small_gateway.run("SELECT * FROM people", bindings, FUND.key, Limits())
    threading.Timer(0.05, first.close).start()
    with small_gateway.run("SELECT count(*) FROM accounts", bindings, FUND.key, Limits()) as second:
        assert [b.column(0).to_pylist() for b in second.record_batches()] == [[10]]


def test_a_result_can_be_read_once(gateway, bindings):
    result = gateway.run("SELECT 1 AS one", bindings, FUND.key, Limits())
    assert [b.num_rows for b in result.record_batches()] == [1]
    with pytest.raises(RuntimeError):
        list(result.record_batches())


# -- versions ------------------------------------------------------------------------------------


def test_a_new_version_replaces_the_old_one_for_the_next_query(gateway, bindings, store_root, run):
    folder = store_root / "datasets" / "accounts" / "v2"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"customer": ["cust-100"], "bank": ["BOC"]}), folder / "part-0.parquet")
    v2 = dataclasses.replace(bindings["accounts"], version=2, files=(str(folder / "part-0.parquet"),))
    assert run("SELECT count(*) FROM accounts")[1] == [(10,)]
    with gateway.run("SELECT bank FROM accounts", {"accounts": v2}, FUND.key, Limits()) as result:
        assert [b.column(0).to_pylist() for b in result.record_batches()] == [["BOC"]]
    assert run("SELECT count(*) FROM accounts")[1] == [(10,)]


def test_the_same_text_over_a_version_with_other_types_is_bound_again(gateway, bindings, store_root):
    """The binder's answer is remembered per text and dataset version: a new version whose column
    changed type gets its own columns, and a query that failed to bind fails again, with its position."""
    folder = store_root / "datasets" / "accounts" / "v3"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"customer": ["cust-200"], "bank": [7]}), folder / "part-0.parquet")
    v3 = dataclasses.replace(bindings["accounts"], version=3, files=(str(folder / "part-0.parquet"),))
    sql = "SELECT bank FROM accounts ORDER BY bank LIMIT 1"
    for binding, expected_type, expected in [
        (bindings["accounts"], "VARCHAR", '[["CMB"]]'),
        (v3, "BIGINT", "[[7]]"),
        (bindings["accounts"], "VARCHAR", '[["CMB"]]'),
    ]:
        document = json.loads(
            b"".join(formats.stream(gateway.run(sql, {"accounts": binding}, FUND.key, Limits()), "json"))
        )
        assert [column["type"] for column in document["columns"]] == [expected_type]
        assert json.dumps(document["rows"]) == expected
    for _ in range(2):
        with pytest.raises(QueryFailed) as failed:
            gateway.run("SELECT bank, no_such_column FROM accounts", bindings, FUND.key, Limits())
        assert failed.value.code == Code.QUERY_ERROR
        assert "no_such_column" in failed.value.message


def test_scratch_tables_of_an_aggregate_plan_do_not_outlive_their_query(gateway, bindings, run):
    assert run("SELECT category, count(*) AS n FROM cards GROUP BY category ORDER BY category")[1]
    for _ in range(gateway._sandbox.config.max_concurrent_queries):  # every pooled connection
        session = gateway._sandbox.acquire()
        try:
            left = session.cursor.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
        finally:
            gateway._sandbox.release(session)
        assert left == []


# -- bytes scanned ---------------------------------------------------------------------------------


def column_chunk_bytes(files, column: str) -> int:
    total = 0
    for path in files:
        metadata = pq.read_metadata(path)
        index = metadata.schema.names.index(column)
        total += sum(metadata.row_group(g).column(index).total_compressed_size for g in range(metadata.num_row_groups))
    return total


def test_bytes_scanned_are_the_compressed_column_chunks_read(gateway, bindings):
    people = bindings["people"]
    with gateway.run("SELECT sum(balance) FROM people", bindings, FUND.key, Limits()) as result:
        list(result.record_batches())
    assert result.bytes_scanned == column_chunk_bytes(people.files, "balance")
    with gateway.run("SELECT city, sum(balance) FROM people GROUP BY city", bindings, FUND.key, Limits()) as both:
        list(both.record_batches())
    assert both.bytes_scanned == column_chunk_bytes(people.files, "balance") + column_chunk_bytes(people.files, "city")
    with gateway.run("SELECT 1 AS one", bindings, FUND.key, Limits()) as nothing:
        list(nothing.record_batches())
    assert nothing.bytes_scanned == 0


# -- errors never show the server's paths or settings -----------------------------------------


def test_a_missing_dataset_file_is_reported_without_its_path(gateway, bindings, store_root, run):
    gone = dataclasses.replace(
        bindings["accounts"], version=9, files=(str(store_root / "datasets" / "accounts" / "v9" / "gone.parquet"),)
    )
    with pytest.raises(QueryFailed) as failed:
        gateway.run("SELECT * FROM accounts", {"accounts": gone}, FUND.key, Limits())
    assert failed.value.code == Code.DATASET_UNAVAILABLE
    assert str(store_root) not in str(failed.value) and "gone.parquet" not in str(failed.value)
    for _ in range(3):  # every pooled connection still serves the good version
        assert run("SELECT count(*) FROM accounts")[1] == [(10,)]


def test_a_binding_outside_the_store_is_refused(gateway, bindings):
    outside = dataclasses.replace(bindings["accounts"], files=("/etc/passwd",))
    with pytest.raises(QueryFailed) as failed:
        gateway.run("SELECT * FROM accounts", {"accounts": outside}, FUND.key, Limits())
    assert failed.value.code == Code.DATASET_UNAVAILABLE and "/etc" not in failed.value.message


def test_runtime_errors_are_useful_and_show_no_server_detail(gateway, bindings, store_root):
    messages = []
    for sql in (
        "SELECT no_such_column FROM people",
        "SELECT CAST(city AS INTEGER) FROM people",
        "SELECT * FROM people WHERE balance > 'lots'",
    ):
        with pytest.raises(QueryFailed) as failed:
            list(gateway.run(sql, bindings, FUND.key, Limits()).record_batches())
        assert failed.value.code == Code.QUERY_ERROR
        messages.append(failed.value.message)
    assert 'column "no_such_column" not found' in messages[0]
    assert "Could not convert string 'Hangzhou' to INT32" in messages[1]
    assert "'lots'" in messages[2]
    temp_directory = gateway._sandbox.temp_directory
    for message in messages:
        assert str(store_root) not in message and temp_directory not in message and "Did you mean" not in message


def test_sanitize_message_removes_paths_urls_settings_and_hints():
    raw = (
        'IO Error: No files found that match the pattern "/srv/vitamin/store/datasets/x/v1/part-0.parquet"\n'
        "LINE 1: SELECT * FROM x\n"
    )
    assert sanitize_message(raw) == 'No files found that match the pattern "<path>"'
    oom = (
        "Out of Memory Error: failed to offload data block (19.0 MiB/19.0 MiB used).\n"
        "This limit was set by the 'max_temp_directory_size' setting.\n"
        "You can adjust this setting, by using (for example) PRAGMA max_temp_directory_size='10GiB'"
    )
    assert sanitize_message(oom, setting_names=("max_temp_directory_size",)) == (
        "failed to offload data block (19.0 MiB/19.0 MiB used)."
    )
    hint = 'Catalog Error: Table with name nope does not exist!\nDid you mean "pg_class"?'
    assert sanitize_message(hint) == "Table with name nope does not exist!"
    assert "<path>" in sanitize_message("HTTP Error: could not fetch https://internal.example/x?token=1")
    assert (
        sanitize_message("Error in /tmp/duckdb-x/spill.tmp", secrets=("/tmp/duckdb-x",)) == "Error in <path>/spill.tmp"
    )
    assert sanitize_message("Binder Error: temp_directory is wrong", setting_names=("temp_directory",)) == (
        "<setting> is wrong"
    )
    assert sanitize_message('Parser Error: Depth exceeded. Use "SET max_expression_depth TO x" to raise it.') == (
        "Depth exceeded."
    )
    assert sanitize_message("Conversion Error: Could not convert string 'a/b' to INT32") == (
        "Could not convert string 'a/b' to INT32"
    )


def test_unexpected_errors_become_internal_errors_without_detail(gateway, store_root):
    failure = gateway._sandbox.translate_error(RuntimeError(f"boom in {store_root}/secret"), timed_out=False)
    assert failure.code == Code.INTERNAL_ERROR and "boom" not in failure.message
    fatal = gateway._sandbox.translate_error(duckdb.FatalException("FATAL Error: invalidated"), timed_out=False)
    assert fatal.code == Code.INTERNAL_ERROR


def test_an_interrupt_that_crossed_the_arrow_stream_is_a_time_limit_or_a_cancel_not_an_engine_failure(gateway):
    translate = gateway._sandbox.translate_error
    assert translate(RuntimeError("Query interrupted"), timed_out=True).code == Code.TIME_LIMIT_EXCEEDED
    assert translate(RuntimeError("Query interrupted"), timed_out=False).code == Code.QUERY_CANCELLED


def test_the_temp_directory_is_private_and_removed_on_close(store_root, tmp_path, bindings):
    gateway = Gateway(SandboxConfig(store_root=str(store_root), temp_directory=str(tmp_path), max_concurrent_queries=1))
    private = gateway._sandbox.temp_directory
    assert Path(private).parent == tmp_path and os.path.isdir(private)
    with gateway.run("SELECT count(*) FROM numbers", bindings, FUND.key, Limits()) as result:
        assert [b.column(0).to_pylist() for b in result.record_batches()] == [[30_000]]
    gateway.close()
    assert not os.path.exists(private)


def test_json_ends_with_the_error_when_a_query_fails_mid_stream(gateway, bindings):
    result = gateway.run(
        "SELECT a.n, b.n FROM numbers a, numbers b",
        bindings,
        FUND.key,
        Limits(max_query_seconds=1, max_result_rows=10**9),
    )
    chunks = formats.stream(result, "json")
    next(chunks)
    time.sleep(1.2)
    body = b"".join(chunks)
    assert body.endswith(
        b'"error":{"code":"time_limit_exceeded","message":"The query ran longer than your plan\'s time limit."}}\n'
    )
    assert result.error is not None and result.error.code == Code.TIME_LIMIT_EXCEEDED


def test_concurrent_partners_each_get_their_own_values(gateway, bindings):
    """More threads than connections, alternating partners: every answer is right for its partner."""
    from query_support import BANK

    from datasets.query.rekey import rekey

    expected = {partner.name: rekey(partner.key, "cust-7") for partner in (FUND, BANK)}
    answers: list[tuple[str, list]] = []

    def ask(partner) -> None:
        for _ in range(5):
            with gateway.run("SELECT customer FROM people WHERE balance = 700", bindings, partner.key, Limits()) as r:
                answers.append((partner.name, [b.column(0).to_pylist() for b in r.record_batches()]))

    threads = [threading.Thread(target=ask, args=(partner,)) for partner in (FUND, BANK, FUND, BANK)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 20
    for name, answer in answers:
        assert answer == [[expected[name]]], (name, answer)
