"""The build: connector stream → transform → anonymize → write Parquet to staging → validate → report.

`build()` is a pure function of its arguments (spec, connector, master key,
release, store, scratch directory, limits): no settings, no globals, no Django.
It returns a `BuildResult` describing the staged files; nothing is visible to
partners until `datasets.publish.publish()` moves them into place and the caller
marks the version published. Any failure, including a privacy check that does
not pass, deletes the staging directory and raises.

Each build gets its own in-memory DuckDB with a memory limit, a temp directory
inside the caller's scratch directory (it spills there), two threads, the
session time zone of the spec, no access to Python variables by name, and
external access switched off except for the output, temp and staged-rows
directories; its configuration is then locked. The transform
SQL of a spec is trusted (specs are reviewed files), but it still cannot read
or write files elsewhere.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs

from connectors.base import DEFAULT_BATCH_ROWS, Connector
from datasets.anonymize import PseudonymKey, anonymize, install_reference_tables
from datasets.privacy import PrivacyReport, install_identifier_macros, privacy_report
from datasets.profile import ColumnStats, parquet_schema, profile, schema_hash
from datasets.publish import Staging, discard
from datasets.spec import ENTITY_BUCKET_COLUMN, DatasetSpec, entity_bucket_sql
from datasets.sql import quote_identifier, sql_literal
from datasets.storage import Store

DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_THREADS = 2
DEFAULT_ROW_GROUP_ROWS = 122_880  # DuckDB's own row group size: good pruning, good compression
# Level 1, not 3: on the demo data it writes ~1.5x faster at about the same size (hex pseudonyms barely compress).
ZSTD_LEVEL = 1
MAX_FILE_BYTES = "512MB"  # larger outputs are split into part-0, part-1, ...
# Spec column type → the Arrow type of that column in the written Parquet.
ARROW_TYPES = {
    "string": "string",
    "int32": "int32",
    "int64": "int64",
    "float64": "double",
    "boolean": "bool",
    "date": "date32[day]",
    "timestamp": "timestamp[us]",
    "timestamptz": "timestamp[us, tz=UTC]",
}
_HASH_CHUNK_BYTES = 4 * 1024 * 1024


class BuildError(Exception):
    """The build failed; nothing was published and its staging directory is gone."""


class PrivacyViolation(BuildError):
    """The written output failed the privacy checks (`report.problems` says how)."""

    def __init__(self, report: PrivacyReport):
        self.report = report
        super().__init__("privacy check failed: " + "; ".join(report.problems))


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the version directory
    size_bytes: int
    sha256: str
    index: str | None = None  # a lookup key's index file (that key column → the primary key), not data rows

    def to_dict(self) -> dict:
        entry = {"path": self.path, "size_bytes": self.size_bytes, "sha256": self.sha256}
        return entry if self.index is None else {**entry, "index": self.index}


@dataclass(frozen=True)
class BuildResult:
    slug: str
    release: str
    staging: Staging
    files: tuple[DataFile, ...]
    row_count: int
    schema: tuple[dict[str, str], ...]
    schema_hash: str
    column_stats: dict[str, ColumnStats]
    privacy: PrivacyReport
    content_hash: str  # same rows and schema → same hash: a refresh with this hash can be skipped
    source_rows: int
    source_watermark: str | None
    spec_fingerprint: str

    @property
    def build_id(self) -> str:
        return self.staging.build_id

    @property
    def size_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self.files)

    def to_dict(self) -> dict:
        """JSON-safe summary for the version row (everything but the staging location)."""
        return {
            "slug": self.slug,
            "release": self.release,
            "build_id": self.build_id,
            "files": [entry.to_dict() for entry in self.files],
            "row_count": self.row_count,
            "size_bytes": self.size_bytes,
            "schema": list(self.schema),
            "schema_hash": self.schema_hash,
            "column_stats": {name: stats.to_dict() for name, stats in self.column_stats.items()},
            "privacy": self.privacy.to_dict(),
            "content_hash": self.content_hash,
            "source_rows": self.source_rows,
            "source_watermark": self.source_watermark,
            "spec_fingerprint": self.spec_fingerprint,
        }


def connector_for(spec: DatasetSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Connector:
    """The connector a spec's `source` names (from the connector registry)."""
    from connectors.registry import get_connector  # the registry imports every connector: only load it when used

    return get_connector(spec.source.kind, spec.source.options, batch_rows=batch_rows)


def reference_connectors(spec: DatasetSpec) -> dict[str, Connector]:
    """The connectors of a spec's `references`, by the table name the transform reads each as."""
    from connectors.registry import get_connector

    return {name: get_connector(source.kind, source.options) for name, source in spec.references.items()}


def build(
    spec: DatasetSpec,
    connector: Connector,
    *,
    references: Mapping[str, Connector] | None = None,
    master_key: bytes,
    release: str,
    store: Store,
    scratch_dir: str | Path,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int = DEFAULT_THREADS,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    on_progress: Callable[[int], None] | None = None,
) -> BuildResult:
    """Build one version of `spec` from `connector` into a staging directory of `store`.

    `on_progress(rows_read)` is called after every source batch, from the thread
    DuckDB reads the source on; an exception raised from it cancels the build.
    `master_key` is the pseudonym master secret and `release` the key epoch
    (see docs/privacy.md). `references` are the connectors of the spec's
    reference tables (default: `reference_connectors(spec)`); each is read whole
    and registered under its name before the transform runs.
    """
    if references is None:
        references = reference_connectors(spec)
    if set(references) != set(spec.references):
        raise BuildError(
            f"{spec.slug}: references given for {sorted(references)}, the spec has {sorted(spec.references)}"
        )
    key = PseudonymKey.derive(master_key, spec.slug, release)
    scratch = Path(scratch_dir) / f"build-{uuid.uuid4().hex}"
    staging = Staging.create(store, spec.slug)
    try:
        scratch.mkdir(parents=True)
        output_dir = Path(staging.path) if store.is_local else scratch / "out"
        output_dir.mkdir(parents=True, exist_ok=True)
        rows_dir = scratch / "rows"  # the anonymizer's staged rows
        rows_dir.mkdir()
        source = _CountedSource(connector, on_progress)
        with _connect(spec, scratch / "duckdb_tmp", output_dir, rows_dir, memory_limit, threads) as con:
            relation_sql = spec.transform or "SELECT * FROM source"
            for name, reference in references.items():  # a ConnectorError propagates: it may be transient
                con.register(name, pa.Table.from_batches(list(reference.batches()), schema=reference.schema()))
            source_columns = _source_columns(con, connector.schema(), relation_sql)
            _check_source_columns(spec, source_columns)
            con.register("source", source.reader())
            try:
                anonymized = anonymize(con, spec, key, relation_sql, scratch_dir=rows_dir)
                row_group_rows = spec.row_group_rows or row_group_rows
                _write_parquet(con, spec, anonymized.view, output_dir, row_group_rows)
                anonymized.drop(con)
            except duckdb.Error as exc:
                source.raise_error()  # the connector's (or on_progress's) own exception, when it caused this
                raise BuildError(f"{spec.slug}: {exc}") from exc
            paths = sorted(str(path) for path in output_dir.rglob("*.parquet"))
            written = f"read_parquet({_sql_list(paths)}, hive_partitioning = false)"
            if spec.bucketed_entity:  # what the checks below see: the spec's columns only
                written = f"(SELECT * EXCLUDE ({quote_identifier(ENTITY_BUCKET_COLUMN)}) FROM {written})"
            if not paths or con.execute(f"SELECT count(*) FROM {written}").fetchall()[0][0] == 0:
                raise BuildError(
                    f"{spec.slug}: no rows to publish ({anonymized.rows_in} rows before k-anonymity suppression)"
                )
            schema = _validate(con, spec, paths, written)
            digest = schema_hash(schema)
            published = [column.name for column in spec.published_columns]
            withheld = {c.name for c in spec.published_columns if c.pseudonymized or c.role == "sensitive"}
            described = profile(con, written, published, withhold_extremes=withheld, schema_digest=digest)
            report = privacy_report(con, written, spec, rows_in=anonymized.rows_in, source_columns=source_columns)
            if not report.passed:
                raise PrivacyViolation(report)
            indexes = _write_lookup_indexes(con, spec, written, output_dir, row_group_rows)
        files = tuple(_describe_file(output_dir, Path(path)) for path in paths)
        files += tuple(_describe_file(output_dir, path, index=column) for column, path in indexes.items())
        if not store.is_local:
            pafs.copy_files(
                str(output_dir), staging.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=store.fs
            )
        return BuildResult(
            slug=spec.slug,
            release=release,
            staging=staging,
            files=files,
            row_count=report.rows_published,
            schema=tuple(schema),
            schema_hash=digest,
            column_stats=described.column_stats,
            privacy=report,
            content_hash=described.content_hash,
            source_rows=source.rows,
            source_watermark=connector.watermark(),
            spec_fingerprint=spec.fingerprint,
        )
    except BaseException:
        discard(staging)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _CountedSource:
    """The connector's batches, counted for progress; remembers an exception raised while DuckDB pulled them."""

    def __init__(self, connector: Connector, on_progress: Callable[[int], None] | None):
        self.connector = connector
        self.on_progress = on_progress
        self.rows = 0
        self.error: BaseException | None = None

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.connector.schema(), self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self.connector.batches():
                self.rows += batch.num_rows
                if self.on_progress is not None:
                    self.on_progress(self.rows)
                yield batch
        except BaseException as exc:
            self.error = exc  # DuckDB reports it as its own error; the build re-raises the original
            raise

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class _connect:
    """A hardened, single-use DuckDB connection for one build."""

    def __init__(
        self, spec: DatasetSpec, temp_dir: Path, output_dir: Path, rows_dir: Path, memory_limit: str, threads: int
    ):
        temp_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(
            ":memory:",
            config={
                "threads": threads,
                "memory_limit": memory_limit,
                "temp_directory": str(temp_dir),
                "preserve_insertion_order": False,  # ORDER BY still orders; unordered writes go parallel
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "python_enable_replacements": False,  # SQL sees only what the build registers, not Python variables
            },
        )
        try:
            self.con.execute(f"SET TimeZone = {sql_literal(spec.time_zone)}")
            install_reference_tables(self.con)
            install_identifier_macros(self.con)
            # The output directory itself (COPY checks it) and everything below it, the temp and the rows directory.
            self.con.execute("SET allowed_paths = $paths", {"paths": [str(output_dir)]})
            directories = [f"{output_dir}/", f"{temp_dir}/", f"{rows_dir}/"]
            self.con.execute("SET allowed_directories = $dirs", {"dirs": directories})
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
        except BaseException:
            self.con.close()
            raise

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def __exit__(self, *exc_info) -> None:
        self.con.close()


def _source_columns(con: duckdb.DuckDBPyConnection, schema: pa.Schema, relation_sql: str) -> list[str]:
    """Columns of the source relation (after the transform), found by binding it over an empty table."""
    con.register("source", schema.empty_table())
    try:
        return [row[0] for row in con.execute(f"DESCRIBE {relation_sql}").fetchall()]
    except duckdb.Error as exc:
        raise BuildError(f"transform does not run over the source: {exc}") from exc
    finally:
        con.unregister("source")


def _check_source_columns(spec: DatasetSpec, source_columns: list[str]) -> None:
    available = set(source_columns)
    missing = sorted(
        {c.source for c in spec.published_columns if c.source not in available}
        | {
            name
            for c in spec.published_columns
            if c.generalize
            for name in c.generalize.referenced_columns
            if name not in available
        }
    )
    if missing:
        raise BuildError(
            f"{spec.slug}: the source has no column {', '.join(missing)} (it has {', '.join(source_columns)})"
        )


def _write_parquet(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, view: str, output_dir: Path, row_group_rows: int
) -> None:
    order = f" ORDER BY {', '.join(quote_identifier(name) for name in spec.sort_by)}" if spec.sort_by else ""
    options = [
        "FORMAT parquet",
        "COMPRESSION zstd",
        f"COMPRESSION_LEVEL {ZSTD_LEVEL}",
        f"ROW_GROUP_SIZE {int(row_group_rows)}",
        f"FILE_SIZE_BYTES '{MAX_FILE_BYTES}'",
        "FILENAME_PATTERN 'part-{i}'",
        "OVERWRITE_OR_IGNORE true",  # the staging directory exists already (it holds the _build marker)
    ]
    if spec.partitioning:
        options += [
            f"PARTITION_BY ({', '.join(quote_identifier(name) for name in spec.partitioning)})",
            "WRITE_PARTITION_COLUMNS true",
        ]
    columns = "*"
    if spec.bucketed_entity:
        bucket = entity_bucket_sql(quote_identifier(spec.bucketed_entity))
        columns += f", {bucket} AS {quote_identifier(ENTITY_BUCKET_COLUMN)}"
    con.execute(f"COPY (SELECT {columns} FROM {view}{order}) TO {sql_literal(str(output_dir))} ({', '.join(options)})")


def _validate(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, paths: list[str], written: str
) -> list[dict[str, str]]:
    """The written schema must be exactly the spec's published columns and types (and, on the aggregate tier, the
    entity bucket); a lookup key must be unique."""
    try:
        schema = parquet_schema(paths)
    except ValueError as exc:
        raise BuildError(f"{spec.slug}: {exc}") from exc
    expected = {column.name: ARROW_TYPES[column.type] for column in spec.published_columns}
    if spec.bucketed_entity:
        expected[ENTITY_BUCKET_COLUMN] = "uint8"
    actual = {entry["name"]: entry["type"] for entry in schema}
    if actual != expected:
        differences = sorted(
            f"{name}: expected {expected.get(name, 'no column')}, written {actual.get(name, 'no column')}"
            for name in expected.keys() | actual.keys()
            if expected.get(name) != actual.get(name)
        )
        raise BuildError(f"{spec.slug}: written schema differs from the spec: {'; '.join(differences)}")
    if spec.lookup is not None:
        for position, name in enumerate(spec.lookup.keys):
            key = quote_identifier(name)
            duplicates, nulls = con.execute(
                f"SELECT count({key}) - count(DISTINCT {key}), count(*) - count({key}) FROM {written}"
            ).fetchone()
            nulls = nulls if position == 0 else 0  # a customer may lack a secondary identifier
            if duplicates or nulls:
                raise BuildError(f"{spec.slug}: lookup key {name} has {duplicates} duplicate and {nulls} NULL value(s)")
    order = {column.name: index for index, column in enumerate(spec.published_columns)}
    return sorted((entry for entry in schema if entry["name"] in order), key=lambda entry: order[entry["name"]])


LOOKUP_INDEX_DIR = "_lookup"


def _write_lookup_indexes(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, written: str, output_dir: Path, row_group_rows: int
) -> dict[str, Path]:
    """For each secondary lookup key, a file of (key, primary key) sorted by the key: a point read finds the
    customer's primary key there, then the row in the data files, which are sorted by the primary key."""
    if spec.lookup is None or len(spec.lookup.keys) < 2:
        return {}
    primary = quote_identifier(spec.lookup.primary_key)
    (output_dir / LOOKUP_INDEX_DIR).mkdir(exist_ok=True)
    indexes = {}
    for name in spec.lookup.keys[1:]:
        path = output_dir / LOOKUP_INDEX_DIR / f"{name}.parquet"
        key = quote_identifier(name)
        con.execute(
            f"COPY (SELECT {key}, {primary} FROM {written} WHERE {key} IS NOT NULL ORDER BY {key})"
            f" TO {sql_literal(str(path))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {int(row_group_rows)})"
        )
        indexes[name] = path
    return indexes


def _describe_file(root: Path, path: Path, *, index: str | None = None) -> DataFile:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return DataFile(
        path=path.relative_to(root).as_posix(), size_bytes=path.stat().st_size, sha256=digest.hexdigest(), index=index
    )


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join(sql_literal(item) for item in items) + "]"
