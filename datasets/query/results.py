"""A running query: its columns, its rows as a stream of batches, and what it cost.

The row cap is part of the query itself (`LIMIT max_result_rows + 1`, so DuckDB can
stop early and use a top-N sort), and the extra row only tells that the result
was truncated; a query whose own `LIMIT n` is within the cap runs as it is. The time limit is a watchdog that interrupts the connection: it
covers execution and streaming alike, so a client that reads slowly cannot
hold a connection past its plan's limit.

Reading starts execution and computes the first batch before anything is
returned, so most failures (a time limit hit while aggregating, a memory
limit, a bad column) surface as an exception from `record_batches()` /
`json_rows()` / `formats.stream()` rather than in the middle of a response.
A result can be read once; reading it to the end, closing it, or dropping it
gives its connection back to the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from duckdb import _seam

from datasets.query.errors import QueryFailed
from datasets.query.limits import Limits
from datasets.query.sandbox import Session
from datasets.query.watchdog import Deadline
from datasets.sql import quote_identifier, sql_literal

BATCH_ROWS = 64 * 1024
_NESTED_TYPES = frozenset({"list", "array", "struct", "map", "union"})


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB's type name, e.g. VARCHAR, DOUBLE, DECIMAL(18,2), DATE, VARCHAR[]


@dataclass(frozen=True)
class BoundStatement:
    """A checked query as DuckDB bound it: its text (as the relation API renders it) and its output columns."""

    text: str
    names: tuple[str, ...]
    types: tuple[Any, ...]  # DuckDBPyType

    @classmethod
    def of(cls, relation: duckdb.DuckDBPyRelation) -> BoundStatement:
        return cls(relation.sql_query(), tuple(relation.columns), tuple(relation.types))


class QueryResult:
    """The result of `Gateway.run`: read it once with `record_batches()` or `json_rows()` (or `formats.stream`)."""

    def __init__(
        self,
        *,
        session: Session,
        statement: BoundStatement,
        own_row_limit: int | None,
        limits: Limits,
        deadline: Deadline,
        release: Callable[[Session], None],
        translate_error: Callable[..., QueryFailed],
        unfinished_bytes: int,
    ):
        self.columns = [Column(name, str(type_)) for name, type_ in zip(statement.names, statement.types, strict=True)]
        self._types = list(statement.types)
        self._text = statement.text
        # A query whose own LIMIT is within the cap cannot be truncated, and needs no second LIMIT on top.
        capped = own_row_limit is not None and own_row_limit <= limits.max_result_rows
        self._limit = None if capped else limits.max_result_rows + 1
        self._max_rows = limits.max_result_rows
        self._session = session
        self._deadline = deadline
        self._release = release
        self._translate_error = translate_error
        self._unfinished_bytes = unfinished_bytes
        self._reader: pa.RecordBatchReader | None = None
        self.schema: pa.Schema | None = None  # the Arrow schema of the batches, once reading has started
        self._started = False
        self._closed = False
        self.rows = 0
        self.truncated = False
        self.bytes_scanned: int | None = None  # known once the result is closed
        self.error: QueryFailed | None = None  # set by the format writers when the query failed mid-stream
        self._cancelled = False

    # -- reading ----------------------------------------------------------------------------------

    def record_batches(self, *, nested_as_text: bool = False) -> Iterator[pa.RecordBatch]:
        """The rows as Arrow record batches (at most `max_result_rows` rows in all).

        `nested_as_text` renders lists, structs and maps as DuckDB's text form, for formats
        without nested types (CSV).
        """
        if nested_as_text and any(type_.id in _NESTED_TYPES for type_ in self._types):
            return self._open(
                ", ".join(
                    f"CAST(#{i + 1} AS VARCHAR)" if type_.id in _NESTED_TYPES else f"#{i + 1}"
                    for i, type_ in enumerate(self._types)
                )
            )
        return self._open(None)

    def json_rows(self, prefix: str = "") -> Iterator[pa.Array]:
        """The rows as JSON arrays, `prefix` + `[v1, v2, ...]` per row, rendered by DuckDB in batches.

        Values are DuckDB's JSON forms (numbers, strings, ISO dates and timestamps, nested
        arrays and objects); NaN and infinities become null, since JSON cannot carry them.
        """
        expressions = ", ".join(_json_safe(f"#{i + 1}", type_, 0) for i, type_ in enumerate(self._types))
        row = f"json_array({expressions})::VARCHAR"
        return (batch.column(0) for batch in self._open(f"{sql_literal(prefix)} || {row}" if prefix else row))

    def _statement(self, select: str | None) -> str:
        """The query as it runs: `select` (a select list over its columns by position, None for all of them)
        and the row cap's LIMIT, composed as one statement around the query's text, so DuckDB binds it once
        (deriving a relation per step, `.limit().project()`, binds once per step: ~0.3 ms each)."""
        text = self._text
        if select is not None or self._limit is not None:
            text = f"SELECT {select or '*'} FROM (\n{text}\n) AS vitamin_result"
        if self._limit is not None:
            text += f" LIMIT {self._limit}"
        return text

    def _open(self, select: str | None) -> Iterator[pa.RecordBatch]:
        if self._started or self._closed:
            raise RuntimeError("a query result can be read only once")
        self._started = True
        try:
            if self._cancelled:  # before DuckDB started: an interrupt now would be ignored
                raise duckdb.InterruptException("cancelled before it started")
            self._reader = stream_batches(self._session.cursor, self._statement(select))
            self.schema = self._reader.schema
            first = _next_batch(self._reader)
        except Exception as exc:  # noqa: BLE001 - DuckDB and Arrow raise many types; all become QueryFailed
            error = self._translate_error(exc, timed_out=self._deadline.fired)
            self._finish(completed=False)
            raise error from None
        return self._iterate(first)

    def _iterate(self, first: pa.RecordBatch | None) -> Iterator[pa.RecordBatch]:
        completed = False
        try:
            batch = first
            while batch is not None:
                room = self._max_rows - self.rows
                if batch.num_rows > room:
                    self.truncated = True
                    batch = batch.slice(0, room)
                if batch.num_rows:
                    self.rows += batch.num_rows
                    yield batch
                batch = _next_batch(self._reader)  # after a truncation: at most the one extra row, then the end
            completed = True
        except GeneratorExit:
            raise
        except Exception as exc:  # noqa: BLE001 - see _open
            raise self._translate_error(exc, timed_out=self._deadline.fired) from None
        finally:
            self._finish(completed=completed)

    # -- cleaning up ------------------------------------------------------------------------------

    def _finish(self, *, completed: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._deadline.cancel()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        # A query that did not run to its end is charged as if it had read every file it could have.
        scanned = self._session.bytes_scanned() if completed else None
        self.bytes_scanned = scanned if scanned is not None else self._unfinished_bytes
        self._release(self._session)

    def close(self) -> None:
        """Stop the query (if still running) and give the connection back."""
        self._finish(completed=False)

    def restart_clock(self) -> None:
        """Count the plan's whole time limit from now: for a query started (prepared) before it was charged,
        whose time limit is the partner's from when it is told to run (a query worker's `go`)."""
        if self._started or self._closed:
            raise RuntimeError("the clock restarts only before the result is read")
        self._deadline.restart()

    def cancel(self) -> None:
        """Stop the query from another thread, even while it computes a batch; the reader gets `query_cancelled`.

        DuckDB ignores an interrupt when nothing is running: a query not started yet is stopped
        when reading starts, and a caller racing the start should call again (jobs do, each second).
        """
        self._cancelled = True
        self._deadline.interrupt()

    def __enter__(self) -> QueryResult:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


def stream_batches(cursor: duckdb.DuckDBPyConnection, text: str) -> pa.RecordBatchReader:
    """The rows of one SELECT as a reader of batches of about `BATCH_ROWS`, streamed as DuckDB computes them.

    `cursor.sql(text).to_arrow_reader()` does the same after binding the statement into a relation first,
    which the execution then does again: 1 ms of a 5 ms query (docs/query-internals.md). The gateway binds
    a query's text once, when it first sees it (`Gateway._bind`), so the rows are asked for directly, with
    the call the relation makes itself (`duckdb._seam.submit`: internal to DuckDB's Python package, which
    requirements.txt pins; every test of tests/query/test_query_sandbox.py reads its rows through it).
    """
    return _seam.submit(cursor, text, None, "stream", BATCH_ROWS).arrow_reader()


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def _json_safe(expression: str, type_: Any, depth: int) -> str:
    """SQL turning NaN and infinities (which JSON cannot carry) into null, inside lists and structs too."""
    kind = type_.id
    if kind in ("double", "float"):
        return f"CASE WHEN isfinite({expression}) THEN {expression} END"
    if not _has_float(type_):
        return expression
    if kind in ("list", "array"):
        variable = f"v{depth}"
        return (
            f"list_transform({expression}, lambda {variable}: {_json_safe(variable, type_.children[0][1], depth + 1)})"
        )
    if kind == "struct":
        fields = ", ".join(
            f"{quote_identifier(name)} := "
            + _json_safe(f"struct_extract({expression}, {sql_literal(name)})", child, depth + 1)
            for name, child in type_.children
        )
        return f"struct_pack({fields})"
    return f"CAST({expression} AS VARCHAR)"  # maps and unions holding floats: as text, rare enough


def _has_float(type_: Any) -> bool:
    if type_.id in ("double", "float"):
        return True
    if type_.id in ("list", "array", "struct", "map", "union"):
        # An ARRAY's children also hold its size (an int), not only its element type.
        return any(_has_float(child) for _, child in type_.children if hasattr(child, "id"))
    return False
