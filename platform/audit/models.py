"""The audit event: one row per recorded action, append-only, linked into a hash chain.

Rows are written only by `audit.service.record`. The ORM refuses to change or
delete them, and database triggers (migration 0002, `audit.triggers`) refuse
UPDATE, DELETE and TRUNCATE from any other client too.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from audit.chain import canonical_json, format_timestamp


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete audit events through the ORM."""


class ActorType(models.TextChoices):
    USER = "user", _("User")
    CLIENT = "client", _("OAuth client")
    SYSTEM = "system", _("System")


class Outcome:
    """Conventional outcomes; the field is a free short string so callers can be more specific."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"
    ERROR = "error"


class CanonicalJSONField(models.TextField):
    """JSON kept as its canonical text, so the stored bytes hash the same when read back.

    A JSONField would be jsonb on PostgreSQL, which rewrites numbers (1e+20 comes
    back as an integer) and would break the hash of an honest event. Key lookups
    (details__name) are therefore not available; search the text instead.
    """

    def from_db_value(self, value: str | None, expression, connection) -> Any:
        return None if value is None else json.loads(value)

    def to_python(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def get_prep_value(self, value: Any) -> str:
        return canonical_json(value)

    def value_to_string(self, obj) -> str:
        return canonical_json(self.value_from_object(obj))


class AuditEventQuerySet(models.QuerySet):
    """Reads only: every bulk write path raises, so no code can rewrite history by accident."""

    def _refuse(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only; write them with audit.service.record()")

    update = delete = bulk_update = bulk_create = create = get_or_create = update_or_create = _refuse


class AuditEvent(models.Model):
    seq = models.BigIntegerField(primary_key=True, help_text="Position in the chain: 1, 2, 3, ... without gaps.")
    timestamp = models.DateTimeField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices, default=ActorType.SYSTEM)
    actor_id = models.CharField(max_length=255, blank=True, help_text="Username, OAuth client id, or system component.")
    # A label, not a foreign key: the log must outlive the rows it talks about.
    institution = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=100, help_text="Dotted name, e.g. query.run or subscription.approve.")
    target = models.CharField(max_length=500, blank=True)
    outcome = models.CharField(max_length=32, default=Outcome.SUCCESS)
    details = CanonicalJSONField(default=dict, blank=True)
    ip = models.CharField("IP address", max_length=45, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, unique=True)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["timestamp"], name="audit_event_timestamp"),
            models.Index(fields=["actor_type", "actor_id"], name="audit_event_actor"),
            models.Index(fields=["institution", "timestamp"], name="audit_event_institution"),
            models.Index(fields=["action", "timestamp"], name="audit_event_action"),
            models.Index(fields=["outcome"], name="audit_event_outcome"),
            models.Index(fields=["request_id"], name="audit_event_request"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.outcome}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"audit event {self.seq} cannot be changed: the log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"audit event {self.seq} cannot be deleted: the log is append-only")

    def to_record(self) -> dict[str, Any]:
        """The event as plain JSON values: what the hash covers, plus the hash (the export format)."""
        return {
            "seq": self.seq,
            "timestamp": format_timestamp(self.timestamp),
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "institution": self.institution,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
            "ip": self.ip,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
