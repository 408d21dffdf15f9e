"""Audit-event actors: `record(action, **by_user(user, institution_id), ...)`."""

from __future__ import annotations

from audit.models import ActorType


def by_user(user, institution_id) -> dict:
    return {"actor_type": ActorType.USER, "actor_id": user.get_username(), "institution": str(institution_id)}


def by_user_or_system(user, institution_id) -> dict:
    """Changes made on the portal have a user; those made by management commands do not."""
    if user is None:
        return {"actor_type": ActorType.SYSTEM, "actor_id": "", "institution": str(institution_id)}
    return by_user(user, institution_id)
