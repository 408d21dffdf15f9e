"""The `csv` connector: one CSV file or a glob of them, streamed block by block with pyarrow's CSV reader."""

from __future__ import annotations

import datetime as dt
import glob
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from .base import Connector, ConnectorError, Option, read_declared_columns, split_batches

READ_BLOCK_BYTES = 1 << 20


class CsvConnector(Connector):
    """Columns come from the header row; types are declared in `columns` or inferred from the first block
    of the first file, and every later file is read with those same types."""

    kind = "csv"
    declared_options = (
        Option("path", str, required=True, help="a file, or a glob such as exports/*.csv (files read in name order)"),
        Option("delimiter", str, default=",", help="one character"),
        Option("columns", dict, help="declared types, e.g. {amount: float64, day: date32}; others are inferred"),
        Option("encoding", str, default="utf-8", help="e.g. gbk for files from older Chinese systems"),
    )

    def check_options(self, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        if len(options["delimiter"]) != 1:
            problems.append(("delimiter", "must be a single character"))
        self.declared_types = read_declared_columns(options["columns"], problems)
        try:
            "".encode(options["encoding"])
        except LookupError:
            problems.append(("encoding", f"unknown encoding {options['encoding']!r}"))

    def files(self) -> list[str]:
        path = self.options["path"]
        files = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        files = [name for name in files if os.path.isfile(name)]
        if not files:
            raise ConnectorError(f"no CSV file matches {path}")
        return files

    def _open(self, path: str, column_types: dict[str, pa.DataType] | None) -> pacsv.CSVStreamingReader:
        try:
            return pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(encoding=self.options["encoding"], block_size=READ_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(delimiter=self.options["delimiter"]),
                convert_options=pacsv.ConvertOptions(column_types=column_types or {}),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise ConnectorError(f"cannot read {path}: {exc}") from exc

    def schema(self) -> pa.Schema:
        reader = self._open(self.files()[0], self.declared_types)
        schema = reader.schema
        reader.close()
        missing = set(self.declared_types or {}) - set(schema.names)
        if missing:
            raise ConnectorError(f"declared columns not in the CSV header: {', '.join(sorted(missing))}")
        return schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        return split_batches(self._read_all(), self.batch_rows)

    def _read_all(self) -> Iterator[pa.RecordBatch]:
        schema = self.schema()
        column_types = dict(zip(schema.names, schema.types, strict=True))
        for path in self.files():
            reader = self._open(path, column_types)
            if reader.schema != schema:
                raise ConnectorError(f"{path} has columns {reader.schema.names}, expected {schema.names}")
            try:
                yield from reader
            except pa.ArrowInvalid as exc:
                hint = "" if self.declared_types else " (types were inferred from the first block; declare `columns`)"
                raise ConnectorError(f"cannot parse {path}: {exc}{hint}") from exc
            finally:
                reader.close()

    def watermark(self) -> str | None:
        """The newest modification time among the files, in UTC."""
        newest = max(os.stat(path).st_mtime for path in self.files())
        return dt.datetime.fromtimestamp(newest, tz=dt.UTC).isoformat()
