"""The locked-down DuckDB instance that runs partner queries, and its pool of connections.

One long-lived in-memory DuckDB per process (a fresh instance costs ~15 ms and
forgets the Parquet metadata cache), configured once and then locked:

- external access off, except reading files under the store root
  (`allowed_directories`); no Python replacement scans, no extension
  autoloading or autoinstalling, no community or unsigned extensions;
- a memory limit, a thread count, a private temp directory with a size cap,
  DuckDB's own execution-time limit as a backstop above every plan's limit;
- `lock_configuration`, so SQL cannot change any of it.

Each pooled connection (a DuckDB cursor: its own session on the shared
instance) serves one query at a time; the pool size is the per-process
concurrency limit. A connection shows the query exactly the datasets it binds:
one TEMP VIEW per dataset, named by its slug, over that version's files (with
identifying columns re-keyed for the partner, see `view_sql`). Views are kept
between queries when the binding is the same and dropped when it is not.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from datasets.query.aggregate_plan import ENTITY_BIT_COLUMN, SCRATCH_TABLES
from datasets.query.bindings import IDENTIFYING_ROLES, DatasetBinding, Tier
from datasets.query.errors import Code, QueryFailed, QueryRejected, sanitize_message
from datasets.query.rekey import key_fingerprint, rekey_sql
from datasets.spec import ENTITY_BUCKET_COLUMN, entity_bucket_sql
from datasets.sql import quote_identifier, sql_literal

log = logging.getLogger("vitamin.query")

BYTES_SCANNED_METRIC = "query.total_bytes_scanned"


@dataclass(frozen=True)
class SandboxConfig:
    """Process-wide resources of the query engine (per-query limits come from the plan: `Limits`)."""

    store_root: str
    temp_directory: str
    memory_limit_bytes: int = 2 * 1024**3
    threads: int = 2
    max_temp_directory_bytes: int = 8 * 1024**3
    max_concurrent_queries: int = 4
    queue_timeout_seconds: float = 10.0
    # DuckDB's own limit: a last backstop, should the watchdog and the worker's kill both fail. A day: above any
    # plan's time limit (an admin may give a plan more than minutes; the backstop must never cut it short).
    max_execution_seconds: float = 86_400.0
    # A query worker's: the node's file of running queries (datasets.query.running). With it, a query runs
    # on `threads` only while the node has cores for that, else on one thread.
    running_queries_file: str | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent_queries < 1 or self.threads < 1:
            raise ValueError("max_concurrent_queries and threads must be at least 1")


def view_sql(binding: DatasetBinding, partner_key: bytes, *, stored_bucket: bool = False) -> str:
    """The TEMP VIEW that stands for a dataset in one partner's query.

    Open datasets: every column, identifying ones re-keyed for this partner,
    so no expression over the view can reach the published pseudonym.
    Aggregate datasets: identifier columns left out; the entity column kept
    as published, since the aggregate rules let it appear only inside COUNT
    (DISTINCT ...) and the threshold, never in output; and the entity's bucket
    as a one-bit mask (`aggregate_plan.ENTITY_BIT_COLUMN`, NULL for a NULL entity),
    which only the plan's threshold reads: from the bucket column the version
    carries (`stored_bucket`), or computed per row for a version published
    before versions carried it.
    """
    select = []
    for name, role in binding.columns.items():
        column = quote_identifier(name)
        if binding.tier is Tier.AGGREGATE:
            if role == "identifier":
                continue
            select.append(column)
            if name == binding.entity:
                bucket = quote_identifier(ENTITY_BUCKET_COLUMN) if stored_bucket else entity_bucket_sql(column)
                select.append(f"1::UBIGINT << {bucket} AS {ENTITY_BIT_COLUMN}")
        elif role in IDENTIFYING_ROLES:
            select.append(f"{rekey_sql(partner_key, column)} AS {column}")
        else:
            select.append(column)
    files = ", ".join(sql_literal(path) for path in binding.files)
    return (
        f"CREATE OR REPLACE TEMP VIEW {quote_identifier(binding.slug)} AS "
        f"SELECT {', '.join(select)} FROM read_parquet([{files}])"
    )


class Session:
    """One pooled DuckDB connection and the dataset views it currently holds."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection):
        self.cursor = cursor
        self.views: dict[str, str] = {}  # slug → what the view was built from
        self.prepared_bytes = 0  # scanned by this query's `prepare` statements
        self.scratch = False  # a `prepare` statement ran: the TEMP tables it may have made are dropped on reset

    def bind(self, bindings: Iterable[DatasetBinding], partner_key: bytes) -> None:
        """Make the connection's views exactly `bindings`, built for this partner."""
        wanted: dict[str, tuple[str, DatasetBinding]] = {}
        for binding in bindings:
            keyed = binding.tier is Tier.OPEN and binding.identifying_columns
            state = binding.fingerprint + (":" + key_fingerprint(partner_key) if keyed else "")
            wanted[binding.slug] = (state, binding)
        for slug in [slug for slug in self.views if slug not in wanted]:
            self._drop(slug)
        for slug, (state, binding) in wanted.items():
            if self.views.get(slug) == state:
                continue
            try:
                stored_bucket = binding.tier is Tier.AGGREGATE and self._has_column(binding, ENTITY_BUCKET_COLUMN)
                self.cursor.execute(view_sql(binding, partner_key, stored_bucket=stored_bucket))
            except duckdb.Error as exc:
                self._drop(slug)  # whatever stood under this name before must not stay behind
                log.error("cannot open %s v%s: %s", binding.slug, binding.version, exc)
                raise QueryFailed(
                    Code.DATASET_UNAVAILABLE,
                    f'The dataset "{binding.slug}" (version {binding.version}) is not available on this server right now.',
                ) from None
            self.views[slug] = state

    def _has_column(self, binding: DatasetBinding, name: str) -> bool:
        """Whether the version's files carry column `name` (every file of a version has one schema)."""
        if not binding.files:
            return False
        found = self.cursor.execute(
            "SELECT count(*) FROM parquet_schema(?) WHERE name = ?", [binding.files[0], name]
        ).fetchone()
        return bool(found and found[0])

    def require_same_types(self, pairs: Iterable[tuple[tuple[str, str], tuple[str, str]]]) -> None:
        """Refuse a join that compares columns of different types: the implicit cast could fail on a value."""
        for left, right in pairs:
            types = [
                self.cursor.sql(f"SELECT {quote_identifier(c)} FROM {quote_identifier(t)}").types[0]
                for t, c in (left, right)
            ]
            if str(types[0]) != str(types[1]):
                raise QueryRejected(
                    Code.JOIN_KEY_TYPE_MISMATCH,
                    f"The join compares {left[0]}.{left[1]} ({types[0]}) with {right[0]}.{right[1]} ({types[1]}); "
                    "on aggregate datasets join keys must have the same type: cast the open dataset's column "
                    "with TRY_CAST in a query over it first, or join on another key.",
                )

    def prepare(self, statements: Iterable[str]) -> None:
        """Run the plan's preparing statements (they fill TEMP tables the query then reads)."""
        self.prepared_bytes = 0
        for statement in statements:
            self.scratch = True
            self.cursor.execute(statement)
            self.prepared_bytes += self._last_scanned() or 0

    def reset(self) -> None:
        """Drop what a query left in the connection's TEMP schema, except the views.

        Only the plan's `prepare` statements make TEMP tables (a partner's statement is one SELECT), so
        a query without them left nothing to drop (three DROPs cost 0.7 ms, a tenth of a small query).
        """
        self.prepared_bytes = 0
        if not self.scratch:
            return
        self.scratch = False
        try:
            for table in SCRATCH_TABLES:
                self.cursor.execute(f"DROP TABLE IF EXISTS temp.main.{quote_identifier(table)}")
        except duckdb.Error:
            log.warning("could not drop a scratch table", exc_info=True)

    def _drop(self, slug: str) -> None:
        self.cursor.execute(f"DROP VIEW IF EXISTS temp.main.{quote_identifier(slug)}")
        self.views.pop(slug, None)

    def bytes_scanned(self) -> int | None:
        """Compressed bytes of Parquet column chunks the query scanned (None if DuckDB did not record it)."""
        scanned = self._last_scanned()
        return None if scanned is None else scanned + self.prepared_bytes

    def _last_scanned(self) -> int | None:
        """Compressed bytes of the Parquet column chunks the last statement scanned."""
        try:
            profile = json.loads(self.cursor.get_profiling_information(format="json"))
        except (duckdb.Error, ValueError):
            return None
        if not profile or profile.get("result") == "error":
            return 0 if profile else None  # a query that scanned no column chunks (e.g. COUNT(*) from metadata)
        value = profile.get(BYTES_SCANNED_METRIC) or profile.get("query", {}).get("total_bytes_scanned")
        return int(value) if value is not None else 0


class Sandbox:
    """The locked-down DuckDB instance and its connection pool."""

    def __init__(self, config: SandboxConfig):
        self.config = config
        self.store_root = os.path.realpath(config.store_root)
        os.makedirs(config.temp_directory, exist_ok=True)
        # A directory of our own: DuckDB spills here and the size cap is accounted per instance.
        self.temp_directory = tempfile.mkdtemp(prefix="duckdb-", dir=config.temp_directory)
        self._db = duckdb.connect(
            ":memory:",
            config={
                "threads": config.threads,
                "memory_limit": f"{config.memory_limit_bytes}B",
                "temp_directory": self.temp_directory,
                "max_temp_directory_size": f"{config.max_temp_directory_bytes}B",
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "allow_unsigned_extensions": False,
                "allow_persistent_secrets": False,
                "python_enable_replacements": False,
            },
        )
        db = self._db
        # GLOBAL: a plain SET of a session-scoped setting holds only for this connection, not the pooled
        # cursors (each its own session) that run the queries. Without it every query re-read the footers
        # of its files, and ran without the execution-time backstop.
        db.execute("SET GLOBAL parquet_metadata_cache = true")
        db.execute(f"SET GLOBAL max_execution_time = {int(config.max_execution_seconds * 1000)}")
        db.execute(f"SET allowed_directories = [{sql_literal(self.store_root.rstrip('/') + '/')}]")
        db.execute("SET enable_external_access = false")
        self.reserved_names = frozenset(
            name.lower()
            for (name,) in db.execute(
                "SELECT view_name FROM duckdb_views() UNION SELECT table_name FROM duckdb_tables()"
            ).fetchall()
        )
        # Distinctive setting names (memory_limit, temp_directory, ...) are scrubbed from error messages.
        self._setting_names = tuple(
            name for (name,) in db.execute("SELECT name FROM duckdb_settings()").fetchall() if "_" in name
        )
        self._pool: queue.Queue[Session] = queue.Queue()
        for _ in range(config.max_concurrent_queries):
            cursor = db.cursor()
            # Per-connection settings must be made before the configuration is locked.
            cursor.execute("SET enable_profiling = 'no_output'")
            cursor.execute(f"SET tracked_metrics = [{sql_literal(BYTES_SCANNED_METRIC)}]")
            self._pool.put(Session(cursor))
        db.execute("SET lock_configuration = true")

    def acquire(self) -> Session:
        try:
            return self._pool.get(timeout=self.config.queue_timeout_seconds)
        except queue.Empty:
            raise QueryFailed(Code.SERVER_BUSY, "The query service is busy; try again in a moment.") from None

    def release(self, session: Session) -> None:
        session.reset()
        self._pool.put(session)

    def check_files(self, binding: DatasetBinding) -> None:
        """A binding may only point inside the store root (the catalog is trusted, but not blindly)."""
        root = self.store_root.rstrip("/") + "/"
        for path in binding.files:
            if not os.path.realpath(path).startswith(root):
                log.error("%s v%s has a file outside the store root", binding.slug, binding.version)
                raise QueryFailed(
                    Code.DATASET_UNAVAILABLE,
                    f'The dataset "{binding.slug}" (version {binding.version}) is not available on this server right now.',
                )

    def sanitize(self, message: str) -> str:
        return sanitize_message(
            message, secrets=(self.store_root, self.temp_directory), setting_names=self._setting_names
        )

    def translate_error(self, exc: BaseException, *, timed_out: bool) -> QueryFailed:
        """A partner-safe `QueryFailed` for an error DuckDB (or Arrow, while streaming) raised."""
        text = str(exc)
        kind = _error_kind(exc, text)
        if kind == "INTERRUPT":
            if timed_out or "maximum execution time" in text:
                return QueryFailed(Code.TIME_LIMIT_EXCEEDED, "The query ran longer than your plan's time limit.")
            return QueryFailed(Code.QUERY_CANCELLED, "The query was cancelled.")
        if kind == "Out of Memory":
            return QueryFailed(
                Code.MEMORY_LIMIT_EXCEEDED,
                "The query needed more memory than it may use: aggregate, filter or limit before sorting or joining.",
            )
        if kind == "IO":
            log.error("query I/O error: %s", text)
            if "No space left on device" in text:  # the temp directory's disk, where the query spilled: not the data
                return QueryFailed(
                    Code.SERVER_BUSY,
                    "This server has no disk space left for the query's temporary files right now; retry later, "
                    "or aggregate or filter before sorting or joining.",
                )
            return QueryFailed(Code.DATASET_UNAVAILABLE, "A dataset file could not be read on this server right now.")
        if kind == "Permission":
            log.error("query refused by the sandbox: %s", text)
            return QueryFailed(Code.FILE_ACCESS_NOT_ALLOWED, "The query tried to reach something it may not read.")
        if kind in ("INTERNAL", "FATAL", "Fatal", "Internal") or kind is None:
            log.error("query engine error: %r", exc)
            return QueryFailed(Code.INTERNAL_ERROR, "The query engine failed; the error has been logged.")
        return QueryFailed(Code.QUERY_ERROR, self.sanitize(text))

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait().cursor.close()
        self._db.close()
        shutil.rmtree(self.temp_directory, ignore_errors=True)


_ERROR_PREFIX = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?) Error:")
_EXCEPTION_KINDS: dict[type[BaseException], str] = {
    duckdb.InterruptException: "INTERRUPT",
    duckdb.OutOfMemoryException: "Out of Memory",
    duckdb.IOException: "IO",
    duckdb.PermissionException: "Permission",
    duckdb.InternalException: "INTERNAL",
    duckdb.FatalException: "FATAL",
}


def _error_kind(exc: BaseException, text: str) -> str | None:
    """DuckDB's error class, from the exception type or (errors that crossed the Arrow stream) the message prefix."""
    for exception_type, kind in _EXCEPTION_KINDS.items():
        if isinstance(exc, exception_type):
            return kind
    match = _ERROR_PREFIX.match(text)
    if match:
        return match.group(1)
    if text.startswith("Query interrupted"):  # an interrupt that surfaced through the Arrow stream
        return "INTERRUPT"
    if isinstance(exc, duckdb.Error):
        return "Query"
    return None
