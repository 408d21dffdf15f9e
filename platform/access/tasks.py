"""Periodic subscription housekeeping: mark passed expiries, warn partners a week before.

Access never waits for these tasks: the grant service compares the expiry with
the current time on every request. `expire_subscriptions` makes the stored
state, the history and the audit log say so too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from access import emails, subscriptions
from access.models import Subscription
from audit.service import record
from vitamin.refusals import Refusal

log = logging.getLogger("vitamin.access")

EXPIRY_NOTICE_DAYS = 7

# Collected into CELERY_BEAT_SCHEDULE. Each expiry is shorter than the interval, so runs
# queued while workers were down are dropped instead of piling up.
PERIODIC_TASKS = {
    "access-expire-subscriptions": {
        "task": "access.expire_subscriptions",
        "schedule": 600.0,
        "options": {"expires": 540},
    },
    "access-notify-expiring": {"task": "access.notify_expiring", "schedule": 3600.0, "options": {"expires": 3000}},
}


@shared_task(name="access.expire_subscriptions")
def expire_subscriptions_task() -> dict[str, int]:
    return {"expired": expire_subscriptions()}


@shared_task(name="access.notify_expiring")
def notify_expiring_task() -> dict[str, int]:
    return {"notified": notify_expiring()}


def expire_subscriptions(*, now: datetime | None = None) -> int:
    """Expire every approved subscription whose expiry has passed; returns how many."""
    now = now or timezone.now()
    expired = 0
    for subscription in Subscription.objects.filter(status=Subscription.Status.APPROVED, expires_at__lte=now):
        try:
            subscriptions.expire(subscription, now=now)
        except Refusal as exc:  # changed meanwhile (revoked, extended): nothing to expire
            log.info("subscription %s not expired: %s", subscription.pk, exc.message)
            continue
        expired += 1
    return expired


def notify_expiring(*, now: datetime | None = None) -> int:
    """Mail partners whose approved subscription ends within EXPIRY_NOTICE_DAYS, once per term; returns how many."""
    now = now or timezone.now()
    due = Subscription.objects.filter(
        status=Subscription.Status.APPROVED,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(days=EXPIRY_NOTICE_DAYS),
        expiry_notice_sent_at__isnull=True,
    ).values_list("pk", flat=True)
    notified = 0
    for pk in due:
        with transaction.atomic():
            # Claim the notice under the row lock, so two overlapping runs send it once.
            claimed = Subscription.objects.filter(pk=pk, expiry_notice_sent_at__isnull=True).update(
                expiry_notice_sent_at=now
            )
            if not claimed:
                continue
            subscription = Subscription.objects.select_related("institution", "dataset", "requested_by").get(pk=pk)
            record(
                "subscription.expiry_notice",
                institution=str(subscription.institution_id),
                target=f"subscription:{pk}",
                details={"dataset": subscription.dataset.slug, "expires_at": subscription.expires_at.isoformat()},
            )
            transaction.on_commit(lambda subscription=subscription: emails.send_expiry_notice(subscription))
        notified += 1
    return notified
