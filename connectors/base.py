"""The connector interface: validated options in, a schema and a stream of Arrow record batches out.

A connector never loads a whole source into memory: `batches()` yields
record batches of at most `batch_rows` rows, each matching `schema()`.
Credentials are never written inline in options; options name an environment
variable or a file (see `resolve_secret`).

Options are declared once per connector as a tuple of `Option`; the base class
checks them all and raises one `OptionsError` that lists every problem.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Option:
    """One declared option: its expected type, whether it is required, its default and its limits.

    `type` is one of str, int, float, bool, dict, list or datetime.date (an ISO
    'YYYY-MM-DD' string is accepted for a date). A `secret` option is never
    given inline: the caller writes `<name>_env` or `<name>_file` instead.
    """

    name: str
    type: type = str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False
    help: str = ""


def read_options(
    options: Mapping[str, Any], declared: Iterable[Option], problems: list[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Check `options` against `declared`; return (values with defaults filled in, resolved secrets).

    Every problem found is appended to `problems` rather than raised, so that the
    caller can report all of them at once.
    """
    declared = tuple(declared)
    known = {option.name for option in declared if not option.secret}
    known |= {f"{option.name}_{suffix}" for option in declared if option.secret for suffix in ("env", "file")}
    secret_names = {option.name for option in declared if option.secret}
    for name in options:
        if name not in known and name not in secret_names:
            problems.append((name, f"unknown option; expected one of {', '.join(sorted(known))}"))

    values: dict[str, Any] = {}
    secrets: dict[str, str | None] = {}
    for option in declared:
        if option.secret:
            try:
                secrets[option.name] = resolve_secret(options, option.name)
            except OptionsError as exc:
                problems.extend(exc.problems)
            continue
        value = options.get(option.name)
        if value is None:
            if option.required:
                problems.append((option.name, "is required"))
            values[option.name] = option.default
            continue
        value, problem = _coerce(value, option.type)
        if problem is None and option.choices and value not in option.choices:
            problem = f"must be one of {', '.join(map(str, option.choices))}"
        if problem is None and option.minimum is not None and value < option.minimum:
            problem = f"must be at least {option.minimum}"
        if problem is None and option.maximum is not None and value > option.maximum:
            problem = f"must be at most {option.maximum}"
        if problem:
            problems.append((option.name, problem))
        values[option.name] = value if problem is None else option.default
    return values, secrets


def _coerce(value: Any, expected: type) -> tuple[Any, str | None]:
    if expected is dt.date:
        if isinstance(value, dt.datetime):
            return value, "must be a date (YYYY-MM-DD), not a date and time"
        if isinstance(value, dt.date):
            return value, None
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value), None
            except ValueError:
                pass
        return value, "must be a date written YYYY-MM-DD"
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value), None
    if isinstance(value, bool) and expected is not bool:
        return value, f"must be {expected.__name__}, not a boolean"
    if not isinstance(value, expected):
        return value, f"must be {expected.__name__}, got {type(value).__name__}"
    return value, None


class Connector(ABC):
    """Base class. Subclasses set `kind` and `declared_options`, may add cross-field checks in `check_options`,
    and implement schema() and batches()."""

    kind: ClassVar[str]
    declared_options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, options: Mapping[str, Any], *, batch_rows: int = DEFAULT_BATCH_ROWS):
        problems: list[tuple[str, str]] = []
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            problems.append(("batch_rows", "must be a positive integer"))
        self.options, self.secrets = read_options(options, self.declared_options, problems)
        self.check_options(self.options, problems)
        if problems:
            raise OptionsError(problems)
        self.batch_rows = batch_rows

    def check_options(self, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:  # noqa: B027 - optional hook
        """Cross-field checks; append (field, reason) to `problems`. Called even when single options failed."""

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
    env_name, file_name = options.get(f"{name}_env"), options.get(f"{name}_file")
    if env_name and file_name:
        raise OptionsError([(f"{name}_env", f"give either {name}_env or {name}_file, not both")])
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise OptionsError([(f"{name}_env", f"environment variable {env_name} is not set")])
        return value
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise OptionsError([(f"{name}_file", f"cannot read {file_name}: {exc.strerror}")]) from None
    return None


def split_batches(batches: Iterable[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream so no batch exceeds `batch_rows` rows (zero-copy slices); empty batches are dropped."""
    for batch in batches:
        for offset in range(0, batch.num_rows, batch_rows):
            yield batch.slice(offset, batch_rows)


_TIMESTAMP_TYPE = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]")
_DECIMAL_TYPE = re.compile(r"decimal(?:128)?\((\d+),\s*(\d+)\)")


def parse_type(name: str) -> pa.DataType:
    """An Arrow type from its name as written in options: 'int64', 'string', 'date32',
    'timestamp[ms, tz=Asia/Shanghai]', 'decimal128(18, 2)'... Raises ValueError for an unknown name."""
    name = name.strip()
    if match := _TIMESTAMP_TYPE.fullmatch(name):
        return pa.timestamp(match[1], tz=match[2])
    if match := _DECIMAL_TYPE.fullmatch(name):
        return pa.decimal128(int(match[1]), int(match[2]))
    return pa.type_for_alias(name)


def read_declared_columns(columns: Any, problems: list[tuple[str, str]]) -> dict[str, pa.DataType] | None:
    """A `columns` option ({name: type name}) as Arrow types; bad entries are appended to `problems`."""
    if columns is None:
        return None
    types: dict[str, pa.DataType] = {}
    for column, type_name in columns.items():
        try:
            types[str(column)] = parse_type(str(type_name))
        except (ValueError, TypeError, KeyError):
            problems.append((f"columns.{column}", f"unknown type {type_name!r}"))
    if not columns:
        problems.append(("columns", "must name at least one column"))
    return types
