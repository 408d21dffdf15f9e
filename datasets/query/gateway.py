"""The SQL gateway: `Gateway.run` is the one function every query path calls (API, jobs, portal).

    run(sql, bindings, partner_key, limits)
      1. parse      DuckDB's parser; exactly one SELECT, else a code per statement kind   (parser)
      2. inspect    allow-listed syntax and functions; no table functions, files, catalog (checker)
      3. grants     every table a granted dataset, by bare name; no CTE masking one         (checker)
      4. tier       aggregate datasets: analysis rules checked, then planned so that groups
                    below k are dropped before any partner expression sees them (aggregate_rules, _plan)
      5. sandbox    a pooled, locked-down DuckDB connection; the datasets bound as views,
                    identifying columns re-keyed for the partner                           (sandbox, rekey)
      6. execute    watchdog for the plan's time limit, LIMIT max_result_rows + 1 for its row cap (results)
    → QueryResult, streamed by `datasets.query.formats.stream`

Grants, quotas, concurrency per institution, metering and audit are the
caller's: it decides which datasets a partner may read (the bindings) and
under which plan (the limits), and records what `QueryResult` reports
(rows, truncated, bytes_scanned). Nothing here imports Django.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasets.query import aggregate_rules
from datasets.query.bindings import DatasetBinding
from datasets.query.checker import QueryShape, check_tables, inspect
from datasets.query.errors import Code, QueryError, QueryRejected
from datasets.query.limits import Limits
from datasets.query.parser import SqlParser
from datasets.query.rekey import check_partner_key
from datasets.query.results import BoundStatement, QueryResult

if TYPE_CHECKING:
    from datasets.query.formats import Read
from datasets.query.sandbox import Sandbox, SandboxConfig, Session
from datasets.query.watchdog import Deadline, Watchdog

PARSE_CACHE_SIZE = 512
BIND_CACHE_SIZE = 512


@dataclass(frozen=True)
class CheckedQuery:
    """A statement that passed every check: the SQL to execute and the datasets it reads."""

    sql: str
    bindings: tuple[DatasetBinding, ...]
    aggregate: bool  # the aggregate rules applied: `prepare` leaves released groups only, `sql` reads them
    row_limit: int | None  # the statement's own LIMIT, when it is a plain number
    prepare: tuple[str, ...] = ()  # statements run first, on the same connection (aggregate_plan)
    join_keys: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = ()  # (slug, column) pairs of equal type


class Gateway:
    """One per process: a parser, a locked-down DuckDB instance and its connection pool."""

    def __init__(self, config: SandboxConfig):
        self._parser = SqlParser()
        self._sandbox = Sandbox(config)
        self._watchdog = Watchdog()
        # The parse and the walk depend on the text alone; repeated dashboards send the same text.
        self._shape = functools.lru_cache(maxsize=PARSE_CACHE_SIZE)(self._inspect)
        # What DuckDB's binder said about a query over given dataset versions: its columns and their types.
        self._bound: OrderedDict[tuple, BoundStatement] = OrderedDict()
        self._bound_lock = threading.Lock()

    def _inspect(self, sql: str) -> QueryShape:
        statement = self._parser.parse(sql)
        try:
            return inspect(statement)
        except RecursionError:
            raise QueryRejected(Code.QUERY_TOO_COMPLEX, "The query is nested too deeply.") from None

    def referenced_datasets(self, sql: str) -> frozenset[str]:
        """The dataset names `sql` reads (lower case), for the caller to look up grants; raises QueryRejected."""
        return self._shape(sql).dataset_names

    def cte_names(self, sql: str) -> frozenset[str]:
        """The names `sql`'s common table expressions define (lower case); raises QueryRejected."""
        return frozenset(name for name, _ in self._shape(sql).cte_names)

    def check(self, sql: str, bindings: Mapping[str, DatasetBinding]) -> CheckedQuery:
        """Every check of `run` without executing anything: for validating a job before it is queued."""
        shape = self._shape(sql)
        check_tables(shape, bindings, self._sandbox.reserved_names)
        by_name = {slug.lower(): binding for slug, binding in bindings.items()}
        used = tuple(by_name[name] for name in sorted(shape.dataset_names))
        if aggregate_rules.reads_aggregate_dataset(set(shape.dataset_names), by_name):
            plan = aggregate_rules.enforce(shape.statement, by_name, self._parser)
            return CheckedQuery(plan.answer, used, True, shape.row_limit, plan.prepare, plan.join_keys)
        return CheckedQuery(sql, used, aggregate=False, row_limit=shape.row_limit)

    def run(self, sql: str, bindings: Mapping[str, DatasetBinding], partner_key: bytes, limits: Limits) -> QueryResult:
        """`check` then `execute`: check `sql` against `bindings` (the partner's granted dataset versions, by slug) and start it."""
        return self.execute(self.check(sql, bindings), partner_key, limits)

    def execute(
        self, checked: CheckedQuery, partner_key: bytes, limits: Limits, *, read: Read | None = None
    ) -> QueryResult:
        """Start a query that `check` passed (each query is checked, and its aggregate plan made, once).

        `read` says how the result will be read (`formats.READS`): a hint that lets a query worker
        start computing at once (`IsolatedGateway`); here the first read starts it anyway.

        Raises QueryRejected (the query must change) or QueryFailed (it could not
        run now: busy, dataset unavailable, or an error DuckDB raised while
        binding it). Errors later, while rows stream, come from reading the result.
        """
        if limits.max_query_seconds <= 0 or limits.max_result_rows < 1:
            raise ValueError("a query needs a positive time limit and a row cap of at least 1")
        check_partner_key(partner_key)
        for binding in checked.bindings:
            self._sandbox.check_files(binding)
        session = self._sandbox.acquire()
        deadline = self._watchdog.arm(session.cursor, limits.max_query_seconds)
        try:
            session.bind(checked.bindings, partner_key)
            session.require_same_types(checked.join_keys)
            session.prepare(checked.prepare)
            return QueryResult(
                session=session,
                statement=self._bind(session, checked),
                own_row_limit=checked.row_limit,
                limits=limits,
                deadline=deadline,
                release=self._sandbox.release,
                translate_error=self._sandbox.translate_error,
                unfinished_bytes=sum(binding.size_bytes for binding in checked.bindings),
            )
        except QueryError:
            self._give_back(session, deadline)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever DuckDB raised while binding becomes a QueryFailed
            self._give_back(session, deadline)
            raise self._sandbox.translate_error(exc, timed_out=deadline.fired) from None

    def _bind(self, session: Session, checked: CheckedQuery) -> BoundStatement:
        """The query's columns and types: bound by DuckDB the first time (binder errors are raised here, with
        positions in the partner's text), then remembered for the same text over the same dataset versions,
        whose views (built from the fingerprinted binding) give the same types for every partner."""
        key = (checked.sql, tuple(binding.fingerprint for binding in checked.bindings))
        with self._bound_lock:
            bound = self._bound.get(key)
            if bound is not None:
                self._bound.move_to_end(key)
                return bound
        bound = BoundStatement.of(session.cursor.sql(checked.sql))
        with self._bound_lock:
            self._bound[key] = bound
            while len(self._bound) > BIND_CACHE_SIZE:
                self._bound.popitem(last=False)
        return bound

    def _give_back(self, session: Session, deadline: Deadline) -> None:
        deadline.cancel()
        self._sandbox.release(session)

    def close(self) -> None:
        self._sandbox.close()
