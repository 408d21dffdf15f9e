"""Notification mail: account verification, password reset, invitations, application decisions.

A mail is written in the language active when it is sent (the portal page's, docs/portal.md "Languages")."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from institutions import links


def _send(to: list[str], subject: str, template: str, context: dict) -> None:
    body = render_to_string(f"institutions/email/{template}", context)
    send_mail(f"[Vitamin] {subject}", body, settings.DEFAULT_FROM_EMAIL, to)


def send_verification(request, user) -> None:
    token = links.make_token({"user": user.pk, "email": user.email}, salt=links.VERIFY_EMAIL_SALT)
    url = links.absolute_url(request, reverse("verify-email", args=[token]))
    _send([user.email], _("Confirm your email address"), "verify_email.txt", {"user": user, "url": url})


def send_password_reset(request, user) -> None:
    """A link to choose a new password: Django's reset token, which stops working once the password
    changes (so it works once), or after PASSWORD_RESET_TIMEOUT."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    url = links.absolute_url(
        request, reverse("password-reset-confirm", args=[uid, default_token_generator.make_token(user)])
    )
    _send(
        [user.email],
        _("Choose a new password"),
        "password_reset.txt",
        {"user": user, "url": url, "minutes": settings.PASSWORD_RESET_TIMEOUT // 60},
    )


def send_invitation(request, invitation) -> None:
    token = links.make_token({"invitation": invitation.pk}, salt=links.INVITATION_SALT)
    url = links.absolute_url(request, reverse("accept-invitation", args=[token]))
    _send(
        [invitation.email],
        _("Invitation to join %(name)s") % {"name": invitation.institution.legal_name},
        "invitation.txt",
        {"invitation": invitation, "url": url, "days": links.INVITATION_MAX_AGE_SECONDS // 86400},
    )


def send_application_decision(institution, *, approved: bool, reason: str) -> None:
    recipients = {institution.contact_email}
    if institution.applicant and institution.applicant.email:
        recipients.add(institution.applicant.email)
    _send(
        sorted(recipients),
        (
            _("Your application for %(name)s was approved")
            if approved
            else _("Your application for %(name)s was rejected")
        )
        % {"name": institution.legal_name},
        "application_decision.txt",
        {"institution": institution, "approved": approved, "reason": reason},
    )
