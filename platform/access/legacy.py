"""Databases migrated while this app was labelled `grants` are adopted under `access` before migrating.

The app was renamed (an OAuth grant type, a subscription and the access decision were all
"grants"). A database from before the rename has tables `grants_*` and migration history
under `grants`; on the first `migrate` after the rename this hook renames the tables and
moves the history and content types to `access`, in one transaction, so nothing is created
twice and no row is lost. It does nothing on any other database.

It runs from this app's `migrate` command (which wraps Django's), before Django reads the
migration history: a `pre_migrate` signal comes after the plan is made, too late.
"""

from __future__ import annotations

import logging

from django.db import connections

log = logging.getLogger("vitamin.access")

OLD_LABEL, NEW_LABEL = "grants", "access"


def adopt_grants_label(using: str = "default") -> None:
    connection = connections[using]
    tables = set(connection.introspection.table_names())
    if "django_migrations" not in tables:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT app FROM django_migrations WHERE app IN (%s, %s)", [OLD_LABEL, NEW_LABEL])
        labels = {row[0] for row in cursor.fetchall()}
    if labels != {OLD_LABEL}:
        return
    renamed = sorted(table for table in tables if table.startswith(f"{OLD_LABEL}_"))
    # The schema editor is one transaction (atomic=True); on SQLite it must open it itself.
    with connection.schema_editor(atomic=True) as editor:
        for table in renamed:
            editor.alter_db_table(None, table, NEW_LABEL + table[len(OLD_LABEL) :])
        with connection.cursor() as cursor:
            cursor.execute("UPDATE django_migrations SET app = %s WHERE app = %s", [NEW_LABEL, OLD_LABEL])
            if "django_content_type" in tables:
                cursor.execute(
                    "UPDATE django_content_type SET app_label = %s WHERE app_label = %s", [NEW_LABEL, OLD_LABEL]
                )
    log.warning("adopted the `grants` app's tables and history as `access`: %s", ", ".join(renamed))
