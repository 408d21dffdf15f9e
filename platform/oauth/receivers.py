"""How OAuth reacts to changes in institutions: suspension, closure and member removal end access at once."""

from __future__ import annotations

from django.dispatch import receiver
from django.utils import timezone

from audit.actors import by_system
from audit.service import record
from institutions.models import InstitutionStatus
from institutions.signals import member_removed, status_changed
from oauth.models import AuthorizationCode, Token

_STOPPED = {InstitutionStatus.SUSPENDED, InstitutionStatus.CLOSED}


@receiver(status_changed, dispatch_uid="oauth.revoke_on_suspension")
def revoke_on_suspension(sender, institution, from_status, to_status, **kwargs):
    """Tokens and pending codes die with the suspension, so reinstatement brings back the clients only."""
    if to_status not in _STOPPED:
        return
    revoked = Token.objects.filter(client__institution=institution).revoke(f"institution_{to_status}")
    AuthorizationCode.objects.filter(client__institution=institution, used_at__isnull=True).update(
        expires_at=timezone.now()
    )
    record(
        "oauth.institution_tokens_revoked",
        **by_system(institution.pk),
        target=f"institution:{institution.pk}",
        details={"tokens_revoked": revoked, "status": to_status},
    )


@receiver(member_removed, dispatch_uid="oauth.revoke_on_member_removal")
def revoke_on_member_removal(sender, institution, user, **kwargs):
    """Tools that acted for a person stop when the person leaves the institution."""
    revoked = Token.objects.filter(client__institution=institution, user=user).revoke("member_removed")
    record(
        "oauth.member_tokens_revoked",
        **by_system(institution.pk),
        target=f"user:{user.get_username()}",
        details={"tokens_revoked": revoked},
    )
