"""Signed, expiring links sent by email (account verification, invitations), and absolute URLs.

The tokens are Django signatures (keyed by SECRET_KEY, salted per purpose), so
they cannot be forged or reused for another purpose; expiry is checked when read.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.utils.translation import gettext as _

VERIFY_EMAIL_SALT = "institutions.verify-email"
INVITATION_SALT = "institutions.invitation"
VERIFY_EMAIL_MAX_AGE_SECONDS = 3 * 24 * 3600
INVITATION_MAX_AGE_SECONDS = 7 * 24 * 3600


class BadLink(Exception):
    """The link was tampered with, belongs to another purpose, or has expired."""


def make_token(payload: dict, *, salt: str) -> str:
    return signing.dumps(payload, salt=salt, compress=True)


def read_token(token: str, *, salt: str, max_age_seconds: int) -> dict:
    try:
        return signing.loads(token, salt=salt, max_age=max_age_seconds)
    except signing.SignatureExpired:
        raise BadLink(_("This link has expired.")) from None
    except signing.BadSignature:
        raise BadLink(_("This link is not valid.")) from None


def absolute_url(request, path: str) -> str:
    """`path` on this server as the outside world reaches it: VITAMIN_PUBLIC_URL, else the request's
    host, else (outside a request, e.g. in a management command) the local `make run` address."""
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL.rstrip("/") + path
    if request is None:
        return f"http://localhost:{settings.PORT}{path}"
    return request.build_absolute_uri(path)
