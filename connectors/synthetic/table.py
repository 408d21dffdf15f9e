"""What every synthetic table shares: its options, its row count, and generation in independent blocks."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import pyarrow as pa

BLOCK_ROWS = 65_536  # rows generated at a time; the data does not depend on the caller's batch size

DEFAULT_START_DATE = dt.date(2024, 1, 1)
DEFAULT_END_DATE = dt.date(2025, 12, 31)


class SyntheticTable(ABC):
    """One generated table. Block i holds rows [i * block_rows, (i + 1) * block_rows) and depends only on
    (seed, options, i), so blocks can be made in any order and the stream is the same for every batch size.

    A table with the `until` option emits only the rows up to that day: a cut of the same stream (the
    blocks are made whole, then cut), so every row it emits is the row the table gives without `until`.
    """

    name: ClassVar[str]
    schema: ClassVar[pa.Schema]
    # Table-specific options this table accepts, besides table, rows and seed.
    options: ClassVar[frozenset[str]] = frozenset()
    default_rows: ClassVar[int]
    max_rows: ClassVar[int | None] = None
    block_rows: ClassVar[int] = BLOCK_ROWS

    def __init__(self, options: dict[str, Any]):
        self.seed: int = options["seed"]
        self.start_date: dt.date = options.get("start_date") or DEFAULT_START_DATE
        self.end_date: dt.date = options.get("end_date") or DEFAULT_END_DATE
        self.rows: int = self.default_rows if options.get("rows") is None else options["rows"]
        self.until: dt.date | None = options.get("until")

    @property
    def emitted_rows(self) -> int:
        """How many rows the stream emits: all of them, or those up to `until` (tables with that option)."""
        return self.rows if self.until is None else min(self.rows, self.rows_through(self.until))

    def rows_through(self, day: dt.date) -> int:
        """How many leading rows of the stream fall on or before `day` (tables with the `until` option)."""
        raise NotImplementedError

    @classmethod
    def check_options(cls, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        """Table-specific cross-field checks; append (field, reason) to `problems`."""
        if cls.max_rows is not None and (options.get("rows") or 0) > cls.max_rows:
            problems.append(("rows", f"the {cls.name} table has at most {cls.max_rows:,} rows"))
        if "start_date" in cls.options:
            start, end = options.get("start_date") or DEFAULT_START_DATE, options.get("end_date") or DEFAULT_END_DATE
            if end < start:
                problems.append(("end_date", f"must not be before start_date ({start.isoformat()})"))
        if "until" in cls.options and options.get("until") is not None:
            start = options.get("start_date") or DEFAULT_START_DATE
            if options["until"] < start - dt.timedelta(days=1):
                problems.append(("until", f"must not be before the day before start_date ({start.isoformat()})"))

    def blocks(self) -> Iterator[pa.RecordBatch]:
        emitted = self.emitted_rows
        for index, start in enumerate(range(0, emitted, self.block_rows)):
            block = self.block(index, start, min(start + self.block_rows, self.rows))
            yield block if start + block.num_rows <= emitted else block.slice(0, emitted - start)

    def last_emitted_row(self) -> pa.RecordBatch | None:
        """The last row the stream emits (made with its whole block), or None if it emits none."""
        emitted = self.emitted_rows
        if emitted == 0:
            return None
        index = (emitted - 1) // self.block_rows
        start = index * self.block_rows
        return self.block(index, start, min(start + self.block_rows, self.rows)).slice(emitted - 1 - start, 1)

    @abstractmethod
    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        """Rows [start, stop) of the table, which make up block `index`."""

    def watermark(self) -> str | None:
        return None

    def batch(self, columns: dict[str, pa.Array]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([columns[field.name] for field in self.schema], schema=self.schema)
