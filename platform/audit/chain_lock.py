"""The lock that serializes audit appends, and the chain's head read under it.

PostgreSQL: a transaction-scoped advisory lock, taken and followed by the head's read in one round
trip by `audit_chain_head_locked` (installed by migration 0003). The read must come after the lock
is granted, with a snapshot taken then: a plain statement's snapshot dates from its own start, before
it waited, so `SELECT pg_advisory_xact_lock(k), (SELECT ... head)` could read a head another append
had already replaced, and fork the chain. A VOLATILE function takes a fresh snapshot for each
statement it runs, so the read inside it sees every append committed before the lock was granted.

SQLite: the settings open transactions with BEGIN IMMEDIATE, so the transaction already holds the
database's single write lock, and the head is read with a plain statement.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

CHAIN_LOCK_KEY = int.from_bytes(b"vitaudit", "big")
TABLE = "audit_auditevent"
FUNCTION = "audit_chain_head_locked"

_POSTGRESQL_INSTALL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(lock_key bigint) RETURNS TABLE (head_seq bigint, head_hash text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY SELECT event.seq::bigint, event.hash::text FROM {TABLE} AS event ORDER BY event.seq DESC LIMIT 1;
END;
$$
"""

LOCKED_HEAD_SQL = f"SELECT head_seq, head_hash FROM {FUNCTION}(%s)"
HEAD_SQL = f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1"


def install(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_POSTGRESQL_INSTALL)


def drop(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}(bigint)")
