"""The connector interface: validated options in, a schema and a stream of Arrow record batches out.

A connector never loads a whole source into memory: `batches()` yields
record batches of at most `batch_rows` rows, each matching `schema()`.
Credentials are never written inline in options; options name an environment
variable or a file (see `resolve_secret`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

DEFAULT_BATCH_ROWS = 65_536


class ConnectorError(Exception):
    """A source could not be read; `transient` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class OptionsError(ValueError):
    """Options for a connector are invalid; `problems` lists every (field, reason)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in problems))


class Connector(ABC):
    """Base class. Subclasses set `kind`, validate options in `__init__`, and implement schema() and batches()."""

    kind: ClassVar[str]

    def __init__(self, options: Mapping[str, Any], *, batch_rows: int = DEFAULT_BATCH_ROWS):
        self.options = dict(options)
        self.batch_rows = batch_rows

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The schema every batch will have."""

    @abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch]:
        """Stream the source as record batches of at most `batch_rows` rows."""

    def watermark(self) -> str | None:
        """A marker of how far the source has been read (max timestamp, file mtime...), if the source has one."""
        return None

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema(), self.batches())


def resolve_secret(options: Mapping[str, Any], name: str) -> str | None:
    """A credential given as `{name}_env` (environment variable name) or `{name}_file` (path), never inline."""
    if name in options:
        raise OptionsError([(name, f"credentials must not be written inline; use {name}_env or {name}_file")])
    if env_name := options.get(f"{name}_env"):
        value = os.environ.get(env_name)
        if value is None:
            raise OptionsError([(f"{name}_env", f"environment variable {env_name} is not set")])
        return value
    if file_name := options.get(f"{name}_file"):
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise OptionsError([(f"{name}_file", f"cannot read {file_name}: {exc.strerror}")]) from None
    return None
