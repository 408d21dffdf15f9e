"""`manage.py flush`, which must also empty the append-only audit table.

Django's flush deletes every row (DELETE on SQLite, TRUNCATE on PostgreSQL),
which the audit triggers refuse. This override lifts them for the flush and
restores them in the same transaction. Django's test cases flush the database
between transactional tests through this command too.

Anyone who can run flush can drop the triggers anyway; the triggers guard
against everyday clients, not the database owner (see docs/audit.md).
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush
from django.db import connections

from audit import triggers


class Command(flush.Command):
    help = flush.Command.help + " The audit log's append-only triggers are lifted for the flush and then restored."

    def handle(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if triggers.TABLE not in connection.introspection.table_names():  # audit app not migrated yet
            return super().handle(**options)
        with triggers.lifted(connection):
            super().handle(**options)
