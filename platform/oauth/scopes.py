"""The scopes a partner token can carry, and which of them a member may delegate to a tool."""

from __future__ import annotations

from django.utils.translation import gettext_noop

from institutions.models import Role

# English here, as the API's schema and metadata give them; a portal page shows gettext(description).
SCOPES: dict[str, str] = {
    "catalog:read": gettext_noop("Read the dataset catalog and your subscriptions"),
    "subscriptions:write": gettext_noop("Request and cancel dataset subscriptions"),
    "query": gettext_noop("Run SQL queries on subscribed datasets"),
    "download": gettext_noop("Download subscribed datasets over Delta Sharing"),
    "lookup": gettext_noop("Run consented per-customer lookups and cohort assessments"),
    "usage:read": gettext_noop("Read usage and quota figures"),
    "audit:read": gettext_noop("Read your institution's audit trail and verify the audit chain"),
}
ALL_SCOPES = tuple(SCOPES)

# What a member can let a tool do on their behalf (authorization code grant). Managing
# subscriptions and reading the audit log are for owners and admins.
_DATA_SCOPES = ("catalog:read", "query", "download", "lookup", "usage:read")
DELEGABLE_SCOPES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(ALL_SCOPES),
    Role.ADMIN: frozenset(ALL_SCOPES),
    Role.ANALYST: frozenset(_DATA_SCOPES),
    Role.VIEWER: frozenset({"catalog:read", "usage:read"}),
}


def parse_scope(scope: str | None) -> list[str]:
    """Space-separated scope string → unique scopes in the canonical order of SCOPES (unknown ones last)."""
    names = set((scope or "").split())
    known = [name for name in ALL_SCOPES if name in names]
    return known + sorted(names - set(ALL_SCOPES))


def format_scope(scopes) -> str:
    return " ".join(parse_scope(" ".join(scopes)))


def unknown_scopes(scopes) -> list[str]:
    return sorted(set(scopes) - set(ALL_SCOPES))
