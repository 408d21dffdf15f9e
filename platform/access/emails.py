"""Notification mail to a partner about its subscription: approved, rejected, revoked, expiring soon.

Written in the language active when sent: the deciding administrator's page, or English from the
expiry task (docs/portal.md "Languages").

Sent after the change has committed. A mail server that is down must not undo
or fail a decision that is already recorded, so failures are logged, not raised.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy, ngettext

from access.models import Subscription
from institutions.links import absolute_url

log = logging.getLogger("vitamin.access.emails")

_SUBJECTS = {
    Subscription.Status.APPROVED: gettext_lazy("Access to %(dataset)s approved"),
    Subscription.Status.REJECTED: gettext_lazy("Access to %(dataset)s not approved"),
    Subscription.Status.REVOKED: gettext_lazy("Access to %(dataset)s revoked"),
}


def recipients(subscription: Subscription) -> list[str]:
    """The institution's contact address and whoever asked for the subscription."""
    addresses = {subscription.institution.contact_email}
    if subscription.requested_by is not None and subscription.requested_by.email:
        addresses.add(subscription.requested_by.email)
    return sorted(address for address in addresses if address)


def send_decision(subscription: Subscription) -> bool:
    """Tell the partner the subscription was approved (or its terms changed), rejected or revoked."""
    subject = _SUBJECTS[subscription.status] % {"dataset": subscription.dataset.title}
    return _send(subscription, subject, "decision.txt")


def send_expiry_notice(subscription: Subscription) -> bool:
    days_left = max(0, math.ceil((subscription.expires_at - timezone.now()).total_seconds() / 86400))
    subject = ngettext(
        "Access to %(dataset)s expires in %(days)d day", "Access to %(dataset)s expires in %(days)d days", days_left
    ) % {"dataset": subscription.dataset.title, "days": days_left}
    return _send(subscription, subject, "expiring.txt", days_left=days_left)


def _send(subscription: Subscription, subject: str, template: str, **context) -> bool:
    body = render_to_string(
        f"access/email/{template}",
        {
            "subscription": subscription,
            "url": absolute_url(None, reverse("subscription", args=[subscription.pk])),
            "ends_at": timezone.localtime(subscription.expires_at) if subscription.expires_at else None,
            **context,
        },
    )
    try:
        send_mail(f"[Vitamin] {subject}", body, settings.DEFAULT_FROM_EMAIL, recipients(subscription))
    except Exception:  # noqa: BLE001 - any mail failure: the decision stands, the operator sees the log
        log.exception("could not mail subscription %s notice %r", subscription.pk, subject)
        return False
    return True
