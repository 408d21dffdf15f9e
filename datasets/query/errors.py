"""Errors of the SQL gateway: a stable code per reason, a message safe to show a partner.

`QueryRejected` means the gateway refused the SQL before running it (the partner
must change the query); `QueryFailed` means DuckDB started it and it did not
finish (limits, runtime errors). Both carry a `Code`, whose value is the stable
machine-readable string the API returns; docs/query.md lists every code (a test
checks that).

DuckDB's own messages are passed through `sanitize_message` before they reach a
partner: they can name files, directories and settings of the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum


class Code(StrEnum):
    # The statement itself
    SYNTAX_ERROR = "syntax_error"
    EMPTY_QUERY = "empty_query"
    QUERY_TOO_LONG = "query_too_long"
    QUERY_TOO_COMPLEX = "query_too_complex"
    MULTIPLE_STATEMENTS = "multiple_statements"
    WRITE_NOT_ALLOWED = "write_not_allowed"
    ATTACH_NOT_ALLOWED = "attach_not_allowed"
    COPY_NOT_ALLOWED = "copy_not_allowed"
    EXPORT_NOT_ALLOWED = "export_not_allowed"
    SETTINGS_NOT_ALLOWED = "settings_not_allowed"
    EXTENSION_NOT_ALLOWED = "extension_not_allowed"
    CALL_NOT_ALLOWED = "call_not_allowed"
    STATEMENT_NOT_ALLOWED = "statement_not_allowed"
    UNSUPPORTED_SYNTAX = "unsupported_syntax"
    PARAMETER_NOT_ALLOWED = "parameter_not_allowed"
    # What it reads and calls
    TABLE_NOT_GRANTED = "table_not_granted"
    QUALIFIED_NAME_NOT_ALLOWED = "qualified_name_not_allowed"
    CATALOG_NOT_ALLOWED = "catalog_not_allowed"
    FILE_ACCESS_NOT_ALLOWED = "file_access_not_allowed"
    TABLE_FUNCTION_NOT_ALLOWED = "table_function_not_allowed"
    FUNCTION_NOT_ALLOWED = "function_not_allowed"
    CTE_NAME_CONFLICT = "cte_name_conflict"
    NO_DATASET = "no_dataset"
    DATASET_NOT_QUERYABLE = "dataset_not_queryable"
    # Aggregate-tier analysis rules
    AGGREGATE_QUERY_REQUIRED = "aggregate_query_required"
    AGGREGATE_FUNCTION_NOT_ALLOWED = "aggregate_function_not_allowed"
    AGGREGATE_ARGUMENT_NOT_ALLOWED = "aggregate_argument_not_allowed"
    ENTITY_COLUMN_NOT_ALLOWED = "entity_column_not_allowed"
    COLUMN_NOT_A_DIMENSION = "column_not_a_dimension"
    COLUMN_NOT_GROUPED = "column_not_grouped"
    UNKNOWN_COLUMN = "unknown_column"
    COLUMN_ALIAS_NOT_ALLOWED = "column_alias_not_allowed"
    JOIN_NOT_ON_DECLARED_KEYS = "join_not_on_declared_keys"
    JOIN_KEY_TYPE_MISMATCH = "join_key_type_mismatch"
    SUBQUERY_NOT_ALLOWED = "subquery_not_allowed"
    WINDOW_FUNCTION_NOT_ALLOWED = "window_function_not_allowed"
    GROUPING_SETS_NOT_ALLOWED = "grouping_sets_not_allowed"
    SAMPLE_NOT_ALLOWED = "sample_not_allowed"
    # Execution
    TIME_LIMIT_EXCEEDED = "time_limit_exceeded"
    MEMORY_LIMIT_EXCEEDED = "memory_limit_exceeded"
    SERVER_BUSY = "server_busy"
    QUERY_CANCELLED = "query_cancelled"
    DATASET_UNAVAILABLE = "dataset_unavailable"
    QUERY_ERROR = "query_error"
    INTERNAL_ERROR = "internal_error"


class QueryError(Exception):
    """Base of the gateway's errors: `code`, a partner-safe `message`, and a 1-based `position` when known."""

    def __init__(self, code: Code, message: str, position: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position

    def __str__(self) -> str:
        where = f" (at character {self.position})" if self.position is not None else ""
        return f"{self.code}: {self.message}{where}"


class QueryRejected(QueryError):
    """The gateway refused the SQL before running it; the partner has to change the query."""


class QueryFailed(QueryError):
    """The query was accepted but did not complete: a limit was reached or DuckDB raised an error."""


MAX_MESSAGE_CHARS = 500
# Sentences DuckDB appends that talk about its configuration rather than the query.
_HINT_LINE = re.compile(
    r"^\s*(Did you mean|Candidate functions|Possible solutions|\*|See also|Use \"?SET|This limit was set|By default, this"
    r"|You can adjust|LINE \d+:|\^)",
    re.IGNORECASE,
)
_PATH = re.compile(r"""(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s"']+|(?<![\w.>])(?:~|\.\.?)?/[\w.~-][^\s"',;)]*)""")


def sanitize_message(message: str, *, secrets: Iterable[str] = (), setting_names: Iterable[str] = ()) -> str:
    """DuckDB's message without file paths, URLs, setting names or configuration hints.

    Keeps what went wrong (e.g. 'Referenced column "x" not found'), drops what
    DuckDB adds after it (suggestions of other catalog names, 'SET ...' advice,
    candidate functions, the echoed SQL), replaces any `secrets` (the store root, the temp
    directory) and anything shaped like a path or URL with `<path>`, and any
    setting name with `<setting>` (pass only distinctive names, like
    `memory_limit`: replacing common words would garble messages).
    """
    kept = []
    for line in message.splitlines():
        if _HINT_LINE.match(line):
            break
        kept.append(line.strip())
    text = " ".join(line for line in kept if line)
    text = re.sub(r"\s*Use \"?SET\b.*$", "", text)  # advice about settings, mid-line
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "<path>")
    text = _PATH.sub("<path>", text)
    for name in setting_names:
        text = re.sub(rf"\b{re.escape(name)}\b", "<setting>", text)
    # DuckDB prefixes the error class ("Binder Error: "); the code already says what kind of error it is.
    text = re.sub(r"^[A-Za-z ]+ Error: ", "", text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text or "The query failed."
