"""Build → staging → publish: files, checksums, manifest, immutability, crash safety, cleanup and retention."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from connectors.base import ConnectorError
from datasets.build import BuildError, build
from datasets.publish import (
    PUBLISHED_MARKER,
    STAGING_DIR,
    PublishError,
    cleanup_stale_staging,
    discard,
    is_complete,
    orphan_versions,
    publish,
    read_manifest,
    remove_version,
    verify_version,
    version_numbers,
    version_path,
    versions_to_retire,
)
from datasets.spec import ENTITY_BUCKET_COLUMN, entity_bucket_sql, parse_spec
from datasets.storage import Store

MASTER_KEY = b"test-master-key-0123456789abcdef"
WORKER = Path(__file__).with_name("build_worker.py")


def run_build(spec_data, source, store, scratch, **kwargs):
    return build(
        parse_spec(spec_data), source, master_key=MASTER_KEY, release="r1", store=store, scratch_dir=scratch, **kwargs
    )


def read_version(store: Store, slug: str, number: int) -> list[tuple]:
    root = version_path(store, slug, number)
    return duckdb.sql(f"SELECT * FROM read_parquet('{root}/**/*.parquet') ORDER BY ALL").fetchall()


def staging_dirs(store: Store) -> list[str]:
    base = Path(store.path(STAGING_DIR))
    return sorted(str(p) for p in base.glob("*/*")) if base.exists() else []


def test_build_writes_checksummed_parquet_to_staging_and_publish_makes_it_a_version(
    spec_data, arrow_source, transactions, store, scratch
):
    table = transactions(3000)
    progress: list[int] = []
    result = run_build(spec_data, arrow_source(table, batch_rows=400), store, scratch, on_progress=progress.append)

    # The staged files are what the result says, and nothing is visible yet.
    assert result.files and all(f.path.endswith(".parquet") for f in result.files)
    for entry in result.files:
        assert store.sha256(result.staging.path_of(entry.path)) == entry.sha256
        assert store.size_bytes(result.staging.path_of(entry.path)) == entry.size_bytes
    assert version_numbers(store, "card_test") == []
    assert progress == sorted(progress) and progress[-1] == 3000 == result.source_rows
    assert result.source_watermark == "test-watermark"
    assert not list(scratch.iterdir())  # the scratch directory is cleaned up

    # Only declared columns are published, with the declared types.
    assert [(c["name"], c["type"]) for c in result.schema] == [
        ("buyer", "string"),
        ("age_band", "string"),
        ("gender", "string"),
        ("province", "string"),
        ("month", "date32[day]"),
        ("amount", "double"),
    ]
    assert result.privacy.columns_dropped == ("name", "phone", "txn_id")  # undeclared columns are never published
    json.dumps(result.to_dict())  # the summary is JSON for the version row

    manifest = publish(store, "card_test", 1, result)
    assert manifest["rows"] == result.row_count and manifest["content_hash"] == result.content_hash
    assert is_complete(store, "card_test", 1) and read_manifest(store, "card_test", 1) == manifest
    assert verify_version(store, "card_test", 1) == []
    assert staging_dirs(store) == []  # the staging directory became the version
    rows = read_version(store, "card_test", 1)
    assert len(rows) == result.row_count
    file_schema = pq.read_schema(f"{version_path(store, 'card_test', 1)}/{result.files[0].path}")
    # The spec's columns, then the aggregate tier's hidden entity bucket (not part of the version's schema).
    assert file_schema.names == ["buyer", "age_band", "gender", "province", "month", "amount", ENTITY_BUCKET_COLUMN]
    assert all(len(row[0]) == 32 for row in rows)


def test_an_aggregate_version_carries_each_entitys_bucket_and_hides_it_from_the_schema(
    spec_data, arrow_source, transactions, store, scratch
):
    result = run_build(spec_data, arrow_source(transactions(3000)), store, scratch)
    assert ENTITY_BUCKET_COLUMN not in {c["name"] for c in result.schema}
    assert ENTITY_BUCKET_COLUMN not in result.column_stats
    files = [result.staging.path_of(f.path) for f in result.files]
    con = duckdb.connect()
    expected = entity_bucket_sql("buyer")
    per_entity, wrong = con.execute(
        f"SELECT max(n), count(*) FILTER (WHERE NOT ok) FROM (SELECT buyer, count(DISTINCT {ENTITY_BUCKET_COLUMN}) AS n,"
        f" bool_and({ENTITY_BUCKET_COLUMN} IS NOT DISTINCT FROM {expected}) AS ok FROM read_parquet(?) GROUP BY buyer)",
        [files],
    ).fetchone()
    assert per_entity == 1 and wrong == 0  # one bucket per entity, the one the query engine would compute
    buckets = con.execute(f"SELECT count(DISTINCT {ENTITY_BUCKET_COLUMN}) FROM read_parquet(?)", [files]).fetchone()[0]
    assert buckets > 32  # spread over the 64 buckets, not one


def test_only_the_aggregate_tier_buckets_its_entity(spec_data, lookup_spec_data):
    assert parse_spec(spec_data).bucketed_entity == "buyer"
    assert parse_spec(lookup_spec_data).bucketed_entity is None


def test_rows_are_sorted_by_sort_by(spec_data, arrow_source, transactions, store, scratch):
    spec_data["sort_by"] = ["amount"]
    result = run_build(spec_data, arrow_source(transactions(2000)), store, scratch)
    amounts = pq.read_table(result.staging.path_of(result.files[0].path)).column("amount").to_pylist()
    assert amounts == sorted(amounts)


def test_the_files_have_the_layout_the_spec_declares_and_the_report_does_not_change(
    spec_data, arrow_source, transactions, store, scratch
):
    table = transactions(12_000)
    plain = run_build({**spec_data, "sort_by": []}, arrow_source(table), store, scratch)
    spec_data.update(sort_by=["province", "month", "amount"], row_group_rows=2048)
    laid_out = run_build(spec_data, arrow_source(table), store, scratch)

    files = [laid_out.staging.path_of(entry.path) for entry in laid_out.files]
    con = duckdb.connect()
    groups = con.execute(
        "SELECT file_name, row_group_id, any_value(row_group_num_rows), count(stats_min) FILTER (WHERE path_in_schema"
        " IN ('province', 'month', 'amount')) FROM parquet_metadata(?) GROUP BY ALL ORDER BY ALL",
        [files],
    ).fetchall()
    assert len(groups) > 3 and all(rows == 2048 for _, _, rows, _ in groups[:-1]) and groups[-1][2] <= 2048
    assert all(with_min_max == 3 for *_, with_min_max in groups)  # the statistics DuckDB skips row groups by
    rows = con.execute("SELECT province, month, amount FROM read_parquet(?)", [files]).fetchall()
    assert rows == sorted(rows, key=lambda row: tuple((value is None, value) for value in row))

    # The layout moves rows, never changes them: same rows, statistics and privacy report.
    assert laid_out.content_hash == plain.content_hash and laid_out.row_count == plain.row_count
    assert laid_out.privacy == plain.privacy and laid_out.column_stats == plain.column_stats
    assert len(plain.files) == 1 and pq.ParquetFile(plain.staging.path_of(plain.files[0].path)).num_row_groups == 1


def test_partitioned_output_keeps_the_full_schema_in_every_file(spec_data, arrow_source, transactions, store, scratch):
    spec_data["partitioning"] = ["month"]
    result = run_build(spec_data, arrow_source(transactions(2000)), store, scratch)
    assert len(result.files) >= 2 and all(f.path.startswith("month=") for f in result.files)
    for entry in result.files:
        assert "month" in pq.read_schema(result.staging.path_of(entry.path)).names
    publish(store, "card_test", 1, result)
    assert verify_version(store, "card_test", 1) == []


def test_the_content_hash_tracks_the_rows_not_the_build(spec_data, arrow_source, transactions, store, scratch):
    table = transactions(2000)
    first = run_build(spec_data, arrow_source(table, batch_rows=300), store, scratch)
    again = run_build(spec_data, arrow_source(table, batch_rows=700), store, scratch)
    assert first.build_id != again.build_id
    assert first.content_hash == again.content_hash and first.schema_hash == again.schema_hash

    changed = run_build(spec_data, arrow_source(transactions(2000, seed=8)), store, scratch)
    other_release = build(
        parse_spec(spec_data),
        arrow_source(table),
        master_key=MASTER_KEY,
        release="r2",
        store=store,
        scratch_dir=scratch,
    )
    assert len({first.content_hash, changed.content_hash, other_release.content_hash}) == 3
    for result in (first, again, changed, other_release):
        discard(result.staging)
    assert staging_dirs(store) == []


def test_versions_are_immutable(spec_data, arrow_source, transactions, store, scratch):
    first = run_build(spec_data, arrow_source(transactions(1000)), store, scratch)
    publish(store, "card_test", 1, first)
    second = run_build(spec_data, arrow_source(transactions(1000, seed=9)), store, scratch)
    with pytest.raises(PublishError, match="exists already"):
        publish(store, "card_test", 1, second)
    with pytest.raises(PublishError, match="another store or dataset"):
        publish(store, "other_slug", 2, second)
    discard(second.staging)
    with pytest.raises(PublishError, match="missing or changed"):
        publish(store, "card_test", 2, second)
    assert version_numbers(store, "card_test") == [1] and verify_version(store, "card_test", 1) == []


def test_verify_version_notices_tampering(spec_data, arrow_source, transactions, store, scratch):
    result = run_build(spec_data, arrow_source(transactions(1000)), store, scratch)
    publish(store, "card_test", 1, result)
    path = Path(version_path(store, "card_test", 1)) / result.files[0].path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert verify_version(store, "card_test", 1) == [f"{result.files[0].path}: content differs from the manifest"]


def test_an_object_store_publishes_by_copy_and_marker(spec_data, arrow_source, transactions, tmp_path, scratch):
    # A SubTreeFileSystem is not a LocalFileSystem, so the store takes the object-store path: copy, then marker last.
    (tmp_path / "bucket").mkdir()
    store = Store(pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem()), "vitamin")
    assert not store.is_local
    result = run_build(spec_data, arrow_source(transactions(1500)), store, scratch)
    assert store.exists(result.staging.path_of(result.files[0].path))
    publish(store, "card_test", 1, result)
    assert is_complete(store, "card_test", 1) and verify_version(store, "card_test", 1) == []
    assert not store.exists(result.staging.path)
    assert len(read_version(Store.from_url(str(tmp_path / "bucket" / "vitamin")), "card_test", 1)) == result.row_count


def test_a_version_without_its_marker_is_incomplete_and_an_orphan(
    spec_data, arrow_source, transactions, store, scratch
):
    result = run_build(spec_data, arrow_source(transactions(1000)), store, scratch)
    publish(store, "card_test", 1, result)
    # What an object store holds when the publisher died mid-copy: files, no marker.
    partial = Path(version_path(store, "card_test", 2))
    partial.mkdir()
    (partial / "part-0.parquet").write_bytes(b"PAR1 half a file")
    assert not is_complete(store, "card_test", 2)
    assert orphan_versions(store, "card_test", published_numbers=[1]) == [2]
    remove_version(store, "card_test", 2)
    assert version_numbers(store, "card_test") == [1]


def test_remove_version_deletes_the_marker_and_files(spec_data, arrow_source, transactions, store, scratch):
    result = run_build(spec_data, arrow_source(transactions(1000)), store, scratch)
    publish(store, "card_test", 3, result)
    remove_version(store, "card_test", 3)
    assert not is_complete(store, "card_test", 3) and version_numbers(store, "card_test") == []


def test_a_failing_source_fails_the_build_with_its_own_error_and_leaves_nothing(
    spec_data, arrow_source, transactions, store, scratch
):
    with pytest.raises(ConnectorError, match="went away") as caught:
        run_build(spec_data, arrow_source(transactions(3000), batch_rows=500, fail_after_batches=3), store, scratch)
    assert caught.value.transient
    assert staging_dirs(store) == [] and version_numbers(store, "card_test") == []


def test_raising_from_on_progress_cancels_the_build(spec_data, arrow_source, transactions, store, scratch):
    class Cancelled(Exception):
        pass

    def cancel(rows: int) -> None:
        if rows >= 1000:
            raise Cancelled

    with pytest.raises(Cancelled):
        run_build(spec_data, arrow_source(transactions(3000), batch_rows=500), store, scratch, on_progress=cancel)
    assert staging_dirs(store) == []


def test_build_errors_name_the_problem(spec_data, arrow_source, transactions, store, scratch):
    table = transactions(500)
    with pytest.raises(BuildError, match="the source has no column postcode"):
        spec_data["columns"].append({"name": "postcode", "type": "string", "role": "dimension", "description": "p"})
        run_build(spec_data, arrow_source(table), store, scratch)
    spec_data["columns"].pop()
    spec_data["transform"] = "SELECT *, no_such_column AS extra FROM source"
    with pytest.raises(BuildError, match="transform does not run"):
        run_build(spec_data, arrow_source(table), store, scratch)
    spec_data["transform"] = None
    spec_data["privacy"]["k"] = 10_000
    with pytest.raises(BuildError, match="no rows to publish"):
        run_build(spec_data, arrow_source(table), store, scratch)
    assert staging_dirs(store) == []


def test_a_lookup_key_must_be_unique(lookup_spec_data, arrow_source, transactions, store, scratch):
    with pytest.raises(BuildError, match="lookup key buyer has .* duplicate"):
        run_build(lookup_spec_data, arrow_source(transactions(500)), store, scratch)


def test_the_build_database_cannot_read_other_files(spec_data, arrow_source, transactions, store, scratch, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    spec_data["transform"] = f"SELECT s.* FROM source AS s, read_csv('{secret}') AS leaked"
    with pytest.raises(BuildError, match="disabled by configuration"):
        run_build(spec_data, arrow_source(transactions(500)), store, scratch)


def test_a_build_runs_within_a_small_memory_limit(spec_data, arrow_source, transactions, store, scratch):
    result = run_build(
        spec_data, arrow_source(transactions(20_000), batch_rows=2000), store, scratch, memory_limit="40MB"
    )
    assert result.row_count > 0 and result.privacy.passed


def test_cleanup_removes_only_stale_staging(spec_data, arrow_source, transactions, store, scratch):
    old = run_build(spec_data, arrow_source(transactions(500)), store, scratch)
    fresh = run_build(spec_data, arrow_source(transactions(500)), store, scratch)
    hour_ago = time.time() - 3600
    os.utime(old.staging.path_of("_build"), (hour_ago, hour_ago))
    assert cleanup_stale_staging(store, older_than_seconds=600) == [old.staging.path]
    assert staging_dirs(store) == [fresh.staging.path]
    assert cleanup_stale_staging(store, older_than_seconds=600, now_seconds=time.time() + 3600) == [fresh.staging.path]


@pytest.mark.parametrize(
    ("published", "keep", "pinned", "retire"),
    [
        ([1, 2, 3, 4, 5], 3, set(), [1, 2]),
        ([1, 2, 3, 4, 5], 2, {1}, [2, 3]),
        ([1, 2, 3, 4, 5], 2, {5}, [1, 2, 3]),  # a pinned newest version still counts among the newest
        ([4, 2, 9], 5, set(), []),
        ([], 1, set(), []),
        ([7], 1, {7}, []),
    ],
)
def test_versions_to_retire(published, keep, pinned, retire):
    assert versions_to_retire(published, keep, pinned) == retire


def test_retention_keeps_at_least_one():
    with pytest.raises(ValueError):
        versions_to_retire([1, 2], 0, set())


# --- crash safety: a real process, killed ---------------------------------------------------


def start_worker(tmp_path: Path, version: int, pause_at: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "store"), str(tmp_path / "scratch"), str(version), pause_at],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(tmp_path: Path, worker: subprocess.Popen, predicate, timeout_seconds: float = 60.0) -> str:
    progress = tmp_path / "worker-progress"
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        word = progress.read_text() if progress.exists() else ""
        if predicate(word):
            return word
        if worker.poll() is not None:
            raise AssertionError(f"worker exited early: {worker.stderr.read().decode()}")
        time.sleep(0.05)
    worker.kill()
    raise AssertionError(f"worker never reached the expected point (last progress: {word!r})")


def kill(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    worker.stderr.close()


def publish_first_version(tmp_path: Path) -> tuple[Store, list[tuple]]:
    worker = start_worker(tmp_path, 1, "none")
    assert worker.wait(timeout=120) == 0, worker.stderr.read().decode()
    worker.stderr.close()
    store = Store.from_url(str(tmp_path / "store"))
    assert verify_version(store, "card_test", 1) == []
    (tmp_path / "worker-progress").unlink()
    return store, read_version(store, "card_test", 1)


@pytest.mark.slow
@pytest.mark.parametrize("pause_at", ["reading", "built"])
def test_a_build_killed_midway_leaves_the_previous_version_serving(tmp_path, pause_at):
    store, v1_rows = publish_first_version(tmp_path)

    worker = start_worker(tmp_path, 2, pause_at)
    if pause_at == "reading":
        wait_for(tmp_path, worker, lambda word: word.startswith("reading") and int(word.split()[1]) >= 1000)
    else:
        wait_for(tmp_path, worker, lambda word: word == "built")
    kill(worker)

    # Version 1 still serves, intact; nothing of version 2 is visible.
    assert version_numbers(store, "card_test") == [1]
    assert verify_version(store, "card_test", 1) == [] and read_version(store, "card_test", 1) == v1_rows
    assert not store.exists(version_path(store, "card_test", 2))
    [left_behind] = staging_dirs(store)
    if pause_at == "built":
        assert any(name.endswith(".parquet") for name in os.listdir(left_behind))  # complete, but only staged

    assert cleanup_stale_staging(store, older_than_seconds=0, now_seconds=time.time() + 1) == [left_behind]
    assert staging_dirs(store) == []
    assert version_numbers(store, "card_test") == [1]


@pytest.mark.slow
def test_a_publish_never_committed_is_an_orphan(tmp_path):
    store, v1_rows = publish_first_version(tmp_path)
    worker = start_worker(tmp_path, 2, "published")
    wait_for(tmp_path, worker, lambda word: word == "published")
    kill(worker)
    # The files are in place and complete, but the caller died before marking version 2 published in the database.
    assert is_complete(store, "card_test", 2)
    assert orphan_versions(store, "card_test", published_numbers=[1]) == [2]
    remove_version(store, "card_test", 2)
    assert version_numbers(store, "card_test") == [1] and read_version(store, "card_test", 1) == v1_rows
    assert json.loads((Path(version_path(store, "card_test", 1)) / PUBLISHED_MARKER).read_text())["version"] == 1


def test_a_transform_joins_reference_tables_read_whole_into_the_build(
    spec_data, arrow_source, transactions, store, scratch
):
    """A spec's `references` are tables the transform reads by name; a row without a match drops out of the join."""
    import pyarrow as pa

    table = transactions(2000)
    provinces = pa.table({"city": ["杭州市", "广州市"], "kept": [True, True]})
    spec_data["references"] = {"kept_cities": {"kind": "arrow_test", "options": {}}}
    spec_data["transform"] = "SELECT s.* FROM source AS s JOIN kept_cities AS k ON k.city = s.city"
    result = run_build(
        spec_data, arrow_source(table), store, scratch, references={"kept_cities": arrow_source(provinces)}
    )
    publish(store, "card_test", 1, result)
    written = {row[3] for row in read_version(store, "card_test", 1)}
    assert written and written <= {"浙江省", "广东省"}
    expected = sum(city in ("杭州市", "广州市") for city in table.column("city").to_pylist())
    assert result.privacy.rows_in == expected

    with pytest.raises(BuildError, match="references given"):
        run_build(spec_data, arrow_source(table), store, scratch, references={})
    assert staging_dirs(store) == []  # refused before anything was staged
