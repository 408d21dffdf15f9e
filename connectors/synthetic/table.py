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
    (seed, options, i), so blocks can be made in any order and the stream is the same for every batch size."""

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

    @classmethod
    def check_options(cls, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        """Table-specific cross-field checks; append (field, reason) to `problems`."""
        if cls.max_rows is not None and (options.get("rows") or 0) > cls.max_rows:
            problems.append(("rows", f"the {cls.name} table has at most {cls.max_rows:,} rows"))
        if "start_date" in cls.options:
            start, end = options.get("start_date") or DEFAULT_START_DATE, options.get("end_date") or DEFAULT_END_DATE
            if end < start:
                problems.append(("end_date", f"must not be before start_date ({start.isoformat()})"))

    def blocks(self) -> Iterator[pa.RecordBatch]:
        for index, start in enumerate(range(0, self.rows, self.block_rows)):
            yield self.block(index, start, min(start + self.block_rows, self.rows))

    @abstractmethod
    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        """Rows [start, stop) of the table, which make up block `index`."""

    def watermark(self) -> str | None:
        return None

    def batch(self, columns: dict[str, pa.Array]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([columns[field.name] for field in self.schema], schema=self.schema)
