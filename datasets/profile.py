"""What a built version contains: its schema and schema hash, per-column statistics, and a content hash.

All of it is read back from the written Parquet. The content hash identifies
the multiset of rows (order-insensitive) together with the schema, so a refresh
whose output has the same rows as the published version can be skipped. It sums
DuckDB's 64-bit row hashes into 128 bits: fine for noticing change, not a
cryptographic commitment (the files' sha256 checksums are that).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import pyarrow.parquet as pq

from datasets.sql import quote_identifier


@dataclass(frozen=True)
class ColumnStats:
    null_count: int
    distinct_approx: int
    min: Any  # JSON-safe; None when withheld (pseudonyms, sensitive values) or when every value is NULL
    max: Any

    def to_dict(self) -> dict:
        return asdict(self)


def parquet_schema(paths: list[str]) -> list[dict[str, str]]:
    """[{name, type}] of the Parquet files (Arrow type names); every file must carry the same schema."""
    schemas = {str(pq.read_schema(path).remove_metadata()) for path in paths}
    if len(schemas) > 1:
        raise ValueError("the written files do not share one schema")
    schema = pq.read_schema(paths[0])
    return [{"name": field.name, "type": str(field.type)} for field in schema]


def schema_hash(schema: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Profile:
    rows: int
    column_stats: dict[str, ColumnStats]
    content_hash: str


def profile(
    con: duckdb.DuckDBPyConnection,
    relation_sql: str,
    columns: list[str],
    *,
    withhold_extremes: set[str],
    schema_digest: str,
) -> Profile:
    """Row count, content hash, and per column: nulls, approximate distinct count, min and max. One scan."""
    row_hash = f"hash({', '.join(quote_identifier(name) for name in columns)})"
    selects = ["count(*)", f"coalesce(sum(CAST({row_hash} AS HUGEINT)), 0)"]
    for name in columns:
        quoted = quote_identifier(name)
        selects += [f"count(*) - count({quoted})", f"approx_count_distinct({quoted})"]
        selects += ["NULL", "NULL"] if name in withhold_extremes else [f"min({quoted})", f"max({quoted})"]
    rows, hash_sum, *values = con.execute(f"SELECT {', '.join(selects)} FROM {relation_sql}").fetchall()[0]
    stats = {
        name: ColumnStats(
            null_count=values[4 * i],
            distinct_approx=values[4 * i + 1],
            min=_json_safe(values[4 * i + 2]),
            max=_json_safe(values[4 * i + 3]),
        )
        for i, name in enumerate(columns)
    }
    content = hashlib.sha256(f"{schema_digest}:{rows}:{hash_sum}".encode()).hexdigest()
    return Profile(rows=rows, column_stats=stats, content_hash=content)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON (and PostgreSQL's jsonb) has no NaN or infinity
    return value
