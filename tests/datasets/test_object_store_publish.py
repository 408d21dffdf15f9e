"""Build and publish on a real S3-compatible store (SeaweedFS): atomic by the manifest written last.

A publisher that dies between file copies leaves a version folder without `_published`: readers never
see it, the previous version keeps serving, and cleanup finds the orphan (its age from its files, since
an object store's folders have no time) and removes it with the dead build's staging.
"""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from datasets.build import build
from datasets.cache import FileCache, remote_files
from datasets.publish import (
    PublishError,
    cleanup_stale_staging,
    is_complete,
    orphan_versions,
    publish,
    read_manifest,
    remove_version,
    verify_version,
    version_numbers,
    version_path,
)
from datasets.spec import parse_spec
from datasets.storage import Store

MASTER_KEY = b"test-master-key-0123456789abcdef"
pytestmark = pytest.mark.slow  # a SeaweedFS server for the session


class Crash(Exception):
    """The publisher 'dies' here."""


class _CrashingCopies(pafs.FileSystemHandler):
    """The S3 file system, except that the copy number `crash_at` raises: a publisher dying mid-copy."""

    def __init__(self, fs: pafs.FileSystem, crash_at: int):
        self.fs, self.crash_at, self.copies = fs, crash_at, 0

    def copy_file(self, src, dest):
        self.copies += 1
        if self.copies == self.crash_at:
            raise Crash(f"killed while copying {src}")
        self.fs.copy_file(src, dest)

    def get_type_name(self):
        return "crashing-s3"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def equals(self, other):
        return other is self

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        raise NotImplementedError


@pytest.fixture
def s3_store(object_store, object_store_keys) -> Store:
    return Store.from_url(object_store.fresh_store_url())


def build_version(store, spec_data, arrow_source, transactions, scratch, seed):
    spec_data["partitioning"] = ["month"]  # several data files: a crash can fall between two of them
    return build(
        parse_spec(spec_data), arrow_source(transactions(2000, seed=seed)), master_key=MASTER_KEY, release="r1",
        store=store, scratch_dir=scratch,
    )  # fmt: skip


def read_rows(store: Store, number: int, cache_dir) -> int:
    """Rows of a published version read as a query node reads it: through the cache, by the manifest."""
    import duckdb

    manifest = read_manifest(store, "card_test", number)
    files = remote_files(
        store, version_path(store, "card_test", number).removeprefix(store.root + "/"), manifest["files"]
    )
    with FileCache(cache_dir, max_bytes=10**9).pin(store, files) as pins:
        paths = [pins.local_path(remote.source) for remote in files]
        return duckdb.sql(f"SELECT count(*) FROM read_parquet({paths!r})").fetchall()[0][0]


def test_a_publisher_dying_mid_copy_leaves_no_visible_version_and_cleanup_removes_it(
    s3_store, spec_data, arrow_source, transactions, scratch, tmp_path
):
    first = build_version(s3_store, spec_data, arrow_source, transactions, scratch, seed=1)
    publish(s3_store, "card_test", 1, first)
    assert verify_version(s3_store, "card_test", 1) == []
    assert read_rows(s3_store, 1, tmp_path / "cache") == first.row_count

    handler = _CrashingCopies(s3_store.fs, crash_at=3)  # the marker, one data file, then the crash
    crashing = Store(pafs.PyFileSystem(handler), s3_store.root)
    second = build_version(crashing, spec_data, arrow_source, transactions, scratch, seed=2)
    assert len(second.files) >= 2 and handler.copies == 0
    with pytest.raises(Crash):
        publish(crashing, "card_test", 2, second)

    # Some files of v2 are in the store, its manifest is not: not a version anyone reads.
    assert version_numbers(s3_store, "card_test") == [1, 2]
    assert not is_complete(s3_store, "card_test", 2)
    assert verify_version(s3_store, "card_test", 2) == ["version 2 of card_test has no _published marker"]
    assert orphan_versions(s3_store, "card_test", published_numbers=[1]) == [2]
    # ... and the previous version keeps serving.
    assert verify_version(s3_store, "card_test", 1) == []
    assert read_rows(s3_store, 1, tmp_path / "cache-2") == first.row_count

    # Cleanup's age rule has a time to go by, though S3 "folders" have none of their own.
    assert s3_store.modified_seconds(version_path(s3_store, "card_test", 2)) is not None
    remove_version(s3_store, "card_test", 2)
    assert version_numbers(s3_store, "card_test") == [1]
    assert cleanup_stale_staging(s3_store, older_than_seconds=-1) == [second.staging.path]
    assert s3_store.subdirectories(s3_store.path("_staging", "card_test")) == []
    assert verify_version(s3_store, "card_test", 1) == []


def test_a_version_is_published_whole_on_the_object_store(s3_store, spec_data, arrow_source, transactions, scratch):
    result = build_version(s3_store, spec_data, arrow_source, transactions, scratch, seed=3)
    manifest = publish(s3_store, "card_test", 1, result)
    assert is_complete(s3_store, "card_test", 1) and verify_version(s3_store, "card_test", 1) == []
    assert [entry["path"] for entry in manifest["files"]] == [entry.path for entry in result.files]
    # the staging copy is gone once the version is whole (no files left under the build's prefix)
    assert s3_store.subdirectories(s3_store.path("_staging", "card_test")) == []
    again = build_version(s3_store, spec_data, arrow_source, transactions, scratch, seed=4)
    with pytest.raises(PublishError, match="exists already"):  # versions are immutable on S3 too
        publish(s3_store, "card_test", 1, again)


def test_a_new_store_in_a_reachable_bucket_checks_out_and_a_missing_bucket_does_not(object_store, object_store_keys):
    fresh = Store.from_url(object_store.fresh_store_url())
    assert not fresh.exists(fresh.root)  # nothing published yet: the prefix is no object at all
    fresh.check()  # /readyz: reachable
    with pytest.raises(FileNotFoundError):
        Store.from_url(object_store.store_url("no-such-bucket")).check()
