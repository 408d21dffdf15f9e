"""Database triggers that make the audit table append-only for every client, not just the ORM.

Installed by migration 0002. On SQLite a table rebuild (how Django's SQLite
schema editor alters a table) drops the triggers with the old table, so any later
migration that alters audit_auditevent must call `install` again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

TABLE = "audit_auditevent"
# The names used in the CREATE TRIGGER statements below.
TRIGGER_NAMES: dict[str, tuple[str, ...]] = {
    "postgresql": ("audit_event_no_update_delete", "audit_event_no_truncate"),
    "sqlite": ("audit_event_no_update", "audit_event_no_delete"),
}

_POSTGRESQL_INSTALL = [
    # No % in the message: psycopg would read it as a parameter placeholder.
    f"""
    CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = '{TABLE} is append-only: ' || TG_OP || ' refused';
    END;
    $$
    """,
    f"""
    CREATE TRIGGER audit_event_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
    """,
    # TRUNCATE skips row triggers, so it needs its own.
    f"""
    CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
    """,
]
_SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: UPDATE refused'); END
    """,
    f"""
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: DELETE refused'); END
    """,
]
_INSTALL = {"postgresql": _POSTGRESQL_INSTALL, "sqlite": _SQLITE_INSTALL}
_DROP = {
    "postgresql": [f"DROP TRIGGER IF EXISTS {name} ON {TABLE}" for name in TRIGGER_NAMES["postgresql"]]
    + ["DROP FUNCTION IF EXISTS audit_event_append_only()"],
    "sqlite": [f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGER_NAMES["sqlite"]],
}


def _run(connection: BaseDatabaseWrapper, statements_by_vendor: dict[str, list[str]]) -> None:
    try:
        statements = statements_by_vendor[connection.vendor]
    except KeyError:
        raise NotImplementedError(f"audit triggers exist for PostgreSQL and SQLite, not {connection.vendor}") from None
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(connection: BaseDatabaseWrapper) -> None:
    _run(connection, _INSTALL)


def drop(connection: BaseDatabaseWrapper) -> None:
    _run(connection, _DROP)


def installed(connection: BaseDatabaseWrapper) -> bool:
    """Whether all the triggers are in place (verify_audit reports it)."""
    if connection.vendor == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s"
    with connection.cursor() as cursor:
        cursor.execute(query, [TABLE])
        present = {name for (name,) in cursor.fetchall()}
    return set(TRIGGER_NAMES.get(connection.vendor, ("-",))) <= present


@contextmanager
def lifted(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Drop the triggers for the block and restore them after, all in one transaction.

    For `manage.py flush` (which must empty every table) and for tests that
    simulate tampering. An error inside the block rolls the drop back too, so
    the triggers are never left off.
    """
    with transaction.atomic(using=connection.alias):
        drop(connection)
        yield
        install(connection)
