"""The parquet connector against local files and a real S3-compatible server (moto's, started on 127.0.0.1)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from connectors import ConnectorError, OptionsError, get_connector


def sample(rows: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "loan_id": pa.array(range(start, start + rows), pa.int64()),
            "status": pa.array(["current", "paid_off", "overdue", "default"] * (rows // 4)),
            "principal": pa.array([1_000.0 + i for i in range(rows)]),
        }
    )


def write_parts(filesystem: pafs.FileSystem, directory: str, parts: int, rows: int) -> pa.Table:
    tables = [sample(rows, start=part * rows) for part in range(parts)]
    for part, table in enumerate(tables):
        pq.write_table(table, f"{directory}/part-{part}.parquet", filesystem=filesystem, row_group_size=rows // 4)
    return pa.concat_tables(tables)


def read(options: dict, batch_rows: int) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    connector = get_connector("parquet", options, batch_rows=batch_rows)
    return connector.schema(), list(connector.batches())


def test_a_directory_streams_in_bounded_batches(tmp_path):
    expected = write_parts(pafs.LocalFileSystem(), str(tmp_path), parts=3, rows=4_000)
    schema, batches = read({"path": str(tmp_path)}, batch_rows=700)
    assert len(batches) > 3
    assert all(0 < batch.num_rows <= 700 for batch in batches)
    assert all(batch.schema == schema for batch in batches)
    data = pa.Table.from_batches(batches).sort_by("loan_id")
    assert data.equals(expected)


def test_a_single_file_with_projection(tmp_path):
    write_parts(pafs.LocalFileSystem(), str(tmp_path), parts=1, rows=400)
    schema, batches = read({"path": str(tmp_path / "part-0.parquet"), "columns": ["principal", "loan_id"]}, 1_000)
    assert schema.names == ["principal", "loan_id"]
    assert batches[0].schema == schema
    assert batches[0].column("loan_id").to_pylist()[:3] == [0, 1, 2]


def test_unknown_columns_and_missing_paths_are_errors(tmp_path):
    write_parts(pafs.LocalFileSystem(), str(tmp_path), parts=1, rows=8)
    with pytest.raises(ConnectorError, match="not in the data: nope"):
        read({"path": str(tmp_path), "columns": ["nope"]}, 10)
    with pytest.raises(ConnectorError, match="no Parquet data") as error:
        read({"path": str(tmp_path / "absent")}, 10)
    assert not error.value.transient


def test_watermark_is_the_newest_file_time(tmp_path):
    write_parts(pafs.LocalFileSystem(), str(tmp_path), parts=2, rows=8)
    assert get_connector("parquet", {"path": str(tmp_path)}).watermark().startswith("20")


def test_credentials_never_inline():
    problems = {}
    for options in (
        {"path": "s3://AKIA:secret@bucket/data"},
        {"path": "s3://bucket/data", "access_key": "AKIA", "secret_key": "secret"},
        {"path": "s3://bucket/data?access_key=AKIA"},
        {"path": "s3://bucket/data", "access_key_env": "HOME"},
        {"path": "ftp://host/data"},
    ):
        with pytest.raises(OptionsError) as error:
            get_connector("parquet", options)
        problems[str(options)] = {field for field, _ in error.value.problems}
    assert list(problems.values()) == [{"path"}, {"access_key", "secret_key"}, {"path"}, {"secret_key_env"}, {"path"}]


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] provides the local S3-compatible server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def test_s3_compatible_storage(s3_endpoint, monkeypatch):
    monkeypatch.setenv("TEST_S3_ACCESS_KEY", "vitamin-test")
    monkeypatch.setenv("TEST_S3_SECRET_KEY", "vitamin-test-secret")
    s3 = pafs.S3FileSystem(
        access_key="vitamin-test",
        secret_key="vitamin-test-secret",
        endpoint_override=s3_endpoint,
        scheme="http",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    s3.create_dir("vitamin-sources")
    expected = write_parts(s3, "vitamin-sources/loans", parts=2, rows=2_000)
    options = {
        "path": f"s3://vitamin-sources/loans?endpoint_override={s3_endpoint}&scheme=http",
        "access_key_env": "TEST_S3_ACCESS_KEY",
        "secret_key_env": "TEST_S3_SECRET_KEY",
        "columns": ["loan_id", "status"],
    }
    schema, batches = read(options, batch_rows=500)
    assert schema.names == ["loan_id", "status"]
    assert all(batch.num_rows <= 500 for batch in batches)
    data = pa.Table.from_batches(batches).sort_by("loan_id")
    assert data.equals(expected.select(["loan_id", "status"]))
    with pytest.raises(ConnectorError, match="no Parquet data"):
        read({**options, "path": f"s3://vitamin-sources/absent?endpoint_override={s3_endpoint}&scheme=http"}, 10)
