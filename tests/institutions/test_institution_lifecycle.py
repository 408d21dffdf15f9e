"""Applying, approving, rejecting, suspending: history, audit events and notifications."""

from __future__ import annotations

import pytest
from django.core import mail
from partner_support import credit_code

from audit.models import AuditEvent
from institutions import lifecycle
from institutions.models import Institution, InstitutionStatus, Member, Role

pytestmark = pytest.mark.django_db(transaction=True)  # decision emails go out on commit

S = InstitutionStatus


def apply(applicant, number=10) -> Institution:
    return lifecycle.file_application(
        applicant=applicant,
        legal_name=f"Applicant {number}",
        type="bank",
        credit_code=credit_code(number),
        contact_name="Contact",
        contact_email=f"contact{number}@bank.example",
    )


def test_an_application_is_pending_with_the_applicant_as_owner(dave):
    institution = apply(dave)
    assert institution.status == S.PENDING
    assert Member.objects.get(institution=institution).role == Role.OWNER
    first = institution.status_changes.get()
    assert (first.from_status, first.to_status, first.changed_by) == ("", S.PENDING, dave)
    assert AuditEvent.objects.filter(action="institution.applied", institution=str(institution.pk)).count() == 1


def test_approval_and_rejection_are_explained_to_the_applicant(dave, olga):
    approved = apply(dave, 11)
    lifecycle.change_status(approved, S.APPROVED, reason="Licence checked.", by=olga)
    rejected = apply(dave, 12)
    lifecycle.change_status(rejected, S.CLOSED, reason="The licence number does not match.", by=olga)

    assert [message.to for message in mail.outbox] == [
        ["contact11@bank.example", "dave@bank.example"],
        ["contact12@bank.example", "dave@bank.example"],
    ]
    assert "approved" in mail.outbox[0].subject and "Licence checked." in mail.outbox[0].body
    assert "rejected" in mail.outbox[1].subject and "does not match" in mail.outbox[1].body
    change = rejected.status_changes.first()
    assert (change.from_status, change.to_status, change.changed_by, change.reason) == (
        S.PENDING,
        S.CLOSED,
        olga,
        "The licence number does not match.",
    )
    event = AuditEvent.objects.get(action="institution.status_changed", institution=str(rejected.pk))
    assert event.actor_id == olga.username and event.details["to"] == "closed"


def test_only_allowed_transitions_with_a_reason(dave, olga):
    institution = apply(dave)
    with pytest.raises(lifecycle.StatusChangeError, match="reason"):
        lifecycle.change_status(institution, S.APPROVED, reason="  ", by=olga)
    with pytest.raises(lifecycle.StatusChangeError, match="cannot go from Pending review to Suspended"):
        lifecycle.change_status(institution, S.SUSPENDED, reason="x", by=olga)
    lifecycle.change_status(institution, S.CLOSED, reason="Withdrawn.", by=olga)
    for target in (S.APPROVED, S.PENDING, S.SUSPENDED):
        with pytest.raises(lifecycle.StatusChangeError):
            lifecycle.change_status(institution, target, reason="x", by=olga)
    assert Institution.objects.get(pk=institution.pk).status == S.CLOSED
    assert institution.status_changes.count() == 2


def test_suspension_and_reinstatement_keep_the_full_history(fund, olga):
    lifecycle.change_status(fund, S.SUSPENDED, reason="Audit findings.", by=olga)
    lifecycle.change_status(fund, S.APPROVED, reason="Findings resolved.", by=olga)
    history = list(fund.status_changes.order_by("pk").values_list("from_status", "to_status", "reason"))
    assert history == [
        ("", S.PENDING, "Application filed."),
        (S.PENDING, S.APPROVED, "Approved for the test."),
        (S.APPROVED, S.SUSPENDED, "Audit findings."),
        (S.SUSPENDED, S.APPROVED, "Findings resolved."),
    ]
    assert len(mail.outbox) == 1  # only the decision on the application is mailed
