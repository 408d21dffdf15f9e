"""Throttle for failed client authentication, per claimed client id and per IP address.

Once either has VITAMIN_AUTH_FAILURES_PER_MINUTE failures in the current minute,
every further attempt is refused with 429 before any secret is checked, so a
brute force learns nothing until the window ends. Successful attempts cost
nothing. Counters live in the quota service (database or Redis).
"""

from __future__ import annotations

from django.conf import settings

from quotas.service import Window, consume

METRIC = "oauth.auth_failures"


def _subjects(client_id: str, ip: str) -> list[str]:
    subjects = [f"ip:{ip or 'unknown'}"]
    if client_id:
        subjects.append(f"oauth-client:{client_id}")
    return subjects


def retry_after_seconds(client_id: str, ip: str) -> int:
    """0 when an attempt may go ahead, else the seconds until the caller may try again."""
    limit = settings.AUTH_FAILURES_PER_MINUTE
    for subject in _subjects(client_id, ip):
        # amount=0 is a pure check, allowed while used <= its limit: so limit - 1 blocks at `limit` failures.
        decision = consume(subject, METRIC, 0, limit - 1, Window.MINUTE, meter=False)
        if not decision.allowed:
            return decision.retry_after_seconds
    return 0


def record_failure(client_id: str, ip: str) -> None:
    for subject in _subjects(client_id, ip):
        consume(subject, METRIC, 1, settings.AUTH_FAILURES_PER_MINUTE, Window.MINUTE, meter=False)
