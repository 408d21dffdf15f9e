"""Partner SQL → DuckDB's own syntax tree (JSON), and back, using DuckDB's parser.

The gateway never tokenizes SQL itself: the statement is classified with
DuckDB's `extract_statements` and serialized with `json_serialize_sql`, so the
tree the checker walks is the one DuckDB will execute. `json_serialize_sql`
only serializes SELECT statements; everything else is refused before that, with
a code that names what it was.

Parsing runs in a private in-memory DuckDB that can read nothing and whose
configuration is locked; partner text is only ever bound as a parameter there.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import duckdb

from datasets.query.errors import Code, QueryRejected

MAX_SQL_CHARS = 100_000

# DuckDB statement types (duckdb.StatementType names) → why they are refused.
_STATEMENT_CODES = {
    "INSERT": Code.WRITE_NOT_ALLOWED,
    "UPDATE": Code.WRITE_NOT_ALLOWED,
    "DELETE": Code.WRITE_NOT_ALLOWED,
    "CREATE": Code.WRITE_NOT_ALLOWED,
    "CREATE_FUNC": Code.WRITE_NOT_ALLOWED,
    "DROP": Code.WRITE_NOT_ALLOWED,
    "ALTER": Code.WRITE_NOT_ALLOWED,
    "MERGE_INTO": Code.WRITE_NOT_ALLOWED,
    "VACUUM": Code.WRITE_NOT_ALLOWED,
    "ANALYZE": Code.WRITE_NOT_ALLOWED,
    "ATTACH": Code.ATTACH_NOT_ALLOWED,
    "DETACH": Code.ATTACH_NOT_ALLOWED,
    "COPY": Code.COPY_NOT_ALLOWED,
    "COPY_DATABASE": Code.COPY_NOT_ALLOWED,
    "EXPORT": Code.EXPORT_NOT_ALLOWED,
    "SET": Code.SETTINGS_NOT_ALLOWED,
    "VARIABLE_SET": Code.SETTINGS_NOT_ALLOWED,
    "PRAGMA": Code.SETTINGS_NOT_ALLOWED,
    "LOAD": Code.EXTENSION_NOT_ALLOWED,
    "CALL": Code.CALL_NOT_ALLOWED,
}
_STATEMENT_WORDS = {
    Code.WRITE_NOT_ALLOWED: "Only SELECT queries are allowed; statements that create or change data are not.",
    Code.ATTACH_NOT_ALLOWED: "ATTACH and DETACH are not allowed.",
    Code.COPY_NOT_ALLOWED: "COPY is not allowed; choose a result format instead.",
    Code.EXPORT_NOT_ALLOWED: "EXPORT DATABASE and IMPORT DATABASE are not allowed.",
    Code.SETTINGS_NOT_ALLOWED: "SET, RESET, PRAGMA and USE are not allowed.",
    Code.EXTENSION_NOT_ALLOWED: "INSTALL and LOAD are not allowed.",
    Code.CALL_NOT_ALLOWED: "CALL and CHECKPOINT are not allowed.",
    Code.STATEMENT_NOT_ALLOWED: "Only SELECT queries are allowed.",
}
# IMPORT DATABASE is parsed as a PRAGMA; name it for what it is.
_IMPORT_DATABASE = re.compile(r"^\s*import\s+database\b", re.IGNORECASE)
_LOCATION_KEYS = frozenset({"query_location", "query_location_length"})


class SqlParser:
    """Parses one partner statement into DuckDB's JSON syntax tree, or refuses it with a precise code."""

    def __init__(self) -> None:
        self._db = duckdb.connect(
            ":memory:",
            config={
                "threads": 1,
                "memory_limit": "64MB",
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "python_enable_replacements": False,
            },
        )
        self._db.execute("SET enable_external_access = false")
        self._db.execute("SET lock_configuration = true")
        self._local = threading.local()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # A DuckDB connection is not safe to share between threads; each thread gets its own cursor.
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._db.cursor()
        return cursor

    def parse(self, sql: str) -> dict[str, Any]:
        """The syntax tree of the single SELECT statement in `sql` (`{"node": ..., "named_param_map": ...}`)."""
        if len(sql) > MAX_SQL_CHARS:
            raise QueryRejected(Code.QUERY_TOO_LONG, f"The query is longer than {MAX_SQL_CHARS} characters.")
        if "\x00" in sql:
            raise QueryRejected(Code.SYNTAX_ERROR, "The query contains a NUL character.")
        cursor = self._cursor()
        try:
            statements = cursor.extract_statements(sql)
        except duckdb.ParserException:
            raise self._syntax_error(sql) from None
        if not statements:
            raise QueryRejected(Code.EMPTY_QUERY, "The query is empty.")
        if len(statements) > 1:
            raise QueryRejected(Code.MULTIPLE_STATEMENTS, "Send exactly one statement per query.")
        kind = _statement_kind(statements[0])
        if kind != "SELECT":
            code = _STATEMENT_CODES.get(kind, Code.STATEMENT_NOT_ALLOWED)
            if _IMPORT_DATABASE.match(_strip_leading_comments(sql)):
                code = Code.EXPORT_NOT_ALLOWED
            raise QueryRejected(code, _STATEMENT_WORDS[code])
        result = self._serialize(sql)
        if result.get("error"):
            if result.get("error_type") == "parser":
                raise _syntax_error_from(result)
            # A SELECT DuckDB cannot serialize (e.g. PIVOT inside a subquery): the checker cannot see into it.
            raise QueryRejected(Code.UNSUPPORTED_SYNTAX, "This form of query is not supported by the gateway.")
        if len(result["statements"]) != 1:
            raise QueryRejected(Code.MULTIPLE_STATEMENTS, "Send exactly one statement per query.")
        return result["statements"][0]

    def render(self, statement: dict[str, Any]) -> str:
        """SQL text for a (rewritten) syntax tree, verified to parse back to exactly that tree."""
        document = json.dumps({"error": False, "statements": [statement]})
        try:
            sql = self._cursor().execute("SELECT json_deserialize_sql(?::JSON)", [document]).fetchall()[0][0]
        except duckdb.Error:
            raise QueryRejected(
                Code.UNSUPPORTED_SYNTAX, "This form of query is not supported by the gateway."
            ) from None
        reparsed = self._serialize(sql)
        if reparsed.get("error") or [strip_locations(s) for s in reparsed["statements"]] != [
            strip_locations(statement)
        ]:
            # What runs must be what was checked; a tree DuckDB cannot print faithfully is refused.
            raise QueryRejected(Code.UNSUPPORTED_SYNTAX, "This form of query is not supported by the gateway.")
        return sql

    def _serialize(self, sql: str) -> dict[str, Any]:
        text = self._cursor().execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
        try:
            return json.loads(text)
        except RecursionError:
            raise QueryRejected(Code.QUERY_TOO_COMPLEX, "The query is nested too deeply.") from None

    def _syntax_error(self, sql: str) -> QueryRejected:
        result = self._serialize(sql)
        if result.get("error"):
            return _syntax_error_from(result)
        return QueryRejected(Code.SYNTAX_ERROR, "The query could not be parsed.")


def _statement_kind(statement: Any) -> str:
    try:
        return statement.type.name
    except ValueError:
        return "UNKNOWN"  # a statement type the Python client has no name for (e.g. UPDATE EXTENSIONS)


def _syntax_error_from(result: dict[str, Any]) -> QueryRejected:
    position = result.get("position")
    message = result.get("error_message") or "The query could not be parsed."
    if "expression depth" in message:
        return QueryRejected(Code.QUERY_TOO_COMPLEX, "The query is nested too deeply.")
    return QueryRejected(
        Code.SYNTAX_ERROR, message[:1].upper() + message[1:], int(position) + 1 if position is not None else None
    )


def _strip_leading_comments(sql: str) -> str:
    previous = None
    while previous != sql:
        previous = sql
        sql = re.sub(r"^\s*(--[^\n]*\n|/\*.*?\*/)", "", sql, flags=re.DOTALL)
    return sql


def strip_locations(value: Any) -> Any:
    """The tree without source positions, for comparing two parses of different text."""
    if isinstance(value, dict):
        return {key: strip_locations(item) for key, item in value.items() if key not in _LOCATION_KEYS}
    if isinstance(value, list):
        return [strip_locations(item) for item in value]
    return value
