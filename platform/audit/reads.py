"""Reading the audit log is an access too: an institution's reads are throttled, and every read is recorded.

Partners read their own institution's trail (the API, the portal's audit trail page); platform
staff search the whole log. Each read leaves an `audit.read` event: who, which view
(`events`, `verify`, `search`, `export`), the filters, how many events were shown. Reads are not
charged to any plan; an institution's are limited to VITAMIN_AUDIT_READS_PER_MINUTE (quota
counter `audit.reads`, subject `institution:{id}`, not metered), so the trail cannot be used to
flood the log or the database. A refused read is recorded too (outcome `denied`,
code `rate_limited`). Staff reads are not throttled.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from audit.models import AuditEvent, Outcome
from audit.service import record
from quotas.service import Window, consume
from vitamin.refusals import Kind, Refusal

METRIC = "audit.reads"
ACTION = "audit.read"


def trail_of(institution_id) -> QuerySet[AuditEvent]:
    """Every event recorded about or by this institution: the one definition of "its own audit trail"."""
    return AuditEvent.objects.filter(institution=str(institution_id))


def take_read(institution_id, *, view: str, actor: dict[str, Any] | None = None, request=None) -> None:
    """Count one read of the institution's trail, or raise a LIMIT_REACHED Refusal (recorded as denied)."""
    decision = consume(
        f"institution:{institution_id}", METRIC, 1, settings.AUDIT_READS_PER_MINUTE, Window.MINUTE, meter=False
    )
    if decision.allowed:
        return
    refusal = Refusal(
        f"At most {decision.limit} reads of the audit trail per minute; retry in {decision.retry_after_seconds} s.",
        code="rate_limited",
        kind=Kind.LIMIT_REACHED,
        retry_after=decision.retry_after_seconds,
        details={"limit": decision.limit, "remaining": 0, "reset_at": decision.reset_at.isoformat()},
    )
    record_read(view, outcome=Outcome.DENIED, details={"code": refusal.code}, actor=actor, request=request)
    raise refusal


def record_read(
    view: str,
    *,
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    actor: dict[str, Any] | None = None,
    request=None,
) -> None:
    """Record one read of the log. `actor` as from audit.actors; without it, the request's client or user."""
    record(
        ACTION,
        outcome=outcome,
        target="audit",
        details={"view": view, **(details or {})},
        request=request,
        **(actor or {}),
    )
