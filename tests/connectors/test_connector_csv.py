"""The csv connector against real files: streaming in bounded batches, globs, declared types, encodings."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from connectors import ConnectorError, OptionsError, get_connector


def write_csv(path, rows: int, start: int = 0, **write_options) -> pa.Table:
    data = pa.table(
        {
            "id": pa.array(range(start, start + rows), pa.int64()),
            "city": pa.array(["深圳市", "北京市", "成都市"] * (rows // 3) + ["上海市"] * (rows % 3)),
            "amount": pa.array([round(i * 1.25, 2) for i in range(rows)], pa.float64()),
            "day": pa.array([f"2024-01-{1 + i % 28:02d}" for i in range(rows)]),
        }
    )
    pacsv.write_csv(data, path, pacsv.WriteOptions(**write_options))
    return data


def read_all(options: dict, batch_rows: int = 65_536) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    connector = get_connector("csv", options, batch_rows=batch_rows)
    return connector.schema(), list(connector.batches())


def test_a_file_streams_in_batches_no_larger_than_asked(tmp_path):
    expected = write_csv(tmp_path / "sales.csv", 10_000)
    schema, batches = read_all({"path": str(tmp_path / "sales.csv")}, batch_rows=1_000)
    assert len(batches) >= 10
    assert all(batch.num_rows <= 1_000 for batch in batches)
    assert all(batch.schema == schema for batch in batches)
    data = pa.Table.from_batches(batches)
    assert data.column("id").equals(expected.column("id"))
    assert data.column("city").equals(expected.column("city"))
    assert schema.field("day").type == pa.date32()  # inferred from ISO dates


def test_a_glob_reads_every_matching_file_in_name_order(tmp_path):
    for part in range(3):
        write_csv(tmp_path / f"part-{part}.csv", 500, start=part * 500)
    (tmp_path / "notes.txt").write_text("not a csv")
    schema, batches = read_all({"path": str(tmp_path / "part-*.csv")}, batch_rows=300)
    ids = pa.Table.from_batches(batches, schema=schema).column("id").to_pylist()
    assert ids == list(range(1_500))


def test_declared_types_win_over_inference(tmp_path):
    write_csv(tmp_path / "sales.csv", 100)
    options = {"path": str(tmp_path / "sales.csv"), "columns": {"amount": "decimal128(12, 2)", "id": "int32"}}
    schema, batches = read_all(options)
    assert schema.field("amount").type == pa.decimal128(12, 2)
    assert schema.field("id").type == pa.int32()
    assert batches[0].column("amount")[4].as_py() == decimal.Decimal("5.00")


def test_gbk_files_and_other_delimiters(tmp_path):
    (tmp_path / "legacy.csv").write_bytes("商户|城市|金额\n华美服饰|深圳市|12.5\n鑫隆餐厅|北京市|8\n".encode("gbk"))
    schema, batches = read_all({"path": str(tmp_path / "legacy.csv"), "encoding": "gbk", "delimiter": "|"})
    assert schema.names == ["商户", "城市", "金额"]
    assert batches[0].to_pylist()[0] == {"商户": "华美服饰", "城市": "深圳市", "金额": 12.5}


def test_a_value_that_breaks_the_inferred_type_is_a_clear_error(tmp_path):
    lines = ["id,amount"] + [f"{i},{i}" for i in range(200_000)] + ["200000,12.5"]
    (tmp_path / "late.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConnectorError, match="declare `columns`") as error:
        read_all({"path": str(tmp_path / "late.csv")})
    assert not error.value.transient
    _, batches = read_all({"path": str(tmp_path / "late.csv"), "columns": {"amount": "float64"}})
    assert sum(batch.num_rows for batch in batches) == 200_001


def test_missing_files_and_mismatched_headers(tmp_path):
    with pytest.raises(ConnectorError, match="no CSV file"):
        read_all({"path": str(tmp_path / "nothing-*.csv")})
    write_csv(tmp_path / "a.csv", 10)
    (tmp_path / "b.csv").write_text("other,columns\n1,2\n")
    with pytest.raises(ConnectorError, match="has columns"):
        read_all({"path": str(tmp_path / "*.csv")})


def test_watermark_is_the_newest_file_time(tmp_path):
    write_csv(tmp_path / "a.csv", 10)
    watermark = get_connector("csv", {"path": str(tmp_path / "a.csv")}).watermark()
    assert abs(dt.datetime.fromisoformat(watermark) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_every_option_problem_is_reported_at_once():
    with pytest.raises(OptionsError) as error:
        get_connector(
            "csv", {"delimiter": "||", "encoding": "klingon", "columns": {"a": "integer-ish"}, "sheet": 1}, batch_rows=0
        )
    assert {field for field, _ in error.value.problems} == {
        "batch_rows",
        "path",
        "delimiter",
        "encoding",
        "columns.a",
        "sheet",
    }
