"""Audit events cannot be changed or removed: not through the ORM, not with raw SQL."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audit import triggers
from audit.models import AppendOnlyError, AuditEvent
from audit.service import record, verify_log


def stored_rows() -> list[tuple]:
    return list(AuditEvent.objects.order_by("seq").values_list("seq", "target", "hash"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "attempt",
    [
        lambda event: event.save(),
        lambda event: event.delete(),
        lambda event: AuditEvent.objects.filter(seq=event.seq).update(target="forged"),
        lambda event: AuditEvent.objects.all().delete(),
        lambda event: AuditEvent.objects.bulk_update([event], ["target"]),
        lambda event: AuditEvent.objects.create(seq=99, action="forged", prev_hash="f" * 64, hash="e" * 64),
        lambda event: AuditEvent.objects.bulk_create([AuditEvent(seq=99, action="forged")]),
        lambda event: AuditEvent.objects.update_or_create(seq=event.seq, defaults={"target": "forged"}),
    ],
    ids=["save", "delete", "update", "queryset-delete", "bulk-update", "create", "bulk-create", "update-or-create"],
)
def test_the_orm_refuses_to_change_history(make_chain, attempt):
    events = make_chain(3)
    before = stored_rows()
    events[1].target = "forged"

    with pytest.raises(AppendOnlyError):
        attempt(events[1])

    assert stored_rows() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET target = 'forged' WHERE seq = 2",
        "UPDATE audit_auditevent SET outcome = 'success'",
        "DELETE FROM audit_auditevent WHERE seq = 3",
        "DELETE FROM audit_auditevent",
    ],
)
def test_the_database_refuses_raw_updates_and_deletes(make_chain, statement):
    make_chain(3)
    before = stored_rows()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)

    assert stored_rows() == before
    assert verify_log().ok


@pytest.mark.django_db
def test_emptying_the_table_at_once_is_refused(make_chain):
    make_chain(2)
    # PostgreSQL's TRUNCATE bypasses row triggers; SQLite's equivalent is an unqualified DELETE
    # (its "truncate optimization", which a trigger on the table turns off).
    statement = "TRUNCATE audit_auditevent" if connection.vendor == "postgresql" else "DELETE FROM audit_auditevent"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)

    assert AuditEvent.objects.count() == 2


@pytest.mark.django_db
def test_the_triggers_are_installed_by_the_migrations():
    assert triggers.installed(connection)


@pytest.mark.django_db
def test_lifted_triggers_come_back_even_when_the_block_fails(make_chain):
    make_chain(1)
    with pytest.raises(RuntimeError), triggers.lifted(connection):
        assert not triggers.installed(connection)
        raise RuntimeError("tampering went wrong")

    assert triggers.installed(connection)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent")


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_log_and_keeps_it_append_only(make_chain):
    make_chain(3)

    call_command("flush", interactive=False, verbosity=0)

    assert not AuditEvent.objects.exists()
    assert triggers.installed(connection)
    event = record("test.after_flush")
    assert event.seq == 1
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent")
