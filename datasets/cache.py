"""A query node's local copy of published files from an object store: keyed by content, bounded, shared by processes.

Why: DuckDB reads partner queries in a sandbox with external access off (`datasets.query.sandbox`),
so it may read local files only; a query over an S3 store reads the version's files through this
cache. Published versions never change and every file's sha256 is in the version row, so a file
is cached under its checksum and a cached copy is never stale:

    {directory}/objects/{sha256[:2]}/{sha256}{suffix}   a complete, verified copy (what DuckDB reads)
    {directory}/locks/{sha256}.lock                     its lock file (flock), created on first use
    {directory}/partial/...                              downloads under way; never read

Every web, Celery and query worker process of a node may share one directory:

- a copy appears only whole: it is downloaded into `partial/`, its size and sha256 checked, fsynced,
  then renamed into `objects/` (rename(2) is atomic on one file system);
- one process downloads a file at a time: the downloader holds the file's lock exclusively, and
  the others wait for it, then find the copy there;
- a query pins the files it reads: it holds a shared lock on each for as long as it runs
  (`Pins`, released when the query ends), and eviction deletes only a copy whose lock it gets
  exclusively without waiting, so it never deletes a file a running query reads;
- least recently used first: `pin` sets a copy's access time (not its modification time, which
  DuckDB's Parquet metadata cache checks), and eviction removes the oldest access times first
  until the copies fit in `max_bytes`. Pinned copies stay, so a query whose files alone exceed
  the bound still runs; the cache shrinks back when it ends and the next file is fetched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets.storage import Store

log = logging.getLogger("vitamin.cache")

_CHUNK_BYTES = 4 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
PARTIAL_MAX_AGE_SECONDS = 3600.0  # a download this old in partial/ belongs to a process that died


class CacheError(Exception):
    """A file could not be brought into the cache: the store did not answer, or sent other bytes than the manifest's."""


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its path in the store and what the version row says about it."""

    source: str
    sha256: str
    size_bytes: int

    @property
    def key(self) -> str:
        """The cache key: the file's sha256 (versions are immutable); for a row that has none (older
        versions), a digest of its path and size, which a published path never changes under."""
        if _SHA256.fullmatch(self.sha256):
            return self.sha256
        return hashlib.sha256(f"{self.source}\n{self.size_bytes}".encode()).hexdigest()

    @property
    def suffix(self) -> str:
        name = self.source.rsplit("/", 1)[-1]
        return "." + name.rsplit(".", 1)[-1] if "." in name else ""


class Pins:
    """Shared locks on the cached copies one query reads; release them when it ends (idempotent)."""

    def __init__(self, paths: dict[str, str], descriptors: list[int]):
        self.paths = paths  # store path → local path
        self._descriptors = descriptors
        self.fetched_bytes = 0  # bytes this pin downloaded (0 when every file was cached: a warm read)

    def local_path(self, source: str) -> str:
        return self.paths[source]

    def release(self) -> None:
        descriptors, self._descriptors = self._descriptors, []
        for descriptor in descriptors:
            os.close(descriptor)  # closing drops the flock

    def __enter__(self) -> Pins:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class FileCache:
    """The cache in one directory, bounded to `max_bytes` of copies (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        if max_bytes < 1:
            raise ValueError("a cache needs room for at least one byte")
        self.directory = Path(directory).resolve()
        self.max_bytes = max_bytes
        for name in ("objects", "locks", "partial"):
            (self.directory / name).mkdir(parents=True, exist_ok=True)

    def path_for(self, remote: RemoteFile) -> str:
        """Where the copy of `remote` lives (whether or not it is there now)."""
        key = remote.key
        return str(self.directory / "objects" / key[:2] / f"{key}{remote.suffix}")

    def pin(self, store: Store, files: Iterable[RemoteFile]) -> Pins:
        """Make every file's copy present and pinned, downloading what is missing; then evict down to the bound.

        Raises CacheError when a file cannot be fetched (nothing stays pinned then).
        """
        paths: dict[str, str] = {}
        descriptors: list[int] = []
        pins = Pins(paths, descriptors)
        try:
            for remote in files:
                descriptor, fetched = self._pin_one(store, remote)
                descriptors.append(descriptor)
                paths[remote.source] = self.path_for(remote)
                pins.fetched_bytes += fetched
        except BaseException:
            pins.release()
            raise
        if pins.fetched_bytes:
            self.evict()
        return pins

    def _pin_one(self, store: Store, remote: RemoteFile) -> tuple[int, int]:
        """A shared lock on the file's copy, downloading it first if it is missing; and the bytes downloaded."""
        target = self.path_for(remote)
        fetched = 0
        while True:
            waiting_since = time.time()  # before the shared lock too: a download under way holds that one off
            descriptor = self._lock(remote.key, fcntl.LOCK_SH)
            if os.path.exists(target):
                now = time.time()
                os.utime(target, (now, os.stat(target).st_mtime))  # used now: last in line for eviction
                return descriptor, fetched
            os.close(descriptor)
            descriptor = self._lock(remote.key, fcntl.LOCK_EX)
            try:
                if not os.path.exists(target):  # nobody fetched it while we waited
                    self._refuse_if_it_failed_since(remote, waiting_since)
                    self._download(store, remote, target)
                    fetched += remote.size_bytes
            finally:
                os.close(descriptor)
            # Shared again (a lock cannot be downgraded atomically); an eviction in between sends us round again.

    def _refuse_if_it_failed_since(self, remote: RemoteFile, moment: float) -> None:
        """CacheError when a download of this file failed after `moment` (while we waited for its lock): the store
        is down or too slow, and trying again at once would only wait as long again, so N queries waiting for
        one file wait about one store timeout, not N of them one after another."""
        try:
            failed_at = os.stat(self._failure_mark(remote.key)).st_mtime
        except FileNotFoundError:
            return
        if failed_at >= moment:
            raise CacheError(f"{remote.source} could not be fetched from the store a moment ago")

    def _failure_mark(self, key: str) -> Path:
        return self.directory / "locks" / f"{key}.failed"

    def _download(self, store: Store, remote: RemoteFile, target: str) -> None:
        partial = self.directory / "partial" / f"{remote.key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(partial, "wb") as out:
                with store.fs.open_input_stream(remote.source) as stream:
                    while chunk := stream.read(_CHUNK_BYTES):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if (remote.size_bytes and size != remote.size_bytes) or (
                _SHA256.fullmatch(remote.sha256) and digest.hexdigest() != remote.sha256
            ):
                log.error("%s: the store sent %d bytes that do not match the manifest", remote.source, size)
                raise CacheError(f"{remote.source} in the store does not match its manifest")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(partial, target)  # whole or not at all
        except OSError as exc:
            log.error("fetching %s into the cache failed: %s", remote.source, exc)
            self._failure_mark(remote.key).touch()  # for the processes waiting for this file's lock
            raise CacheError(f"{remote.source} could not be fetched from the store") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)

    def _lock(self, key: str, mode: int, *, wait: bool = True) -> int | None:
        """An open descriptor of the key's lock file holding `mode`; None when `wait` is False and it is taken.

        The lock file is the one at its path when the lock is granted (eviction may delete and a
        later pin recreate it while we wait), so two processes never hold 'exclusive' on two files.
        """
        path = self.directory / "locks" / f"{key}.lock"
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, mode | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(descriptor)
                return None
            try:
                if os.fstat(descriptor).st_ino == os.stat(path).st_ino:
                    return descriptor
            except FileNotFoundError:
                pass
            os.close(descriptor)

    def entries(self) -> list[tuple[str, os.stat_result]]:
        """(path, stat) of every complete copy."""
        found = []
        for shard in os.scandir(self.directory / "objects"):
            if shard.is_dir():
                for entry in os.scandir(shard.path):
                    with contextlib.suppress(FileNotFoundError):
                        found.append((entry.path, entry.stat()))
        return found

    def usage_bytes(self) -> int:
        return sum(stat.st_size for _, stat in self.entries())

    def evict(self, *, now_seconds: float | None = None) -> list[str]:
        """Delete the least recently used copies no query has pinned until the rest fit in `max_bytes`;
        also downloads abandoned in `partial/`. Returns the paths of the copies deleted."""
        now_seconds = time.time() if now_seconds is None else now_seconds
        for entry in os.scandir(self.directory / "partial"):
            with contextlib.suppress(FileNotFoundError):
                if now_seconds - entry.stat().st_mtime > PARTIAL_MAX_AGE_SECONDS:
                    os.unlink(entry.path)
        entries = sorted(self.entries(), key=lambda item: item[1].st_atime)
        total = sum(stat.st_size for _, stat in entries)
        removed = []
        for path, stat in entries:
            if total <= self.max_bytes:
                break
            key = os.path.basename(path).split(".", 1)[0]
            descriptor = self._lock(key, fcntl.LOCK_EX, wait=False)
            if descriptor is None:
                continue  # pinned by a running query (or being fetched)
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
                    total -= stat.st_size
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / "locks" / f"{key}.lock")
            finally:
                os.close(descriptor)
        return removed


def remote_files(store: Store, location: str, entries: Sequence[dict]) -> list[RemoteFile]:
    """The `RemoteFile`s of a version's file entries (the manifest's or the version row's: path, size, sha256)."""
    return [
        RemoteFile(store.path(location, entry["path"]), entry.get("sha256", ""), int(entry.get("size_bytes", 0)))
        for entry in entries
    ]
