"""Who did it, for an audit event: `record(action, **by_user(user, institution_id), ...)`.

Every event names its actor the same way: a portal user (by username), an OAuth client (by
client id), or the system (a management command, a schedule). Nothing else assembles
`actor_type`/`actor_id`/`institution` by hand; `record(..., request=request)` without an actor
takes it from the request (its client or user).
"""

from __future__ import annotations

from audit.models import ActorType


def by_user(user, institution_id=None) -> dict:
    return {
        "actor_type": ActorType.USER,
        "actor_id": user.get_username(),
        "institution": "" if institution_id is None else str(institution_id),
    }


def by_user_or_system(user, institution_id=None) -> dict:
    """Changes made on the portal have a user; those made by management commands or schedules do not."""
    return by_system(institution_id) if user is None else by_user(user, institution_id)


def by_username_or_system(username: str, institution_id=None) -> dict:
    """A user known only by name (a refresh someone requested), else the system."""
    if not username:
        return by_system(institution_id)
    return {
        "actor_type": ActorType.USER,
        "actor_id": username,
        "institution": "" if institution_id is None else str(institution_id),
    }


def by_client(client) -> dict:
    """An OAuth client (anything with `client_id` and `institution_id`)."""
    return by_client_id(client.client_id, client.institution_id)


def by_client_id(client_id: str, institution_id) -> dict:
    return {"actor_type": ActorType.CLIENT, "actor_id": client_id, "institution": str(institution_id)}


def by_system(institution_id=None) -> dict:
    return {
        "actor_type": ActorType.SYSTEM,
        "actor_id": "",
        "institution": "" if institution_id is None else str(institution_id),
    }
