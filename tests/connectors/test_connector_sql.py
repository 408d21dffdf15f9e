"""The sql connector against a real SQLite file and a real PostgreSQL server (a throwaway database)."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import uuid
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pytest

from connectors import ConnectorError, OptionsError, get_connector


def read(options: dict, batch_rows: int) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    connector = get_connector("sql", options, batch_rows=batch_rows)
    return connector.schema(), list(connector.batches())


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER, city TEXT, amount REAL, day TEXT, note TEXT, raw BLOB)")
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            [
                (i, "深圳市" if i % 2 else "北京市", i * 1.5, f"2024-02-{1 + i % 28:02d}", None, b"\x00\x01")
                for i in range(2_500)
            ],
        )
    connection.close()
    return f"sqlite:///{path}"


def test_sqlite_streams_batches_with_inferred_and_declared_types(sqlite_url):
    options = {"url": sqlite_url, "query": "SELECT * FROM orders ORDER BY id", "columns": {"day": "date32"}}
    schema, batches = read(options, batch_rows=1_000)
    assert [batch.num_rows for batch in batches] == [1_000, 1_000, 500]
    assert all(batch.schema == schema for batch in batches)
    assert schema.types == [pa.int64(), pa.string(), pa.float64(), pa.date32(), pa.string(), pa.binary()]
    first = batches[0].to_pylist()[1]
    assert first == {
        "id": 1,
        "city": "深圳市",
        "amount": 1.5,
        "day": dt.date(2024, 2, 2),
        "note": None,
        "raw": b"\x00\x01",
    }


def test_sqlite_watermark_and_read_only(sqlite_url):
    connector = get_connector(
        "sql", {"url": sqlite_url, "query": "SELECT id, day FROM orders", "watermark_column": "day"}
    )
    assert connector.watermark() == "2024-02-28"
    with pytest.raises(OptionsError):
        get_connector("sql", {"url": sqlite_url, "query": "DELETE FROM orders"})
    with pytest.raises(OptionsError):
        get_connector("sql", {"url": sqlite_url, "query": "SELECT 1; DELETE FROM orders"})
    # A statement that passes the SELECT/WITH check but writes is refused by the read-only connection.
    with pytest.raises(ConnectorError, match="readonly"):
        read({"url": sqlite_url, "query": "WITH x AS (SELECT 1) INSERT INTO orders SELECT * FROM orders"}, 10)


def test_sqlite_errors(sqlite_url, tmp_path):
    with pytest.raises(ConnectorError, match="no such table") as error:
        read({"url": sqlite_url, "query": "SELECT * FROM nowhere"}, 10)
    assert not error.value.transient
    with pytest.raises(ConnectorError):
        read({"url": f"sqlite:///{tmp_path / 'absent.db'}", "query": "SELECT 1"}, 10)
    with pytest.raises(ConnectorError, match="mixes value types"):
        read({"url": sqlite_url, "query": "SELECT id FROM orders UNION ALL SELECT 'x'"}, 10_000)


def test_options_problems_are_all_reported():
    with pytest.raises(OptionsError) as error:
        get_connector("sql", {"url": "mysql://db/x", "query": "UPDATE t SET a = 1", "watermark_column": "a; drop"})
    assert {field for field, _ in error.value.problems} == {"url", "query", "watermark_column"}


def test_passwords_are_never_inline(monkeypatch):
    for options in (
        {"url": "postgresql://app:hunter2@db.example/prod", "query": "SELECT 1"},
        {"url": "postgresql://app@db.example/prod?password=hunter2", "query": "SELECT 1"},
        {"url": "postgresql://app@db.example/prod", "query": "SELECT 1", "password": "hunter2"},
    ):
        with pytest.raises(OptionsError) as error:
            get_connector("sql", options)
        assert "hunter2" not in str(error.value)
    with pytest.raises(OptionsError, match="VITAMIN_TEST_UNSET_PASSWORD"):
        get_connector(
            "sql", {"url": "postgresql://app@db/x", "query": "SELECT 1", "password_env": "VITAMIN_TEST_UNSET_PASSWORD"}
        )
    monkeypatch.setenv("VITAMIN_TEST_DB_PASSWORD", "hunter2")
    connector = get_connector(
        "sql", {"url": "postgresql://app@db/x", "query": "SELECT 1", "password_env": "VITAMIN_TEST_DB_PASSWORD"}
    )
    assert connector.secrets["password"] == "hunter2"
    assert "hunter2" not in repr(connector.options)


@pytest.fixture
def postgres_database(postgres_url):
    """A throwaway database with a table of 2,500 rows of many column types."""
    import psycopg

    admin_url = postgres_url.replace("postgres://", "postgresql://", 1)
    name = f"vitamin_connector_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    with psycopg.connect(url) as connection:
        connection.execute(
            """
            CREATE TABLE payments (
                id int8 PRIMARY KEY, small int2, code int4, amount numeric(12, 2), ratio float8, share float4,
                city text, tag varchar(8), paid boolean, day date, at timestamptz, local_at timestamp,
                ref uuid, extra jsonb, raw bytea, wide numeric, span interval
            )
            """
        )
        connection.execute("CREATE SEQUENCE payment_numbers")
        connection.execute(
            """
            INSERT INTO payments
            SELECT i, i % 100, i * 2, i * 1.25, i / 3.0, 0.5, CASE WHEN i % 2 = 0 THEN '深圳市' END, 'tag' || i % 7,
                   i % 2 = 0, date '2024-01-01' + i % 366, timestamptz '2024-01-01 00:00:00+08' + i * interval '1 hour',
                   timestamp '2024-01-01' + i * interval '1 minute', md5(i::text)::uuid, jsonb_build_object('i', i),
                   '\\x0102'::bytea, round(i / 7.0, 4), interval '1 day'
            FROM generate_series(1, 2500) AS i
            """
        )
    yield url
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


COLUMNS = "id, small, code, amount, ratio, share, city, tag, paid, day, at, local_at, ref, extra, raw, wide"


@pytest.mark.postgres
def test_postgres_types_come_from_the_result_description(postgres_database):
    schema, batches = read({"url": postgres_database, "query": f"SELECT {COLUMNS} FROM payments ORDER BY id"}, 1_000)
    assert [batch.num_rows for batch in batches] == [1_000, 1_000, 500]
    assert all(batch.schema == schema for batch in batches)
    assert dict(zip(schema.names, schema.types, strict=True)) == {
        "id": pa.int64(),
        "small": pa.int16(),
        "code": pa.int32(),
        "amount": pa.decimal128(12, 2),
        "ratio": pa.float64(),
        "share": pa.float32(),
        "city": pa.string(),
        "tag": pa.string(),
        "paid": pa.bool_(),
        "day": pa.date32(),
        "at": pa.timestamp("us", tz="UTC"),
        "local_at": pa.timestamp("us"),
        "ref": pa.string(),
        "extra": pa.string(),
        "raw": pa.binary(),
        "wide": pa.decimal128(38, 10),
    }
    row = batches[0].slice(1, 1).to_pylist()[0]
    assert row["id"] == 2 and row["amount"] == decimal.Decimal("2.50") and row["city"] == "深圳市"
    assert row["at"] == dt.datetime(2023, 12, 31, 18, 0, tzinfo=dt.UTC)  # 2024-01-01 02:00 in Shanghai
    assert row["extra"] == '{"i": 2}' and len(row["ref"]) == 36 and row["raw"] == b"\x01\x02"
    assert batches[0].column("city").null_count == 500


@pytest.mark.postgres
def test_postgres_reads_through_a_server_side_cursor(postgres_database):
    import psycopg

    connector = get_connector("sql", {"url": postgres_database, "query": "SELECT id FROM payments"}, batch_rows=100)
    batches = connector.batches()
    next(batches)  # the cursor is open now, with 2,400 rows still on the server
    with psycopg.connect(postgres_database) as observer:
        statement = observer.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'vitamin-connector'"
        ).fetchone()[0]
    assert "vitamin_extract" in statement and "FETCH" in statement.upper()
    assert sum(batch.num_rows for batch in batches) == 2_400


@pytest.mark.postgres
def test_postgres_watermark_declared_types_and_errors(postgres_database):
    options = {"url": postgres_database, "query": "SELECT id, at FROM payments", "watermark_column": "at"}
    assert get_connector("sql", options).watermark() == "2024-04-13T20:00:00+00:00"  # row 2500, in UTC
    schema, _ = read({**options, "columns": {"id": "int32"}}, 10_000)
    assert schema.field("id").type == pa.int32()
    with pytest.raises(ConnectorError, match="column 'third': a value does not fit decimal128"):
        read({"url": postgres_database, "query": "SELECT id / 3.0 AS third FROM payments"}, 10)
    with pytest.raises(ConnectorError, match="no Arrow mapping"):
        read({"url": postgres_database, "query": "SELECT span FROM payments"}, 10)
    with pytest.raises(ConnectorError, match="nowhere") as error:
        read({"url": postgres_database, "query": "SELECT * FROM nowhere"}, 10)
    assert not error.value.transient
    with pytest.raises(ConnectorError, match="read-only"):
        read({"url": postgres_database, "query": "SELECT nextval('payment_numbers')"}, 10)


def test_postgres_connection_failure_is_transient():
    with pytest.raises(ConnectorError) as error:
        read({"url": "postgresql://postgres@127.0.0.1:1/none", "query": "SELECT 1", "connect_timeout_seconds": 2}, 10)
    assert error.value.transient
