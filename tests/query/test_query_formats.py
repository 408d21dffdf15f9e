"""Every format round-trips through pyarrow (or json), streams in chunks, and carries the truncation flag."""

from __future__ import annotations

import io
import json
import math

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from query_support import FUND, arrow_stream_batches

from datasets.query import formats
from datasets.query.limits import Limits
from datasets.query.results import BATCH_ROWS

SQL = "SELECT city, balance, balance > 500 AS rich FROM people ORDER BY balance LIMIT 6"
EXPECTED = pa.table(
    {
        "city": ["Hangzhou", "Shanghai"] * 3,
        "balance": [0.0, 100.0, 200.0, 300.0, 400.0, 500.0],
        "rich": [False] * 6,
    }
)


@pytest.fixture
def body(gateway, bindings):
    def body(sql: str, format_name: str, limits: Limits | None = None):
        result = gateway.run(sql, bindings, FUND.key, limits or Limits())
        chunks = list(formats.stream(result, format_name))
        return result, chunks, b"".join(chunks)

    return body


def test_arrow_stream_round_trips(body):
    result, _, data = body(SQL, "arrow")
    reader = ipc.open_stream(data)
    assert reader.read_all().equals(EXPECTED)
    assert not result.truncated and result.rows == 6


def test_parquet_round_trips(body):
    _, _, data = body(SQL, "parquet")
    parquet = pq.ParquetFile(pa.BufferReader(data))
    assert parquet.read().equals(EXPECTED)
    assert parquet.metadata.metadata[b"vitamin.truncated"] == b"false"


def test_csv_round_trips(body):
    _, _, data = body(SQL, "csv")
    assert data.startswith(b'"city","balance","rich"\n')
    types = pa_csv.ConvertOptions(column_types=EXPECTED.schema)
    assert pa_csv.read_csv(io.BytesIO(data), convert_options=types).equals(EXPECTED)


def test_json_carries_columns_types_rows_and_the_flag(body):
    _, _, data = body(SQL, "json")
    document = json.loads(data)
    assert document["columns"] == [
        {"name": "city", "type": "VARCHAR"},
        {"name": "balance", "type": "DOUBLE"},
        {"name": "rich", "type": "BOOLEAN"},
    ]
    assert document["rows"] == [list(row.values()) for row in EXPECTED.to_pylist()]
    assert document["truncated"] is False


@pytest.mark.parametrize("format_name", ["json", "csv", "arrow", "parquet"])
def test_an_empty_result_is_a_valid_document(body, format_name):
    _, _, data = body("SELECT city, balance FROM people WHERE false", format_name)
    if format_name == "json":
        assert json.loads(data)["rows"] == []
    elif format_name == "csv":
        assert data == b'"city","balance"\n'
    elif format_name == "arrow":
        assert ipc.open_stream(data).read_all().num_rows == 0
    else:
        assert pq.read_table(pa.BufferReader(data)).column_names == ["city", "balance"]


def test_truncation_is_flagged_in_every_format_that_can_carry_it(body):
    limits = Limits(max_result_rows=5)
    sql = "SELECT n FROM numbers"
    result, _, data = body(sql, "json", limits)
    assert json.loads(data)["truncated"] is True and len(json.loads(data)["rows"]) == 5 and result.truncated
    _, _, data = body(sql, "arrow", limits)
    batches = arrow_stream_batches(data)
    assert sum(b.batch.num_rows for b in batches) == 5
    assert batches[-1].custom_metadata[b"vitamin.truncated"] == b"true"
    _, _, data = body(sql, "parquet", limits)
    parquet = pq.ParquetFile(pa.BufferReader(data))
    assert parquet.metadata.num_rows == 5 and parquet.metadata.metadata[b"vitamin.truncated"] == b"true"
    _, _, data = body(sql, "csv", limits)
    assert data.count(b"\n") == 6  # header + 5 rows


@pytest.mark.parametrize("format_name", ["json", "csv", "arrow", "parquet"])
def test_large_results_stream_in_several_chunks(body, format_name):
    rows = 3 * BATCH_ROWS
    result, chunks, data = body(
        f"SELECT a.n AS a, b.n AS b FROM numbers a, numbers b WHERE b.n < 10 LIMIT {rows}",
        format_name,
        Limits(max_result_rows=rows),
    )
    assert len(chunks) >= 3 and max(len(c) for c in chunks) < len(data)
    assert result.rows == rows and not result.truncated


def test_json_values_are_valid_json_for_every_type(body):
    sql = (
        "SELECT 'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, [1.5, 'nan'::DOUBLE] AS floats,"
        " {'x': '-inf'::DOUBLE, 'y': 'text \"quoted\"\n'} AS s, DATE '2024-01-31' AS d,"
        " TIMESTAMP '2024-01-31 12:00:00' AS ts, 12.30::DECIMAL(10, 2) AS dec, NULL AS nothing,"
        " '北京' AS city, 170141183460469231731687303715884105727::HUGEINT AS huge"
    )
    _, _, data = body(sql, "json")
    document = json.loads(data, parse_constant=lambda name: pytest.fail(f"invalid JSON constant {name}"))
    assert document["rows"] == [
        [
            None,
            None,
            [1.5, None],
            {"x": None, "y": 'text "quoted"\n'},
            "2024-01-31",
            "2024-01-31 12:00:00",
            12.3,
            None,
            "北京",
            170141183460469231731687303715884105727,
        ]
    ]


def test_csv_writes_nested_values_as_text(body):
    _, _, data = body("SELECT [1, 2] AS l, {'a': 1} AS s, 'x' AS t", "csv")
    assert pa_csv.read_csv(io.BytesIO(data)).to_pylist() == [{"l": "[1, 2]", "s": "{'a': 1}", "t": "x"}]


def test_arrow_keeps_nested_types_and_floats_as_they_are(body):
    _, _, data = body("SELECT [1.5, 'nan'::DOUBLE] AS l", "arrow")
    value = ipc.open_stream(data).read_all().column("l").to_pylist()[0]
    assert value[0] == 1.5 and math.isnan(value[1])


def test_media_types_are_declared_for_every_format():
    assert set(formats.MEDIA_TYPES) == {"json", "csv", "arrow", "parquet"}
    assert formats.MEDIA_TYPES["arrow"] == "application/vnd.apache.arrow.stream"
    with pytest.raises(ValueError):
        formats.stream(None, "xlsx")
