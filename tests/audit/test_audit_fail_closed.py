"""Fail closed: an action and its audit event commit together or not at all."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from audit.service import audited, record, verify_log

User = get_user_model()


def break_the_audit_table() -> None:
    """Make the next audit write hit a database error (undone when the transaction rolls back)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent RENAME TO audit_auditevent_away")


@pytest.mark.django_db
def test_action_rolls_back_when_its_audit_event_cannot_be_serialized():
    with pytest.raises(TypeError), transaction.atomic():
        User.objects.create_user("newcomer")
        record("user.create", target="user:newcomer", details={"password_hasher": object()})

    assert not User.objects.filter(username="newcomer").exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_action_rolls_back_when_the_audit_write_hits_a_database_error():
    record("test.before")
    with pytest.raises(DatabaseError), transaction.atomic():
        User.objects.create_user("newcomer")
        break_the_audit_table()
        record("user.create", target="user:newcomer")

    assert not User.objects.filter(username="newcomer").exists()
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.before"]


@pytest.mark.django_db
def test_event_rolls_back_with_the_action_and_leaves_no_gap():
    with pytest.raises(RuntimeError), transaction.atomic():
        record("user.create", target="user:first-newcomer")
        raise RuntimeError("the action failed after it was audited")

    assert not AuditEvent.objects.exists()
    assert record("user.create", target="user:second-newcomer").seq == 1


@pytest.mark.django_db
def test_audited_commits_the_action_and_its_event_together():
    with audited("user.create", actor_id="admin", details={"via": "test"}) as event:
        user = User.objects.create_user("newcomer")
        event["target"] = f"user:{user.pk}"

    stored = AuditEvent.objects.get()
    assert (stored.action, stored.target, stored.actor_id) == ("user.create", f"user:{user.pk}", "admin")
    assert stored.details == {"via": "test"}
    assert User.objects.filter(username="newcomer").exists()
    assert verify_log().ok


@pytest.mark.django_db
def test_audited_rolls_back_the_action_when_the_audit_write_fails():
    with pytest.raises(DatabaseError), audited("user.create"):
        User.objects.create_user("newcomer")
        break_the_audit_table()

    assert not User.objects.filter(username="newcomer").exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_audited_records_nothing_when_the_action_fails():
    with pytest.raises(ValueError), audited("user.create"):
        User.objects.create_user("newcomer")
        raise ValueError("refused")

    assert not User.objects.filter(username="newcomer").exists()
    assert not AuditEvent.objects.exists()
