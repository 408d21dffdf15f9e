"""The `parquet` connector: Parquet files or directories, on local disk or S3-compatible storage, streamed
with a pyarrow dataset scanner."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from .base import Connector, ConnectorError, Option, split_batches

# Query parameters an s3:// URL may carry; credentials are never among them.
S3_URL_PARAMETERS = {"endpoint_override", "region", "scheme", "anonymous"}


class ParquetConnector(Connector):
    kind = "parquet"
    declared_options = (
        Option(
            "path", str, required=True, help="a file or directory, or s3://bucket/prefix?endpoint_override=host:port"
        ),
        Option("columns", list, help="read only these columns, in this order"),
        Option("access_key", secret=True, help="S3 access key id (as access_key_env or access_key_file)"),
        Option("secret_key", secret=True, help="S3 secret access key (as secret_key_env or secret_key_file)"),
    )

    def check_options(self, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        columns = options["columns"]
        if columns is not None and (not columns or not all(isinstance(name, str) for name in columns)):
            problems.append(("columns", "must be a non-empty list of column names"))
        url = urlsplit(options["path"] or "")
        if url.scheme not in ("", "file", "s3"):
            problems.append(("path", f"unsupported scheme {url.scheme!r}; use a local path or s3://"))
        if url.scheme == "s3":
            if url.username or url.password:
                problems.append(
                    ("path", "credentials must not be written in the URL; use access_key_env/secret_key_env")
                )
            unknown = set(parse_qs(url.query)) - S3_URL_PARAMETERS
            if unknown:
                problems.append(("path", f"unknown URL parameters {', '.join(sorted(unknown))}"))
        if bool(self.secrets.get("access_key")) != bool(self.secrets.get("secret_key")):
            problems.append(("secret_key_env", "give both the access key and the secret key, or neither"))

    def _filesystem_and_path(self) -> tuple[pafs.FileSystem, str]:
        url = urlsplit(self.options["path"])
        if url.scheme in ("", "file"):
            return pafs.LocalFileSystem(), url.path if url.scheme else self.options["path"]
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        settings = {name: query[name] for name in ("endpoint_override", "region", "scheme") if name in query}
        filesystem = pafs.S3FileSystem(
            access_key=self.secrets["access_key"],
            secret_key=self.secrets["secret_key"],
            anonymous=query.get("anonymous", "").lower() in ("1", "true"),
            **settings,
        )
        return filesystem, f"{url.netloc}{url.path}"

    @cached_property
    def dataset(self) -> pads.Dataset:
        filesystem, path = self._filesystem_and_path()
        try:
            return pads.dataset(path, filesystem=filesystem, format="parquet")
        except FileNotFoundError as exc:
            raise ConnectorError(f"no Parquet data at {self.options['path']}") from exc
        except OSError as exc:  # network and permission errors from S3
            raise ConnectorError(f"cannot open {self.options['path']}: {exc}", transient=_is_transient(exc)) from exc
        except pa.ArrowInvalid as exc:
            raise ConnectorError(f"cannot read {self.options['path']} as Parquet: {exc}") from exc

    def schema(self) -> pa.Schema:
        schema = self.dataset.schema
        columns = self.options["columns"]
        if columns is None:
            return schema
        missing = [name for name in columns if name not in schema.names]
        if missing:
            raise ConnectorError(f"columns not in the data: {', '.join(missing)}")
        return pa.schema([schema.field(name) for name in columns])

    def batches(self) -> Iterator[pa.RecordBatch]:
        schema = self.schema()
        scanner = self.dataset.scanner(columns=schema.names, batch_size=self.batch_rows)
        try:
            yield from split_batches(scanner.to_batches(), self.batch_rows)
        except OSError as exc:
            raise ConnectorError(f"reading {self.options['path']} failed: {exc}", transient=_is_transient(exc)) from exc

    def watermark(self) -> str | None:
        """The newest modification time among the files, in UTC, where the file system reports one."""
        infos = self.dataset.filesystem.get_file_info(self.dataset.files)
        times = [info.mtime for info in infos if info.mtime is not None]
        if not times:
            return None
        newest = max(times)
        return (newest if newest.tzinfo else newest.replace(tzinfo=dt.UTC)).isoformat()


def _is_transient(error: OSError) -> bool:
    message = str(error).lower()
    return any(word in message for word in ("timeout", "timed out", "connection", "throttl", "slow down", "503"))
