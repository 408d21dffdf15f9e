"""Joining and leaving an institution: invitations by signed email link, removal."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit.actors import by_user
from audit.service import record
from institutions import emails, links
from institutions.models import Institution, Invitation, Member, Role
from institutions.signals import member_removed


class MembershipError(ValueError):
    """The change is not allowed: a bad, expired or used invitation, the wrong account, the last owner."""


def invite(institution: Institution, *, email: str, role: str, by, request=None) -> Invitation:
    if role == Role.OWNER and not Member.objects.filter(user=by, institution=institution, role=Role.OWNER).exists():
        raise MembershipError("Only an owner can invite another owner.")
    invitation = Invitation.objects.create(
        institution=institution, email=email.strip().lower(), role=role, invited_by=by
    )
    record(
        "institution.member_invited",
        **by_user(by, institution.pk),
        target=f"invitation:{invitation.pk}",
        details={"email": invitation.email, "role": role},
        request=request,
    )
    emails.send_invitation(request, invitation)
    return invitation


def invitation_from_token(token: str) -> Invitation:
    try:
        payload = links.read_token(token, salt=links.INVITATION_SALT, max_age_seconds=links.INVITATION_MAX_AGE_SECONDS)
    except links.BadLink as exc:
        raise MembershipError(str(exc)) from None
    invitation = Invitation.objects.select_related("institution").filter(pk=payload.get("invitation")).first()
    if invitation is None:
        raise MembershipError("This invitation was withdrawn.")
    return invitation


def accept(invitation: Invitation, user, *, request=None) -> Member:
    """The invited person joins. The link is bound to the invited address, so a forwarded link is useless."""
    if user.email.lower() != invitation.email:
        raise MembershipError(f"This invitation is for {invitation.email}; you are signed in as {user.email}.")
    with transaction.atomic():
        claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
            accepted_at=timezone.now(), accepted_by=user
        )
        if not claimed:
            raise MembershipError("This invitation has already been used.")
        member, created = Member.objects.get_or_create(
            user=user, institution=invitation.institution, defaults={"role": invitation.role}
        )
        if not created:
            raise MembershipError(f"You are already a member of {invitation.institution.legal_name}.")
        record(
            "institution.member_joined",
            **by_user(user, invitation.institution_id),
            target=f"member:{member.pk}",
            details={"role": member.role, "invitation": invitation.pk},
            request=request,
        )
    return member


def remove(member: Member, *, by, request=None) -> None:
    institution = member.institution
    if (
        member.role == Role.OWNER
        and not Member.objects.filter(user=by, institution=institution, role=Role.OWNER).exists()
    ):
        raise MembershipError("Only an owner can remove an owner.")
    if (
        member.role == Role.OWNER
        and not Member.objects.filter(institution=institution, role=Role.OWNER).exclude(pk=member.pk).exists()
    ):
        raise MembershipError("An institution must keep at least one owner.")
    with transaction.atomic():
        member.delete()
        member_removed.send(sender=Member, institution=institution, user=member.user)
        record(
            "institution.member_removed",
            **by_user(by, institution.pk),
            target=f"user:{member.user_id}",
            details={"role": member.role},
            request=request,
        )
