"""Throttle for password reset requests, per e-mail address and per client IP address.

Each request counts once for the address asked about (whether or not an account has it) and once
for the client's IP address (`vitamin.client_ip`), in the current day (a calendar day in
VITAMIN_TIME_ZONE): at most VITAMIN_PASSWORD_RESETS_PER_DAY for an address and
VITAMIN_PASSWORD_RESETS_PER_IP_PER_DAY from an IP address. A request over either limit sends no
mail and counts for neither; the view answers it exactly as an accepted one, so the answer says
neither whether an account has the address nor whether a limit was reached. Counters live in the
quota service (database or Redis), not metered; the address is kept only as a keyed hash.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac

from quotas.service import Charge, Window, consume_all

METRIC = "account.password_resets"
_ADDRESS_SALT = "vitamin.institutions.password-reset-address"


def _address_subject(email: str) -> str:
    # Django finds the account by a case-insensitive match of the address: count it the same way.
    return "email:" + salted_hmac(_ADDRESS_SALT, email.strip().lower(), algorithm="sha256").hexdigest()[:40]


def take_request(email: str, ip: str) -> str | None:
    """Count one reset request for `email` from `ip`: None when its mail may go, else the limit that refused
    it (`address` or `ip`), nothing counted."""
    limits = {
        "address": Charge(_address_subject(email), METRIC, 1, settings.PASSWORD_RESETS_PER_DAY, Window.DAY, False),
        "ip": Charge(f"ip:{ip or 'unknown'}", METRIC, 1, settings.PASSWORD_RESETS_PER_IP_PER_DAY, Window.DAY, False),
    }
    decisions = consume_all(list(limits.values()))
    if decisions[0].allowed:
        return None
    return next(name for name, decision in zip(limits, decisions, strict=True) if decision.used + 1 > decision.limit)
