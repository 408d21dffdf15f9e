"""The `sql` connector: the rows of one SELECT from PostgreSQL (server-side cursor) or SQLite, in batches.

PostgreSQL column types come from the result's type OIDs, so the Arrow schema is
exact before the first row arrives. SQLite values carry their own types; the
schema is inferred from the first batch unless `columns` declares it.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from .base import Connector, ConnectorError, Option, read_declared_columns

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"
CURSOR_NAME = "vitamin_extract"

# PostgreSQL type OIDs (pg_type.oid, stable across versions) and their Arrow types.
POSTGRES_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    18: pa.string(),  # "char"
    19: pa.string(),  # name
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    26: pa.int64(),  # oid
    114: pa.string(),  # json, loaded as text
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),  # char(n)
    1043: pa.string(),  # varchar
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    2950: pa.string(),  # uuid, loaded as text
    3802: pa.string(),  # jsonb, loaded as text
}
NUMERIC_OID = 1700
UNCONSTRAINED_NUMERIC = pa.decimal128(38, 10)
TEXT_LOADED_TYPES = ("json", "jsonb", "uuid")
_SELECT = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


class SqlConnector(Connector):
    kind = "sql"
    declared_options = (
        Option("url", str, required=True, help="postgresql://user@host:5432/db or sqlite:///path/to/file.db"),
        Option("query", str, required=True, help="one SELECT (or WITH ... SELECT) statement"),
        Option("password", secret=True, help="as password_env or password_file; never in the URL"),
        Option("watermark_column", str, help="a column of the query whose maximum is the watermark"),
        Option("columns", dict, help="declared Arrow types for some or all columns (cast after reading)"),
        Option("connect_timeout_seconds", int, default=10, minimum=1),
    )

    def check_options(self, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        url = options["url"] or ""
        scheme = urlsplit(url).scheme
        if scheme in POSTGRES_SCHEMES:
            parts = urlsplit(url)
            if parts.password is not None or "password" in parse_qs(parts.query):
                problems.append(("url", "must not contain a password; use password_env or password_file"))
        elif url and not url.startswith(SQLITE_PREFIX):
            problems.append(("url", "must start with postgresql://, postgres:// or sqlite:///"))
        elif url and self.secrets.get("password"):
            problems.append(("password_env", "SQLite has no password"))
        query = (options["query"] or "").strip().rstrip(";")
        if options["query"] is not None and (not _SELECT.match(query) or ";" in query):
            problems.append(("query", "must be a single SELECT statement"))
        if options["watermark_column"] is not None and not re.fullmatch(r"\w+", options["watermark_column"]):
            problems.append(("watermark_column", "must be a plain column name"))
        self.declared_types = read_declared_columns(options["columns"], problems)

    @property
    def query(self) -> str:
        return self.options["query"].strip().rstrip(";")

    @property
    def is_postgres(self) -> bool:
        return urlsplit(self.options["url"]).scheme in POSTGRES_SCHEMES

    def schema(self) -> pa.Schema:
        if self.is_postgres:
            with self._postgres() as connection, connection.cursor() as cursor:
                cursor.execute(f"SELECT * FROM ({self.query}) AS source LIMIT 0")
                return self._declare(_postgres_schema(cursor.description))
        with closing(self._sqlite()) as connection:
            cursor = _sqlite_call(lambda: connection.execute(self.query))
            rows = _sqlite_call(lambda: cursor.fetchmany(self.batch_rows))
            return self._declare(_infer_schema(cursor.description, rows))

    def batches(self) -> Iterator[pa.RecordBatch]:
        return self._postgres_batches() if self.is_postgres else self._sqlite_batches()

    def watermark(self) -> str | None:
        column = self.options["watermark_column"]
        if column is None:
            return None
        statement = f'SELECT max("{column}") FROM ({self.query}) AS source'
        if self.is_postgres:
            with self._postgres() as connection, connection.cursor() as cursor:
                value = cursor.execute(statement).fetchone()[0]
        else:
            with closing(self._sqlite()) as connection:
                value = _sqlite_call(lambda: connection.execute(statement).fetchone()[0])
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else None if value is None else str(value)

    def _declare(self, schema: pa.Schema) -> pa.Schema:
        """The source schema with the declared `columns` types substituted."""
        declared = self.declared_types or {}
        unknown = set(declared) - set(schema.names)
        if unknown:
            raise ConnectorError(f"declared columns not in the query result: {', '.join(sorted(unknown))}")
        return pa.schema([pa.field(field.name, declared.get(field.name, field.type)) for field in schema])

    def _to_batch(self, rows: Sequence[tuple], source: pa.Schema, target: pa.Schema) -> pa.RecordBatch:
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in source]
        arrays = []
        for field, target_field, values in zip(source, target, columns, strict=True):
            try:
                arrays.append(pa.array(values, type=field.type).cast(target_field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
                raise ConnectorError(
                    f"column {field.name!r}: a value does not fit {target_field.type} ({exc}); "
                    "cast it in the query or declare its type in `columns`"
                ) from exc
        return pa.RecordBatch.from_arrays(arrays, schema=target)

    # PostgreSQL

    def _postgres(self):
        import psycopg
        from psycopg.types.string import TextLoader

        try:
            connection = psycopg.connect(
                self.options["url"],
                password=self.secrets.get("password"),
                connect_timeout=self.options["connect_timeout_seconds"],
                application_name="vitamin-connector",
            )
        except psycopg.OperationalError as exc:
            raise ConnectorError(f"cannot connect to PostgreSQL: {_first_line(exc)}", transient=True) from exc
        for type_name in TEXT_LOADED_TYPES:
            connection.adapters.register_loader(type_name, TextLoader)
        connection.read_only = True
        return _PostgresSession(connection)

    def _postgres_batches(self) -> Iterator[pa.RecordBatch]:
        with self._postgres() as connection, connection.cursor(name=CURSOR_NAME) as cursor:
            cursor.itersize = self.batch_rows
            cursor.execute(self.query)
            source = _postgres_schema(cursor.description)
            target = self._declare(source)
            while rows := cursor.fetchmany(self.batch_rows):
                yield self._to_batch(rows, source, target)

    # SQLite

    def _sqlite(self) -> sqlite3.Connection:
        path = self.options["url"][len(SQLITE_PREFIX) :]
        try:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=self.options["connect_timeout_seconds"])
        except sqlite3.Error as exc:
            raise ConnectorError(f"cannot open SQLite database {path}: {exc}") from exc

    def _sqlite_batches(self) -> Iterator[pa.RecordBatch]:
        with closing(self._sqlite()) as connection:
            cursor = _sqlite_call(lambda: connection.execute(self.query))
            rows = _sqlite_call(lambda: cursor.fetchmany(self.batch_rows))
            source = _infer_schema(cursor.description, rows)
            target = self._declare(source)
            while rows:
                yield self._to_batch(rows, source, target)
                rows = _sqlite_call(lambda: cursor.fetchmany(self.batch_rows))


class _PostgresSession:
    """A connection used as a context manager, with PostgreSQL errors turned into ConnectorError."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        return self.connection

    def __exit__(self, exc_type, exc, traceback):
        import psycopg

        self.connection.close()
        if isinstance(exc, psycopg.Error):
            transient = isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)
            raise ConnectorError(f"PostgreSQL: {_first_line(exc)}", transient=transient) from exc
        return False


def _postgres_schema(description) -> pa.Schema:
    fields = []
    for column in description:
        if column.type_code == NUMERIC_OID:
            precision, scale = column.precision, column.scale
            arrow_type = pa.decimal128(precision, scale) if precision else UNCONSTRAINED_NUMERIC
        elif column.type_code in POSTGRES_TYPES:
            arrow_type = POSTGRES_TYPES[column.type_code]
        else:
            raise ConnectorError(
                f"column {column.name!r} has a PostgreSQL type (oid {column.type_code}) with no Arrow mapping; "
                "cast it in the query, e.g. ::text"
            )
        fields.append(pa.field(column.name, arrow_type))
    return pa.schema(fields)


def _infer_schema(description, rows: Sequence[tuple]) -> pa.Schema:
    """Arrow types from SQLite values: the widest type seen in each column of the sample."""
    fields = []
    for index, column in enumerate(description):
        kinds = {type(row[index]) for row in rows if row[index] is not None}
        if kinds <= {int}:
            arrow_type = pa.int64() if kinds else pa.string()
        elif kinds <= {int, float}:
            arrow_type = pa.float64()
        elif kinds == {str}:
            arrow_type = pa.string()
        elif kinds == {bytes}:
            arrow_type = pa.binary()
        else:
            raise ConnectorError(
                f"column {column[0]!r} mixes value types {sorted(kind.__name__ for kind in kinds)}; CAST it in the query"
            )
        fields.append(pa.field(column[0], arrow_type))
    return pa.schema(fields)


def _sqlite_call(call):
    try:
        return call()
    except sqlite3.OperationalError as exc:
        transient = "locked" in str(exc) or "busy" in str(exc)
        raise ConnectorError(f"SQLite: {exc}", transient=transient) from exc
    except sqlite3.Error as exc:
        raise ConnectorError(f"SQLite: {exc}") from exc


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
