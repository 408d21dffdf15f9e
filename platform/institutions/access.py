"""Who may see and manage an institution on the portal: one boolean check, one raising check."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _

from institutions.models import MANAGER_ROLES, Institution, Member


def membership(user, institution: Institution) -> Member | None:
    if not user.is_authenticated:
        return None
    return Member.objects.filter(user=user, institution=institution).first()


def ensure_member(user, institution: Institution, roles=None) -> Member | None:
    """Return the membership, or raise PermissionDenied. Staff may view (roles=None) without one."""
    member = membership(user, institution)
    if member is not None and (roles is None or member.role in roles):
        return member
    if roles is None and user.is_authenticated and user.is_staff:
        return None
    raise PermissionDenied(_("You are not allowed to do this for this institution."))


def ensure_manager(user, institution: Institution) -> Member:
    """Owners and admins manage members, clients and registration tokens."""
    return ensure_member(user, institution, MANAGER_ROLES)
