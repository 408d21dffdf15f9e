"""Periodic OAuth housekeeping: drop authorization codes and client assertions that can no longer matter."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from oauth.models import AuthorizationCode, UsedAssertion

# Collected into CELERY_BEAT_SCHEDULE; the expiry (shorter than the interval) drops runs queued while workers were down.
PERIODIC_TASKS = {
    "oauth-purge-expired": {"task": "oauth.purge_expired", "schedule": 3600.0, "options": {"expires": 3000}},
}

# Used codes are kept a while after they expire, so that a late replay is still recognised and answered
# by revoking what the code issued.
CODE_KEPT_AFTER_EXPIRY = timedelta(days=1)


@shared_task(name="oauth.purge_expired")
def purge_expired() -> dict[str, int]:
    now = timezone.now()
    codes, _ = AuthorizationCode.objects.filter(expires_at__lt=now - CODE_KEPT_AFTER_EXPIRY).delete()
    assertions, _ = UsedAssertion.objects.filter(expires_at__lt=now).delete()
    return {"authorization_codes": codes, "client_assertions": assertions}
