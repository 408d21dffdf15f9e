"""The statement check: every rejection code, each with a real escape attempt, and what stays allowed."""

from __future__ import annotations

import copy

import duckdb
import pytest
from query_support import FUND

from datasets.query.checker import inspect
from datasets.query.errors import Code, QueryRejected
from datasets.query.functions import ALLOWED_FUNCTIONS, OPERATORS
from datasets.query.limits import Limits
from datasets.query.parser import SqlParser

C = Code
ESCAPES = [
    # Statement kinds: exactly one read-only SELECT.
    ("", C.EMPTY_QUERY),
    ("-- nothing but a comment", C.EMPTY_QUERY),
    ("SELECT 1; SELECT 2", C.MULTIPLE_STATEMENTS),
    ("SELECT * FROM people; DROP VIEW people", C.MULTIPLE_STATEMENTS),
    ("SELECT FROM WHERE", C.SYNTAX_ERROR),
    ("INSERT INTO people VALUES ('x', 'y', 'z', 1)", C.WRITE_NOT_ALLOWED),
    ("UPDATE people SET city = 'x'", C.WRITE_NOT_ALLOWED),
    ("DELETE FROM people", C.WRITE_NOT_ALLOWED),
    ("TRUNCATE people", C.WRITE_NOT_ALLOWED),
    ("CREATE TABLE stolen AS SELECT * FROM people", C.WRITE_NOT_ALLOWED),
    ("CREATE OR REPLACE TEMP VIEW people AS SELECT 1 AS customer", C.WRITE_NOT_ALLOWED),
    ("CREATE MACRO leak() AS current_setting('temp_directory')", C.WRITE_NOT_ALLOWED),
    ("CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')", C.WRITE_NOT_ALLOWED),
    ("DROP VIEW people", C.WRITE_NOT_ALLOWED),
    ("ALTER VIEW people RENAME TO p2", C.WRITE_NOT_ALLOWED),
    ("ATTACH ':memory:' AS x", C.ATTACH_NOT_ALLOWED),
    ("ATTACH '/tmp/evil.duckdb' AS evil", C.ATTACH_NOT_ALLOWED),
    ("DETACH memory", C.ATTACH_NOT_ALLOWED),
    ("COPY (SELECT * FROM people) TO '/tmp/people.csv'", C.COPY_NOT_ALLOWED),
    ("COPY people FROM '/etc/passwd'", C.COPY_NOT_ALLOWED),
    ("EXPORT DATABASE '/tmp/dump'", C.EXPORT_NOT_ALLOWED),
    ("IMPORT DATABASE '/tmp/dump'", C.EXPORT_NOT_ALLOWED),
    ("SET memory_limit = '100GB'", C.SETTINGS_NOT_ALLOWED),
    ("SET enable_external_access = true", C.SETTINGS_NOT_ALLOWED),
    ("RESET memory_limit", C.SETTINGS_NOT_ALLOWED),
    ("SET VARIABLE secret = 1", C.SETTINGS_NOT_ALLOWED),
    ("PRAGMA database_list", C.SETTINGS_NOT_ALLOWED),
    ("USE memory", C.SETTINGS_NOT_ALLOWED),
    ("INSTALL httpfs", C.EXTENSION_NOT_ALLOWED),
    ("LOAD httpfs", C.EXTENSION_NOT_ALLOWED),
    ("CALL duckdb_settings()", C.CALL_NOT_ALLOWED),
    ("CHECKPOINT", C.CALL_NOT_ALLOWED),
    ("BEGIN TRANSACTION", C.STATEMENT_NOT_ALLOWED),
    ("EXPLAIN SELECT * FROM people", C.STATEMENT_NOT_ALLOWED),
    ("PREPARE p AS SELECT 1", C.STATEMENT_NOT_ALLOWED),
    ("UPDATE EXTENSIONS", C.STATEMENT_NOT_ALLOWED),
    # Table functions and files, in any position.
    ("SELECT * FROM read_parquet('/etc/passwd')", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM read_csv('/etc/passwd', sep = ':')", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM read_text('/etc/hostname')", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM glob('/*')", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM range(1000000000)", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM query('SELECT 1')", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM query_table('people')", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM duckdb_settings()", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM duckdb_tables()", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM pragma_table_info('people')", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT (SELECT count(*) FROM read_csv('/etc/passwd')) AS lines", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM people WHERE city IN (SELECT column0 FROM read_csv('/etc/passwd'))", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM people, LATERAL (SELECT * FROM read_text('/etc/hostname'))", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("WITH files AS (SELECT * FROM glob('/*')) SELECT * FROM files", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM people ORDER BY (SELECT max(file) FROM glob('/*'))", C.TABLE_FUNCTION_NOT_ALLOWED),
    ("SELECT * FROM '/etc/passwd'", C.FILE_ACCESS_NOT_ALLOWED),
    ("SELECT * FROM 'people.parquet'", C.FILE_ACCESS_NOT_ALLOWED),
    ("SELECT * FROM 'http://example.com/data.csv'", C.FILE_ACCESS_NOT_ALLOWED),
    ("SELECT * FROM 's3://bucket/data.parquet'", C.FILE_ACCESS_NOT_ALLOWED),
    ('SELECT * FROM "../datasets/people/v1/part-0.parquet"', C.FILE_ACCESS_NOT_ALLOWED),
    ("SELECT (SELECT count(*) FROM '/etc/passwd') AS lines", C.FILE_ACCESS_NOT_ALLOWED),
    # Functions that reveal the server, read files or change state.
    ("SELECT query('SELECT 1')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT getenv('HOME')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT current_setting('temp_directory')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT city FROM people WHERE city <> current_setting('memory_limit')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT pg_catalog.current_setting('threads')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT current_database()", C.FUNCTION_NOT_ALLOWED),
    ("SELECT current_schemas(true)", C.FUNCTION_NOT_ALLOWED),
    ("SELECT current_query()", C.FUNCTION_NOT_ALLOWED),
    ("SELECT getvariable('x')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT version()", C.FUNCTION_NOT_ALLOWED),
    ("SELECT glob('/*')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT sleep_ms(1000000)", C.FUNCTION_NOT_ALLOWED),
    ("SELECT nextval('seq')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT which_secret('s3://bucket/x', 's3')", C.FUNCTION_NOT_ALLOWED),
    ("SELECT json_serialize_plan('SELECT 1')", C.FUNCTION_NOT_ALLOWED),
    # DuckDB's catalog.
    ("SELECT * FROM information_schema.tables", C.CATALOG_NOT_ALLOWED),
    ("SELECT * FROM pg_catalog.pg_settings", C.CATALOG_NOT_ALLOWED),
    ("SELECT * FROM pg_settings", C.CATALOG_NOT_ALLOWED),
    ("SELECT * FROM sqlite_master", C.CATALOG_NOT_ALLOWED),
    ("SELECT * FROM duckdb_tables", C.CATALOG_NOT_ALLOWED),
    ("SELECT * FROM system.main.duckdb_settings", C.CATALOG_NOT_ALLOWED),
    ("DESCRIBE people", C.CATALOG_NOT_ALLOWED),
    ("SHOW TABLES", C.CATALOG_NOT_ALLOWED),
    ("SUMMARIZE people", C.CATALOG_NOT_ALLOWED),
    # Grants: bare names of granted datasets only, and no CTE masking one.
    ("SELECT * FROM secrets", C.TABLE_NOT_GRANTED),
    ("SELECT * FROM people JOIN salaries USING (customer)", C.TABLE_NOT_GRANTED),
    ("SELECT * FROM main.people", C.QUALIFIED_NAME_NOT_ALLOWED),
    ("SELECT * FROM temp.main.people", C.QUALIFIED_NAME_NOT_ALLOWED),
    ("SELECT * FROM memory.people", C.QUALIFIED_NAME_NOT_ALLOWED),
    ("WITH people AS (SELECT * FROM salaries) SELECT * FROM people", C.CTE_NAME_CONFLICT),
    ("WITH cards AS (SELECT 1 AS province) SELECT * FROM cards", C.CTE_NAME_CONFLICT),
    ("WITH sqlite_master AS (SELECT 1) SELECT * FROM sqlite_master", C.CTE_NAME_CONFLICT),
    # A later CTE is not visible to an earlier one: DuckDB reads the name from the catalog.
    ("WITH a AS (SELECT * FROM salaries), salaries AS (SELECT 1) SELECT * FROM a", C.TABLE_NOT_GRANTED),
    # A CTE defined inside a subquery is not visible outside it.
    ("SELECT * FROM (WITH hidden AS (SELECT 1) SELECT * FROM hidden) s, hidden", C.TABLE_NOT_GRANTED),
    # The anchor of a recursive CTE does not see the CTE itself either.
    ("WITH RECURSIVE r AS (SELECT * FROM r UNION ALL SELECT * FROM r) SELECT * FROM r", C.TABLE_NOT_GRANTED),
    # Syntax the gateway does not handle.
    ("SELECT $1", C.PARAMETER_NOT_ALLOWED),
    ("SELECT * FROM people WHERE city = ?", C.PARAMETER_NOT_ALLOWED),
    ("SELECT * FROM people AT (VERSION => 1)", C.UNSUPPORTED_SYNTAX),
    ("SELECT * FROM people UNPIVOT (v FOR k IN (city, phone))", C.UNSUPPORTED_SYNTAX),
    ("SELECT CAST(1 AS main.some_type)", C.QUALIFIED_NAME_NOT_ALLOWED),
]

ALLOWED = [
    "SELECT * FROM people",
    "select CITY, count(*) from PEOPLE group by all order by 2 desc",
    "SELECT count(*) FROM 'people'",
    "FROM people SELECT city",
    "WITH rich AS (SELECT * FROM people WHERE balance > 500), top AS (SELECT * FROM rich) SELECT * FROM top",
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10) SELECT sum(i) FROM r",
    "SELECT city, sum(balance) OVER (PARTITION BY city ORDER BY balance) FROM people",
    "SELECT * FROM people p JOIN accounts a USING (customer) WHERE a.bank IN (SELECT 'ICBC')",
    "SELECT (SELECT max(n) FROM numbers) AS biggest, upper(city) FROM people QUALIFY row_number() OVER () < 3",
    "SELECT city FROM people UNION ALL SELECT bank FROM accounts",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(i, s)",
    "SELECT list_transform([1, 2, 3], lambda x: x * 2), {'a': 1}, date_trunc('month', DATE '2024-03-05')",
    "SELECT city, regexp_matches(city, '^H') FROM people USING SAMPLE 50%",
    "SELECT * FROM people -- a trailing comment",
]


@pytest.mark.parametrize(("sql", "code"), ESCAPES, ids=[sql or "<empty>" for sql, _ in ESCAPES])
def test_escape_attempt_is_refused_with_its_code(gateway, bindings, sql, code):
    with pytest.raises(QueryRejected) as refused:
        gateway.check(sql, bindings)
    assert refused.value.code == code, refused.value.message
    assert "/tmp" not in refused.value.message and "/etc" not in refused.value.message


@pytest.mark.parametrize("sql", ALLOWED)
def test_ordinary_queries_pass_the_check_and_run(gateway, bindings, run, sql):
    checked = gateway.check(sql, bindings)
    assert checked.sql == sql  # open datasets: the partner's own text runs, unchanged
    columns, _ = run(sql)
    assert columns


def test_run_refuses_before_taking_a_connection(gateway, bindings, run):
    for _ in range(5):  # more than the pool holds: a refusal must not keep a connection
        with pytest.raises(QueryRejected):
            gateway.run("SELECT * FROM read_text('/etc/hostname')", bindings, FUND.key, Limits())
    assert run("SELECT 42 AS answer")[1] == [(42,)]


def test_a_lookup_dataset_is_not_queryable_by_sql(gateway, bindings):
    lookup = copy.copy(bindings["accounts"])
    object.__setattr__(lookup, "tier", "lookup")
    with pytest.raises(QueryRejected) as refused:
        gateway.check("SELECT * FROM accounts", {**bindings, "accounts": lookup})
    assert refused.value.code == Code.DATASET_NOT_QUERYABLE


def test_syntax_errors_point_at_the_mistake(gateway, bindings):
    sql = "SELECT city,\n  FROM people WHERE"
    with pytest.raises(QueryRejected) as refused:
        gateway.check(sql, bindings)
    assert refused.value.code == Code.SYNTAX_ERROR
    assert refused.value.position is not None and sql[refused.value.position - 1 :].startswith("WHERE")


def test_overlong_queries_are_refused_before_parsing(gateway, bindings):
    with pytest.raises(QueryRejected) as refused:
        gateway.check("SELECT 1 AS x" + " " * 100_000, bindings)
    assert refused.value.code == Code.QUERY_TOO_LONG


@pytest.mark.parametrize("depth", [600, 5000])
def test_deeply_nested_queries_are_refused_as_too_complex(gateway, bindings, depth):
    sql = "SELECT " + "+".join(["1"] * depth)
    with pytest.raises(QueryRejected) as refused:
        gateway.check(sql, bindings)
    assert refused.value.code == Code.QUERY_TOO_COMPLEX and "SET" not in refused.value.message


def test_refusals_point_at_the_offending_table(gateway, bindings):
    sql = "SELECT * FROM people, secrets"
    with pytest.raises(QueryRejected) as refused:
        gateway.check(sql, bindings)
    assert sql[refused.value.position - 1 :] == "secrets"


def test_referenced_datasets_are_the_bare_table_names_not_ctes(gateway):
    sql = "WITH x AS (SELECT * FROM People) SELECT * FROM x JOIN accounts USING (customer), 'a/b.csv'"
    assert gateway.referenced_datasets(sql) == {"people", "accounts"}


def test_unknown_syntax_tree_nodes_are_refused():
    """Fail closed: a node kind the checker does not know is refused, even where it might be harmless."""
    parser = SqlParser()
    statement = parser.parse("SELECT 1 AS one FROM people")
    unknown_expression = copy.deepcopy(statement)
    unknown_expression["node"]["select_list"][0]["class"] = "SOMETHING_NEW"
    unknown_table = copy.deepcopy(statement)
    unknown_table["node"]["from_table"]["type"] = "SOMETHING_NEW"
    for tree in (unknown_expression, unknown_table):
        with pytest.raises(QueryRejected) as refused:
            inspect(tree)
        assert refused.value.code == Code.UNSUPPORTED_SYNTAX
    assert {t.name for t in inspect(statement).tables} == {"people"}


def test_a_rewritten_tree_duckdb_cannot_print_is_refused():
    parser = SqlParser()
    statement = parser.parse("SELECT 1 AS one")
    statement["node"]["select_list"][0]["literal"]["kind"] = "NOT_A_KIND"
    with pytest.raises(QueryRejected) as refused:
        parser.render(statement)
    assert refused.value.code == Code.UNSUPPORTED_SYNTAX


def test_allowed_functions_exist_and_none_reveals_or_reads_anything():
    connection = duckdb.connect()
    known = {name.lower() for (name,) in connection.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    assert ALLOWED_FUNCTIONS - OPERATORS <= known
    prefixes = ("read_", "duckdb_", "pragma_", "sqlite_", "parquet_", "pg_", "has_", "current_", "json_execute")
    words = ("glob", "query", "getenv", "setting", "secret", "sleep", "serialize", "variable", "write_log")
    names = {"version", "nextval", "currval", "setval", "setseed", "txid_current", "stats", "error"}
    assert not [
        name
        for name in ALLOWED_FUNCTIONS - {"current_date", "current_localtime", "current_localtimestamp"}
        if name.startswith(prefixes) or any(word in name for word in words) or name in names
    ]
    table_only = {
        name.lower()
        for (name,) in connection.execute(
            "SELECT function_name FROM duckdb_functions() GROUP BY 1"
            " HAVING bool_and(function_type IN ('table', 'table_macro', 'pragma'))"
        ).fetchall()
    }
    assert not (ALLOWED_FUNCTIONS & table_only) - {"unnest"}
