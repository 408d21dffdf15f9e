"""Result formats, streamed: each is a generator of byte chunks, one or a few per record batch.

| format  | media type                            | truncation flag                                     |
|---------|---------------------------------------|-----------------------------------------------------|
| json    | application/json                      | `"truncated"` after the rows                        |
| csv     | text/csv                              | not in the body (header row, then rows)             |
| arrow   | application/vnd.apache.arrow.stream   | a last, empty batch with metadata vitamin.truncated |
| parquet | application/vnd.apache.parquet        | footer key-value metadata vitamin.truncated         |

Nothing is built whole in memory: DuckDB produces batches of `BATCH_ROWS`
rows, each is written out and dropped. JSON rows are rendered by DuckDB itself
(`json_array`), several times faster than Python's json module; the writer
only concatenates them.

`stream()` starts the query and computes its first batch before returning, so
an error it raises can still become a proper error response. An error after
that ends a JSON document with an `"error"` member (still valid JSON); the
binary formats stop, incomplete, and the error is re-raised for the caller
to abort the response. Either way it is kept in `result.error`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from datasets.query.errors import QueryFailed
from datasets.query.results import QueryResult

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
TRUNCATED_KEY = "vitamin.truncated"
_ROW_SEPARATOR = ",\n"


@dataclass(frozen=True)
class Read:
    """How a format reads a result: JSON rows (`prefix` before each) or Arrow batches (nested values as text)."""

    kind: str  # "json" or "arrow"
    nested_as_text: bool = False
    prefix: str = ""


# What `stream` reads for each format: a query worker can be told with the query, and start at once.
READS = {
    "json": Read("json", prefix=_ROW_SEPARATOR),
    "csv": Read("arrow", nested_as_text=True),
    "arrow": Read("arrow"),
    "parquet": Read("arrow"),
}


def stream(result: QueryResult, format_name: str) -> Iterator[bytes]:
    """The result as `format_name` (a key of MEDIA_TYPES); raises QueryFailed if the query fails to start."""
    writers: dict[str, Callable[[QueryResult], Iterator[bytes]]] = {
        "json": _json,
        "csv": _csv,
        "arrow": _arrow,
        "parquet": _parquet,
    }
    if format_name not in writers:
        raise ValueError(f"unknown format {format_name!r}; choose one of {', '.join(MEDIA_TYPES)}")
    return writers[format_name](result)


class _Chunks(io.RawIOBase):
    """A write-only file that keeps what pyarrow writes until the generator hands it on."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _json(result: QueryResult) -> Iterator[bytes]:
    rows = result.json_rows(prefix=READS["json"].prefix)  # starts the query: errors raise here
    return _json_document(result, rows)


def _json_document(result: QueryResult, rows: Iterator[pa.Array]) -> Iterator[bytes]:
    columns = [{"name": column.name, "type": column.type} for column in result.columns]
    yield ('{"columns":' + json.dumps(columns, ensure_ascii=False, separators=(",", ":")) + ',"rows":[\n').encode()
    first = True
    try:
        for texts in rows:
            data = _string_bytes(texts)
            if first and data:
                data = data[len(_ROW_SEPARATOR) :]
                first = False
            yield data
    except QueryFailed as exc:
        result.error = exc
        error = {"code": str(exc.code), "message": exc.message}
        yield (
            '\n],"truncated":false,"error":' + json.dumps(error, ensure_ascii=False, separators=(",", ":")) + "}\n"
        ).encode()
        return
    yield ('\n],"truncated":' + ("true" if result.truncated else "false") + "}\n").encode()


def _string_bytes(texts: pa.Array) -> bytes:
    """The concatenated UTF-8 of a string array, straight from its data buffer (no Python string per row)."""
    if texts.null_count == 0 and (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        if len(texts) == 0:
            return b""
        offsets = texts.buffers()[1]
        width = 8 if pa.types.is_large_string(texts.type) else 4
        view = memoryview(offsets).cast("q" if width == 8 else "i")
        start, end = view[texts.offset], view[texts.offset + len(texts)]
        return memoryview(texts.buffers()[2])[start:end].tobytes()
    return "".join(texts.to_pylist()).encode()


def _csv(result: QueryResult) -> Iterator[bytes]:
    batches = result.record_batches(nested_as_text=READS["csv"].nested_as_text)
    # The partner's column names, as in JSON (the Arrow schema has duplicates renamed: a, a_1).
    schema = _renamed(result.schema, [column.name for column in result.columns])
    return _binary(result, batches, schema, pa_csv.CSVWriter, lambda writer, metadata: None)


def _arrow(result: QueryResult) -> Iterator[bytes]:
    encoded = getattr(result, "arrow_ipc_messages", None)  # a result from a query worker process
    if encoded is not None:
        return _forwarded_arrow(result, encoded())
    batches = result.record_batches()

    def finish(writer: ipc.RecordBatchStreamWriter, metadata: dict[str, str]) -> None:
        writer.write_batch(pa.RecordBatch.from_pylist([], schema=result.schema), custom_metadata=metadata)

    return _binary(result, batches, result.schema, ipc.new_stream, finish)


def _forwarded_arrow(result: QueryResult, messages: Iterator[bytes]) -> Iterator[bytes]:
    """An Arrow stream of messages encoded elsewhere, forwarded as they are, then the trailer that
    `_arrow` writes too: an empty batch carrying the truncation flag, and the end-of-stream marker."""
    try:
        yield from messages
    except QueryFailed as exc:
        result.error = exc
        raise
    sink = _Chunks()
    with ipc.new_stream(sink, result.schema) as writer:  # writes the schema's message first: skipped below
        empty = pa.RecordBatch.from_pylist([], schema=result.schema)
        writer.write_batch(empty, custom_metadata={TRUNCATED_KEY: "true" if result.truncated else "false"})
    written = sink.take()
    yield written[_IPC_PREFIX_BYTES + int.from_bytes(written[4:8], "little") :]


_IPC_PREFIX_BYTES = 8  # an IPC message starts with 0xFFFFFFFF and its metadata's length (int32, little-endian)


def _parquet(result: QueryResult) -> Iterator[bytes]:
    batches = result.record_batches()

    def open_writer(sink: _Chunks, schema: pa.Schema) -> pq.ParquetWriter:
        return pq.ParquetWriter(sink, schema, compression="zstd")

    def finish(writer: pq.ParquetWriter, metadata: dict[str, str]) -> None:
        writer.add_key_value_metadata(metadata)

    return _binary(result, batches, result.schema, open_writer, finish)


def _binary(
    result: QueryResult,
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    open_writer: Callable[[_Chunks, pa.Schema], Any],
    finish: Callable[[Any, dict[str, str]], None],
) -> Iterator[bytes]:
    """Write each batch with a pyarrow writer and hand on what it wrote; `finish` records the truncation flag."""
    sink = _Chunks()
    writer = open_writer(sink, schema)
    try:
        for batch in batches:
            writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
            yield sink.take()
        finish(writer, {TRUNCATED_KEY: "true" if result.truncated else "false"})
        writer.close()
        yield sink.take()
    except QueryFailed as exc:
        result.error = exc
        raise


def _renamed(schema: pa.Schema, names: list[str]) -> pa.Schema:
    return pa.schema([field.with_name(name) for field, name in zip(schema, names, strict=True)])
