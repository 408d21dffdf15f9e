"""Lookups on every request's path, compiled to SQL once per thread and database, run with new values each time.

    TOKEN = PreparedLookup(lambda token_hash: Token.objects.select_related("client").filter(access_token_hash=token_hash))
    token = TOKEN.first(hash_secret(value))     # the same instance (and related instances) `.first()` would give

Compiling a queryset (its joins, the columns of every `select_related` model, their converters)
costs several times more Python than running the SQL it makes: about 0.5 ms of a 0.85 ms grant
lookup on SQLite. The queryset is built once with stand-in values, compiled, and its SQL kept with
the positions of the stand-ins among its parameters; each call runs that SQL with the real values
and builds the instances exactly as Django's own iterator does. Nothing read is kept: every call
queries the database, so it sees every change committed before it, like the queryset it replaces.

On PostgreSQL the statement is also prepared on the server, once per connection (psycopg's
`prepare=True`): PostgreSQL otherwise plans it again on every execution, which for the grant's
five-table join took longer than running it (1.2 ms of planning, 0.3 ms of execution). A pooler
in front of PostgreSQL must keep prepared statements per client (PgBouncer's session mode, or
`max_prepared_statements` from 1.21 on).

Values must be strings or integers (slugs, hashes, primary keys), each passed where its stand-in was.
The queryset's own ordering decides the first row; build it with `order_by`, as `.first()` would.

With `cached_by` (a function of the lookup's database alias giving a version number of what the
lookup reads, or None), the row found for given values is kept (per process, LRU) with the
number it was read under, and used again only while that function gives the same number:
`vitamin.access_generation` gives one that the database changes with every write to the tables
the access lookups join. Instances are built
anew from the kept row on every call, so no caller shares (or can change) another's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections

try:  # psycopg (3) is what requirements.txt installs for PostgreSQL; SQLite needs none of this
    from psycopg import Connection as PsycopgConnection
    from psycopg import Cursor as ServerCursor
except ImportError:  # pragma: no cover
    PsycopgConnection = ServerCursor = None
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

# Stand-ins no real value equals: a string with a NUL byte, and integers below any primary key.
_TEXT_STAND_IN = "\x00vitamin-prepared-{}"
_INT_STAND_IN = -7_000_000_000


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    slots: tuple[tuple[int, int], ...]  # (position among the SQL's parameters, index of the caller's value)
    model: type[Model]
    init_list: list[str]
    model_slice: slice
    related_populators: list
    converters: list
    width: int


CACHED_ROWS = 4096


class PreparedLookup:
    def __init__(
        self, build: Callable[..., QuerySet], *kinds: type, cached_by: Callable[[str], int | None] | None = None
    ):
        """`build(*values)` makes the queryset; `kinds` are the values' types (str or int), in order;
        `cached_by` (see the module's docstring) lets rows found be used again while it gives the same number."""
        for kind in kinds:
            if kind not in (str, int):
                raise TypeError(f"a prepared lookup takes str or int values, not {kind.__name__}")
        self._build = build
        self._kinds = kinds
        self._local = threading.local()
        self._cached_by = cached_by
        self._rows: OrderedDict[tuple, tuple[int, tuple]] = OrderedDict()  # values → (generation, row)
        self._rows_lock = threading.Lock()

    def first(self, *values: Any) -> Model | None:
        """The first instance of the queryset built with `values`, or None."""
        if len(values) != len(self._kinds):
            raise TypeError(f"expected {len(self._kinds)} values, got {len(values)}")
        checked = [kind(value) for kind, value in zip(self._kinds, values, strict=True)]
        if any(isinstance(value, str) and "\x00" in value for value in checked):
            return None  # no stored slug, hash or name holds a NUL byte
        db, compiled = self._compiled()
        connection = connections[db]
        key = tuple(checked)
        generation = self._cached_by(db) if self._cached_by is not None else None
        row = self._cached_row(key, generation)
        if row is None:
            params = list(compiled.params)
            for position, index in compiled.slots:
                params[position] = checked[index]
            row = _fetch_one(connection, compiled.sql, params)
            if row is None:
                return None
            row = tuple(row[: compiled.width])
            if generation is not None:
                self._keep(key, generation, row)
        row = list(row)
        for position, converters, expression in compiled.converters:
            value = row[position]
            for converter in converters:
                value = converter(value, expression, connection)
            row[position] = value
        instance = compiled.model.from_db(db, compiled.init_list, row[compiled.model_slice])
        for populator in compiled.related_populators:
            populator.populate(row, instance)
        return instance

    def _cached_row(self, key: tuple, generation: int | None) -> tuple | None:
        if generation is None:
            return None
        with self._rows_lock:
            kept = self._rows.get(key)
            if kept is None or kept[0] != generation:
                return None
            self._rows.move_to_end(key)
            return kept[1]

    def _keep(self, key: tuple, generation: int, row: tuple) -> None:
        with self._rows_lock:
            self._rows[key] = (generation, row)
            self._rows.move_to_end(key)
            while len(self._rows) > CACHED_ROWS:
                self._rows.popitem(last=False)

    def _template(self) -> QuerySet:
        stand_ins = [
            _TEXT_STAND_IN.format(index) if kind is str else _INT_STAND_IN - index
            for index, kind in enumerate(self._kinds)
        ]
        return self._build(*stand_ins)[:1]

    def _compiled(self) -> tuple[str, _Compiled]:
        """The database this lookup reads and its compiled form, made once per thread (a compiler holds
        the thread's connection)."""
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            template = self._template()
            compiled = self._local.compiled = (template.db, self._compile(template, template.db))
        return compiled

    def _compile(self, template: QuerySet, alias: str) -> _Compiled:
        if template.query.annotations or template._known_related_objects or template._prefetch_related_lookups:
            raise ValueError(
                "a prepared lookup takes a plain queryset (no annotations, prefetching or related manager)"
            )
        compiler = template.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        stand_ins = {
            (_TEXT_STAND_IN.format(index) if kind is str else _INT_STAND_IN - index): index
            for index, kind in enumerate(self._kinds)
        }
        slots = tuple((position, stand_ins[param]) for position, param in enumerate(params) if param in stand_ins)
        if sorted({index for _, index in slots}) != list(range(len(self._kinds))):
            raise ValueError("every value of a prepared lookup must reach the SQL as a parameter of its own")
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        width = len(select)
        converters = compiler.get_converters([column for column, _, _ in select[:width]])
        return _Compiled(
            sql=sql,
            params=tuple(params),
            slots=slots,
            model=klass_info["model"],
            init_list=[column.target.attname for column, _, _ in select[fields[0] : fields[-1] + 1]],
            model_slice=slice(fields[0], fields[-1] + 1),
            related_populators=get_related_populators(klass_info, select, alias),
            converters=[(position, convs, expression) for position, (convs, expression) in converters.items()],
            width=width,
        )


def _fetch_one(connection, sql: str, params: list) -> tuple | None:
    """The first row of `sql` run with `params` on `connection` (Django's wrapper), in its transaction."""
    with connection.cursor() as cursor:  # Django's checks: the thread, the health check, an open connection
        if PsycopgConnection is None or not isinstance(connection.connection, PsycopgConnection):
            cursor.execute(sql, params)  # SQLite (or psycopg2): as Django runs it
            return cursor.fetchone()
        started = time.monotonic()
        # Django's cursors bind values on the client, which psycopg cannot prepare; a cursor of the same
        # connection that binds on the server can, and runs in the same transaction.
        with connection.wrap_database_errors, ServerCursor(connection.connection) as prepared:
            prepared.execute(sql, params, prepare=True)
            row = prepared.fetchone()
        if connection.queries_logged:  # counted like any other query (tests, the debug toolbar)
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
        return row
