"""The query node's file cache (datasets.cache): content-keyed copies fetched whole from a real S3-compatible
server, least recently used evicted first, never a pinned copy, and safe with several processes at once."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.cache import CacheError, FileCache, RemoteFile
from datasets.storage import Store


def put(store: Store, name: str, data: bytes) -> RemoteFile:
    path = store.path("datasets", "x", "v1", name)
    store.write_bytes(path, data)
    return RemoteFile(path, hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture
def s3_store(object_store, object_store_keys) -> Store:
    return Store.from_url(object_store.fresh_store_url())


@pytest.mark.slow  # the SeaweedFS server
def test_a_cold_read_fetches_from_the_object_store_and_a_warm_one_does_not(s3_store, tmp_path):
    cache = FileCache(tmp_path / "cache", max_bytes=10**9)
    data = os.urandom(300_000)
    remote = put(s3_store, "part-0.parquet", data)

    with cache.pin(s3_store, [remote]) as cold:
        local = cold.local_path(remote.source)
        assert cold.fetched_bytes == len(data)
        assert local == cache.path_for(remote) and local.endswith(f"{remote.sha256}.parquet")
        assert open(local, "rb").read() == data
    with cache.pin(s3_store, [remote]) as warm:
        assert warm.fetched_bytes == 0 and warm.local_path(remote.source) == local
    assert os.listdir(tmp_path / "cache" / "partial") == []


@pytest.mark.slow  # the SeaweedFS server
def test_bytes_that_differ_from_the_manifest_never_enter_the_cache(s3_store, tmp_path):
    cache = FileCache(tmp_path / "cache", max_bytes=10**9)
    remote = put(s3_store, "part-0.parquet", b"what the build wrote")
    s3_store.write_bytes(remote.source, b"what someone put her")  # same size, other bytes: the sha256 tells
    with pytest.raises(CacheError):
        cache.pin(s3_store, [remote])
    assert not os.path.exists(cache.path_for(remote))
    assert cache.entries() == [] and os.listdir(tmp_path / "cache" / "partial") == []


@pytest.mark.slow  # the SeaweedFS server
def test_an_unreachable_object_is_a_cache_error_and_pins_nothing(s3_store, tmp_path):
    cache = FileCache(tmp_path / "cache", max_bytes=10**9)
    there = put(s3_store, "part-0.parquet", b"a" * 100)
    missing = RemoteFile(s3_store.path("datasets", "x", "v1", "gone.parquet"), "0" * 64, 5)
    with pytest.raises(CacheError):
        cache.pin(s3_store, [there, missing])
    # the copy of the first file stays cached but not pinned: eviction may take it
    assert FileCache(tmp_path / "cache", max_bytes=1).evict() == [cache.path_for(there)]


def test_the_least_recently_used_copy_goes_first(tmp_path):
    store = Store.from_url(str(tmp_path / "store"))
    cache = FileCache(tmp_path / "cache", max_bytes=2500)
    a, b, c = (put(store, f"{name}.parquet", name.encode() * 1000) for name in "abc")
    cache.pin(store, [a]).release()
    cache.pin(store, [b]).release()
    os.utime(cache.path_for(a), (1, os.stat(cache.path_for(a)).st_mtime))  # a: long unused ...
    os.utime(cache.path_for(b), (2, os.stat(cache.path_for(b)).st_mtime))
    cache.pin(store, [a]).release()  # ... until now: b is the least recently used
    mtime = os.stat(cache.path_for(a)).st_mtime
    cache.pin(store, [c]).release()
    assert os.path.exists(cache.path_for(a)) and os.path.exists(cache.path_for(c))
    assert not os.path.exists(cache.path_for(b))
    assert os.stat(cache.path_for(a)).st_mtime == mtime  # use moves the access time only (DuckDB checks mtime)


def test_a_pinned_copy_is_never_evicted_even_over_the_bound(tmp_path):
    store = Store.from_url(str(tmp_path / "store"))
    cache = FileCache(tmp_path / "cache", max_bytes=1500)
    a, b = put(store, "a.parquet", b"a" * 1000), put(store, "b.parquet", b"b" * 1000)
    held = cache.pin(store, [a])
    with cache.pin(store, [b]):
        assert cache.evict() == []  # both pinned: over the bound, nothing deleted
        assert open(cache.path_for(a), "rb").read() == b"a" * 1000
    assert cache.evict() == [cache.path_for(b)]  # b released; a still held though older
    held.release()
    held.release()  # idempotent
    assert FileCache(tmp_path / "cache", max_bytes=1).evict() == [cache.path_for(a)]


def test_a_download_left_by_a_dead_process_is_swept_and_never_read(tmp_path):
    store = Store.from_url(str(tmp_path / "store"))
    cache = FileCache(tmp_path / "cache", max_bytes=10**6)
    remote = put(store, "a.parquet", b"whole file")
    abandoned = tmp_path / "cache" / "partial" / f"{remote.key}.999.dead"
    abandoned.write_bytes(b"whole")  # half of it
    with cache.pin(store, [remote]) as pins:
        assert open(pins.local_path(remote.source), "rb").read() == b"whole file"
    os.utime(abandoned, (1, 1))
    cache.evict()
    assert not abandoned.exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=6),
    steps=st.lists(st.tuples(st.sampled_from(["pin", "release"]), st.integers(0, 5)), max_size=25),
    bound=st.integers(1, 1200),
)
def test_pinned_copies_are_always_whole_and_the_rest_fits_the_bound(tmp_path_factory, sizes, steps, bound):
    root = tmp_path_factory.mktemp("cache-property")
    store = Store.from_url(str(root / "store"))
    files = [put(store, f"f{index}.parquet", bytes([index]) * size) for index, size in enumerate(sizes)]
    cache = FileCache(root / "cache", max_bytes=bound)
    held: dict[int, list] = {}
    for action, index in steps:
        index %= len(files)
        if action == "pin":
            held.setdefault(index, []).append(cache.pin(store, [files[index]]))
        elif held.get(index):
            held[index].pop().release()
        for pinned_index, pins in held.items():
            if pins:
                path = cache.path_for(files[pinned_index])
                assert open(path, "rb").read() == bytes([pinned_index]) * sizes[pinned_index]
        cache.evict()
        pinned_bytes = sum(sizes[i] for i, pins in held.items() if pins)
        assert cache.usage_bytes() <= max(bound, pinned_bytes)
    for pins in held.values():
        for pin in pins:
            pin.release()


def _reader(directory: str, store_dir: str, files: list[tuple[str, str, int]], seed: int, rounds: int) -> int:
    """In its own process: pin random files, check each copy is whole while pinned; returns the rounds done."""
    rng = random.Random(seed)
    store = Store.from_url(store_dir)
    cache = FileCache(directory, max_bytes=3 * 50_000)  # room for three of the eight files
    remotes = [RemoteFile(*entry) for entry in files]
    for _ in range(rounds):
        chosen = rng.sample(remotes, 2)
        with cache.pin(store, chosen) as pins:
            for remote in chosen:
                with open(pins.local_path(remote.source), "rb") as handle:
                    assert hashlib.sha256(handle.read()).hexdigest() == remote.sha256
    return rounds


def test_several_processes_fetch_read_and_evict_one_cache_without_a_torn_or_missing_file(tmp_path):
    store = Store.from_url(str(tmp_path / "store"))
    remotes = [put(store, f"f{index}.parquet", os.urandom(50_000)) for index in range(8)]
    files = [(remote.source, remote.sha256, remote.size_bytes) for remote in remotes]
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        results = [
            pool.apply_async(_reader, (str(tmp_path / "cache"), str(tmp_path / "store"), files, seed, 60))
            for seed in range(4)
        ]
        assert [result.get(timeout=240) for result in results] == [60] * 4
    cache = FileCache(tmp_path / "cache", max_bytes=3 * 50_000)
    cache.evict()  # nothing is pinned any more: back within the bound
    assert cache.usage_bytes() <= 3 * 50_000
    assert os.listdir(tmp_path / "cache" / "partial") == []
    for path, _ in cache.entries():
        key = os.path.basename(path).split(".")[0]
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == key
