"""The access generation: cache what every request reads to decide access, and still see each change at once.

    lookup = PreparedLookup(build, str, cached_by=generation.current)   # vitamin.prepared

Every partner request reads its token (with client, institution and user), its subscription
(with plan, dataset and pinned version) and the dataset's latest version: three joins, on
PostgreSQL three round trips. `access_accessgeneration` holds one number that database triggers
set to a new random value on every INSERT, UPDATE or DELETE (and TRUNCATE, on PostgreSQL) of the
tables those reads join (`TABLES`), in the writer's own transaction, whatever writes: the ORM, a
queryset update, the admin, raw SQL. A request reads that number once (one primary-key read, remembered for the
request); a cached row is used only when it was read under the same number, so a revocation, a
suspension, a new version or a changed plan is seen by the next request, as without the cache.
Expiry is not a write: it is compared with the clock at every use, from the row.

Fail-safe: no row (a flushed database) or missing triggers (checked once per process, and after
every `migrate`, which reinstalls them: SQLite drops a table's triggers when a migration rebuilds
it) mean no caching, never stale answers.
"""

from __future__ import annotations

import logging
import threading

from django.db import DEFAULT_DB_ALIAS, connections

from vitamin import request_context

log = logging.getLogger("vitamin.access")

GENERATION_TABLE = "access_accessgeneration"
TABLES = (
    "oauth_token",
    "oauth_client",
    "institutions_institution",
    "auth_user",
    "access_subscription",
    "access_quotaplan",
    "catalog_dataset",
    "catalog_datasetversion",
)
_OPERATIONS = ("INSERT", "UPDATE", "DELETE")
# A new random number, not value + 1: a transaction rolled back (its number with it) and a later one
# must never meet at the same number with different rows behind it.
_BUMP = {
    "postgresql": f"UPDATE {GENERATION_TABLE} SET value = floor(random() * 4611686018427387904)::bigint WHERE id = 1",
    "sqlite": f"UPDATE {GENERATION_TABLE} SET value = random() WHERE id = 1",
}


def _trigger_name(table: str, operation: str = "") -> str:
    return f"access_generation_{table}" + (f"_{operation.lower()}" if operation else "")


def _install_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        statements = [
            f"""
            CREATE OR REPLACE FUNCTION access_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {_BUMP[vendor]}; RETURN NULL; END;
            $$
            """
        ]
        statements += [
            f"""
            CREATE OR REPLACE TRIGGER {_trigger_name(table)} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION access_generation_bump()
            """
            for table in TABLES
        ]
        return statements
    if vendor == "sqlite":  # dropped and made again, so a changed body replaces the old one
        return [
            statement
            for table in TABLES
            for operation in _OPERATIONS
            for statement in (
                f"DROP TRIGGER IF EXISTS {_trigger_name(table, operation)}",
                f"CREATE TRIGGER {_trigger_name(table, operation)} AFTER {operation} ON {table} "
                f"BEGIN {_BUMP[vendor]}; END",
            )
        ]
    raise NotImplementedError(f"access generation triggers exist for PostgreSQL and SQLite, not {vendor}")


def expected_triggers(vendor: str) -> set[str]:
    if vendor == "postgresql":
        return {_trigger_name(table) for table in TABLES}
    return {_trigger_name(table, operation) for table in TABLES for operation in _OPERATIONS}


def install(connection) -> None:
    """Create the triggers (idempotent: run by the migration and after every `migrate`)."""
    with connection.cursor() as cursor:
        for statement in _install_statements(connection.vendor):
            cursor.execute(statement)


def drop(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in TABLES:
                cursor.execute(f"DROP TRIGGER IF EXISTS {_trigger_name(table)} ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS access_generation_bump()")
        else:
            for name in expected_triggers(connection.vendor):
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


def installed(connection) -> bool:
    """Whether every trigger is in place."""
    if connection.vendor == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'access_generation_%'"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'access_generation_%'"
    with connection.cursor() as cursor:
        cursor.execute(query)
        present = {name for (name,) in cursor.fetchall()}
    return expected_triggers(connection.vendor) <= present


# Per database alias: whether this process found the triggers in place (checked once).
_verified: dict[str, bool] = {}
_verified_lock = threading.Lock()


def current(using: str = DEFAULT_DB_ALIAS) -> int | None:
    """The generation of database `using` now, read once per request (None: do not cache)."""
    return request_context.scoped(("access-generation", using), lambda: _read(using))


def forget_verification() -> None:
    """Check the triggers again at the next read (after `migrate` reinstalled them, and in tests)."""
    with _verified_lock:
        _verified.clear()


def _read(alias: str) -> int | None:
    connection = connections[alias]
    with _verified_lock:
        verified = _verified.get(alias)
    if verified is None:
        verified = installed(connection)
        if not verified:
            log.error("access generation triggers are missing: access reads are not cached (run manage.py migrate)")
        with _verified_lock:
            _verified[alias] = verified
    if not verified:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value FROM {GENERATION_TABLE} WHERE id = 1")  # noqa: S608 - our table's name
        row = cursor.fetchone()
    return None if row is None else int(row[0])
