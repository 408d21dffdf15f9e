"""The one gate in front of every staff-only portal page (`staff_required`).

Anonymous visitors are sent to the site's own sign-in page (LOGIN_URL, with ?next=), not the Django
admin's; a signed-in user who is not staff is refused with PermissionDenied, which
`vitamin.errors.handler403` answers with the site's 403 page. Every staff page and staff action
uses this decorator, so none can forget a case or answer it differently.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext, gettext_noop

NOT_STAFF_MESSAGE = gettext_noop("This page is for the platform's staff. Your account is not a staff account.")


def is_staff(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def staff_required(view):
    """Let staff through; send anonymous visitors to sign in; refuse everyone else with a 403."""

    @wraps(view)
    def gated(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_staff(request.user):
            raise PermissionDenied(gettext(NOT_STAFF_MESSAGE))  # the 403 page, in the visitor's language
        return view(request, *args, **kwargs)

    return gated
