"""Where published Parquet lives: a local directory or S3-compatible object storage, through pyarrow.fs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Store:
    """A file system and the root path inside it under which every dataset lives."""

    fs: pafs.FileSystem
    root: str

    @classmethod
    def from_url(cls, url: str) -> Store:
        """`/path`, `file:///path` or `s3://bucket/prefix?endpoint_override=...` (pyarrow's S3 options)."""
        scheme = urlsplit(url).scheme
        if scheme in ("", "file"):
            path = Path(urlsplit(url).path if scheme else url).resolve()
            path.mkdir(parents=True, exist_ok=True)
            return cls(pafs.LocalFileSystem(), str(path))
        fs, root = pafs.FileSystem.from_uri(url)
        return cls(fs, root.rstrip("/"))

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def check(self) -> None:
        """Raise unless the store's root is reachable and is a directory."""
        info = self.fs.get_file_info(self.root)
        if info.type != pafs.FileType.Directory:
            raise FileNotFoundError("store root is missing")
