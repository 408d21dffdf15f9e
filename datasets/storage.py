"""Where published Parquet lives: a local directory or S3-compatible object storage, through pyarrow.fs.

`Store` only knows about files and directories; what a version is and when it
becomes visible is `datasets.publish`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow.fs as pafs

from datasets.presign import presigned_get

_CHECKSUM_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ObjectStoreKeys:
    """What signing a URL for an S3-compatible store takes: where it answers, its region, the key pair."""

    endpoint: str  # scheme://host[:port]
    region: str
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class Store:
    """A file system and the root path inside it under which every dataset lives."""

    fs: pafs.FileSystem
    root: str
    keys: ObjectStoreKeys | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_url(cls, url: str) -> Store:
        """`/path`, `file:///path` or `s3://bucket/prefix?endpoint_override=...` (pyarrow's S3 options, and
        `connect_timeout` and `request_timeout` in seconds: see `TIMEOUT_OPTIONS`)."""
        scheme = urlsplit(url).scheme
        if scheme in ("", "file"):
            path = Path(urlsplit(url).path if scheme else url).resolve()
            path.mkdir(parents=True, exist_ok=True)
            return cls(pafs.LocalFileSystem(), str(path))
        located, timeouts = _without_timeouts(url)
        fs, root = pafs.FileSystem.from_uri(located)
        if timeouts:
            # pyarrow's URL parser knows no timeouts, and an S3FileSystem is made from its options only (it
            # pickles as them): the same file system again, with the timeouts added.
            rebuild, (options,) = fs.__reduce__()
            fs = rebuild({**options, **timeouts})
        return cls(fs, root.rstrip("/"), _keys(url) if scheme == "s3" else None)

    def presigned_url(self, path: str, seconds: int) -> str | None:
        """A URL that fetches `path` (a path of this store) for `seconds` without credentials, when the
        store is an S3-compatible one with a key pair; None otherwise (the caller serves the file)."""
        if self.keys is None:
            return None
        bucket, _, key = path.partition("/")
        return presigned_get(
            endpoint=self.keys.endpoint,
            region=self.keys.region,
            bucket=bucket,
            key=key,
            access_key=self.keys.access_key,
            secret_key=self.keys.secret_key,
            expires_seconds=seconds,
        )

    @property
    def is_local(self) -> bool:
        """Local stores get atomic directory renames and direct DuckDB writes; object stores do not."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def check(self) -> None:
        """Raise unless the store's root is reachable and is a directory (on an object store: its bucket
        exists, since a prefix under which nothing is published yet is no object at all)."""
        if self.fs.get_file_info(self.root).type == pafs.FileType.Directory:
            return
        if not self.is_local and self.fs.get_file_info(self.root.split("/", 1)[0]).type == pafs.FileType.Directory:
            return
        raise FileNotFoundError("store root is missing")

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def is_dir(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.Directory

    def subdirectories(self, path: str) -> list[str]:
        """Names (not paths) of the directories directly under `path`; empty when `path` does not exist.

        On an object store a directory is a key prefix, and only one that holds a file counts: some
        servers (SeaweedFS) keep listing a prefix for a while after its last object was deleted."""
        if not self.is_dir(path):
            return []
        if self.is_local:
            infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
            return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
        prefix = path.rstrip("/") + "/"
        names = {
            info.path[len(prefix) :].split("/", 1)[0]
            for info in infos
            if info.type == pafs.FileType.File and "/" in info.path[len(prefix) :]
        }
        return sorted(names)

    def modified_seconds(self, path: str) -> float | None:
        """Modification time (epoch seconds) of a file or directory, or None when the store does not know it.

        An object store has no directories, only key prefixes without a time: a directory's time there is
        that of the newest file under it (what cleanup's age rules need of an orphan version folder)."""
        info = self.fs.get_file_info(path)
        if info.mtime is not None:
            return info.mtime.timestamp()
        if info.type != pafs.FileType.Directory:
            return None
        times = [
            entry.mtime.timestamp()
            for entry in self.fs.get_file_info(pafs.FileSelector(path, recursive=True))
            if entry.type == pafs.FileType.File and entry.mtime is not None
        ]
        return max(times, default=None)

    def size_bytes(self, path: str) -> int:
        return self.fs.get_file_info(path).size

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as stream:
            stream.write(data)

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open_input_stream(path) as stream:
            while chunk := stream.read(_CHECKSUM_CHUNK_BYTES):
                digest.update(chunk)
        return digest.hexdigest()

    def delete_dir(self, path: str) -> None:
        """Remove a directory and everything under it; a missing directory is not an error."""
        if self.exists(path):
            self.fs.delete_dir(path)

    def delete_file(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_file(path)


# How long a request to an S3 store may wait, in seconds, as options of the store's URL. Unset, the AWS
# SDK's own apply: 1 s to connect, and a request that receives no byte for 3 s is abandoned; pyarrow
# tries a request 3 times. So a store that does not answer (down, or hung) costs a query about 10 s,
# never more, then 503 dataset_unavailable (docs/operations.md, "What each fault does to a partner").
TIMEOUT_OPTIONS = ("connect_timeout", "request_timeout")


def _without_timeouts(url: str) -> tuple[str, dict[str, float]]:
    """The URL without `TIMEOUT_OPTIONS`, and their values; ValueError for one that is not a positive number."""
    parts = urlsplit(url)
    kept, timeouts = [], {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in TIMEOUT_OPTIONS:
            kept.append((name, value))
            continue
        try:
            timeouts[name] = float(value)
        except ValueError:
            timeouts[name] = 0.0
        if not timeouts[name] > 0:
            raise ValueError(f"the store URL's {name} must be a positive number of seconds, not {value!r}")
    return urlunsplit(parts._replace(query=urlencode(kept))), timeouts


def _keys(url: str) -> ObjectStoreKeys | None:
    """The signing keys of an `s3://` store: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the
    environment, where pyarrow reads them too; the endpoint and region from the URL's options."""
    options = {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}
    access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key:
        return None
    region = options.get("region") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    override = options.get("endpoint_override")
    if override:
        endpoint = override if "://" in override else f"{options.get('scheme', 'https')}://{override}"
    else:
        endpoint = f"https://s3.{region}.amazonaws.com"
    return ObjectStoreKeys(endpoint=endpoint, region=region, access_key=access_key, secret_key=secret_key)
