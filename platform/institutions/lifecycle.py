"""The one place an institution's status changes: history row, audit event, signal, email.

Other apps react through the `status_changed` signal instead of being called from
here (the OAuth app revokes tokens when an institution is suspended or closed), so
this app does not depend on them.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from audit.actors import by_user_or_system
from audit.service import record
from institutions import emails
from institutions.models import Institution, InstitutionStatus, InstitutionStatusChange, Member, Role
from institutions.signals import status_changed

S = InstitutionStatus

ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.PENDING: {S.APPROVED, S.CLOSED},  # approve, or reject the application
    S.APPROVED: {S.SUSPENDED, S.CLOSED},
    S.SUSPENDED: {S.APPROVED, S.CLOSED},  # reinstate, or close for good
    S.CLOSED: set(),
}


class StatusChangeError(ValueError):
    """The requested change is not allowed from the institution's current status."""


def change_status(
    institution: Institution,
    to_status: str,
    *,
    reason: str,
    by: AbstractBaseUser | None = None,
    request=None,
) -> InstitutionStatusChange:
    reason = (reason or "").strip()
    if not reason:
        raise StatusChangeError("A reason is required for every status change.")
    with transaction.atomic():
        # Lock the row so two admins acting at once cannot both apply a change from the same status.
        current = Institution.objects.select_for_update().get(pk=institution.pk)
        from_status = current.status
        if to_status not in ALLOWED_TRANSITIONS[from_status]:
            raise StatusChangeError(
                f"{current.legal_name} cannot go from {S(from_status).label} to {S(to_status).label}."
            )
        current.status = to_status
        current.save(update_fields=["status"])
        change = InstitutionStatusChange.objects.create(
            institution=current, from_status=from_status, to_status=to_status, changed_by=by, reason=reason
        )
        record(
            "institution.status_changed",
            **by_user_or_system(by, current.pk),
            target=f"institution:{current.pk}",
            details={"from": from_status, "to": to_status, "reason": reason},
            request=request,
        )
        status_changed.send(sender=Institution, institution=current, from_status=from_status, to_status=to_status)
    institution.status = to_status
    if from_status == S.PENDING:
        transaction.on_commit(
            lambda: emails.send_application_decision(current, approved=to_status == S.APPROVED, reason=reason)
        )
    return change


def file_application(*, applicant: AbstractBaseUser | None, request=None, **fields) -> Institution:
    """An institution applies (on the portal, or by an admin's command): it starts pending,
    with the applicant, if any, as its owner."""
    with transaction.atomic():
        institution = Institution.objects.create(applicant=applicant, status=S.PENDING, **fields)
        if applicant is not None:
            Member.objects.create(user=applicant, institution=institution, role=Role.OWNER)
        InstitutionStatusChange.objects.create(
            institution=institution, to_status=S.PENDING, changed_by=applicant, reason="Application filed."
        )
        record(
            "institution.applied",
            **by_user_or_system(applicant, institution.pk),
            target=f"institution:{institution.pk}",
            details={"legal_name": institution.legal_name, "type": institution.type},
            request=request,
        )
    return institution
