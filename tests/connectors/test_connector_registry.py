"""The connector registry and the shared option, secret and type helpers."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from connectors import CONNECTORS, Connector, OptionsError, get_connector, resolve_secret
from connectors.base import parse_type, split_batches
from testenv import REPO_DIR


def test_every_kind_is_registered_under_its_own_name():
    assert set(CONNECTORS) == {"csv", "parquet", "sql", "http_json", "synthetic"}
    assert all(issubclass(cls, Connector) and cls.kind == kind for kind, cls in CONNECTORS.items())


def test_unknown_kinds_and_non_mapping_options_are_option_errors():
    with pytest.raises(OptionsError) as error:
        get_connector("ftp", {})
    assert error.value.problems[0][0] == "kind"
    assert "csv" in error.value.problems[0][1]
    with pytest.raises(OptionsError):
        get_connector("csv", ["path"])


@pytest.mark.parametrize(
    ("kind", "required"),
    [
        ("csv", {"path"}),
        ("parquet", {"path"}),
        ("sql", {"url", "query"}),
        ("http_json", {"url"}),
        ("synthetic", {"table"}),
    ],
)
def test_empty_options_name_every_required_option(kind, required):
    with pytest.raises(OptionsError) as error:
        get_connector(kind, {}, batch_rows=-1)
    assert {field for field, _ in error.value.problems} == required | {"batch_rows"}


def test_resolve_secret_reads_env_or_file_and_refuses_inline(monkeypatch, tmp_path):
    monkeypatch.setenv("VITAMIN_TEST_SECRET", "s3cret")
    (tmp_path / "secret").write_text("from-file\n")
    assert resolve_secret({"password_env": "VITAMIN_TEST_SECRET"}, "password") == "s3cret"
    assert resolve_secret({"password_file": str(tmp_path / "secret")}, "password") == "from-file"
    assert resolve_secret({}, "password") is None
    for options in (
        {"password": "s3cret"},
        {"password_env": "VITAMIN_TEST_SECRET", "password_file": str(tmp_path / "secret")},
        {"password_env": "VITAMIN_TEST_NOT_SET"},
        {"password_file": str(tmp_path / "absent")},
    ):
        with pytest.raises(OptionsError) as error:
            resolve_secret(options, "password")
        assert "s3cret" not in str(error.value)


def test_parse_type_names():
    assert parse_type("int64") == pa.int64()
    assert parse_type("string") == pa.string()
    assert parse_type("date32") == pa.date32()
    assert parse_type("timestamp[ms, tz=Asia/Shanghai]") == pa.timestamp("ms", tz="Asia/Shanghai")
    assert parse_type("timestamp[us]") == pa.timestamp("us")
    assert parse_type("decimal128(18, 2)") == pa.decimal128(18, 2)
    with pytest.raises(ValueError):
        parse_type("integer-ish")


def test_split_batches_never_exceeds_the_limit_and_drops_empty_batches():
    batches = [pa.record_batch({"a": list(range(n))}) for n in (0, 5, 12, 3)]
    sizes = [batch.num_rows for batch in split_batches(batches, 4)]
    assert sizes == [4, 1, 4, 4, 4, 3]


def test_connectors_never_import_django():
    script = (
        "import sys, connectors, connectors.sql, connectors.http_json, connectors.parquet_files, connectors.csv_files\n"
        "connectors.get_connector('synthetic', {'table': 'consumers', 'rows': 5}).reader().read_all()\n"
        "assert not any(name == 'django' or name.startswith('django.') for name in sys.modules), 'django imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
