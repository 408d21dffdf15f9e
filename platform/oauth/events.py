"""Audit-event actors for the OAuth app: `record(action, **by_client(client), ...)`."""

from __future__ import annotations

from audit.models import ActorType
from institutions.events import by_user, by_user_or_system

__all__ = ["by_client", "by_user", "by_user_or_system", "http_request_of"]


def by_client(client) -> dict:
    return {"actor_type": ActorType.CLIENT, "actor_id": client.client_id, "institution": str(client.institution_id)}


def http_request_of(oauth_request):
    """The Django request behind an Authlib request (for the caller's IP and request id), if any."""
    return getattr(oauth_request, "_request", None)
